"""`ratchet init`: determinism, refusals, import with a column mapping, nothing left on failure."""
import json
import stat

import numpy as np
import pandas as pd
import pytest

from optimizer.base.errors import RatchetError
from optimizer.lifecycle.initialize import init_workspace


def test_workspace_layout_and_seal(small_workspace):
    ws = small_workspace
    for rel in ("policy.py", "program.md", "ratchet.yaml", "data/train.parquet", "data/dev.parquet",
                "holdout/holdout.parquet", "holdout/MANIFEST.json", "ledger.duckdb", "reports/drift.json"):
        assert (ws / rel).exists(), rel
    assert not (ws / "holdout" / "holdout.parquet").stat().st_mode & (stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    manifest = json.loads((ws / "holdout" / "MANIFEST.json").read_text())
    for key in ("files", "content_sha256", "schema", "rows", "label_rate", "time_range", "canaries",
                "scorer_sha256", "tool_version", "sealed_at"):
        assert key in manifest, key
    hold = pd.read_parquet(ws / "holdout" / "holdout.parquet")
    train = pd.read_parquet(ws / "data" / "train.parquet")
    dev = pd.read_parquet(ws / "data" / "dev.parquet")
    assert hold.ts.min() > dev.ts.max() > train.ts.max()
    assert set(hold.tx_id.astype(str)) >= set(manifest["canaries"])
    assert "fraud_scenario" in hold.columns  # outcome-only stays with the scorer
    assert any(k.startswith("guards/") for k in manifest["scorer_sha256"])
    assert "domains/fraud/adapter.py" in manifest["scorer_sha256"]


def test_same_seed_same_hashes(tmp_path):
    a = init_workspace("fraud", tmp_path / "a", overrides={"data.rows": 8000, "seal.canaries": 2})
    b = init_workspace("fraud", tmp_path / "b", overrides={"data.rows": 8000, "seal.canaries": 2})
    c = init_workspace("fraud", tmp_path / "c", overrides={"data.rows": 8000, "seal.canaries": 2, "seed": 1,
                                                            "data.seed": 1})
    ma, mb, mc = (json.loads((r.workspace.root / "holdout/MANIFEST.json").read_text()) for r in (a, b, c))
    for key in ("content_sha256", "files", "canaries", "splits_sha256"):
        assert ma[key] == mb[key], key
    assert ma["content_sha256"] != mc["content_sha256"]


def test_refuses_existing_workspace(small_workspace):
    with pytest.raises(RatchetError, match="not empty"):
        init_workspace("fraud", small_workspace)


FULL_MAP = {"label": "is_fraud", "time": "ts", "amount": "amount", "id": "tx_id", "entity": "customer_id",
            "terminal": "terminal_id"}


def _csv(tmp_path, frame, name="upload.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_import_csv_with_mapping(tmp_path):
    from domains.fraud.data import generate

    g = generate(3, 12000).drop(columns=["fraud_scenario"])
    g = g.rename(columns={"tx_id": "TransactionID", "ts": "When", "amount": "Amt", "is_fraud": "Label",
                          "customer_id": "Card"})
    g["risk_score_a"] = np.random.default_rng(0).normal(size=len(g))
    path = _csv(tmp_path, g)
    mapping = {"label": "Label", "time": "When", "amount": "Amt", "id": "TransactionID", "entity": "Card",
               "terminal": "terminal_id"}
    res = init_workspace("fraud", tmp_path / "ws", overrides={"data.source": "file", "data.file": str(path),
                                                              "data.mapping": mapping, "seal.canaries": 2})
    train = pd.read_parquet(res.workspace.root / "data" / "train.parquet")
    assert {"tx_id", "ts", "amount", "is_fraud", "customer_id", "risk_score_a"} <= set(train.columns)


def _splits():
    from domains.fraud.data import generate
    from holdout.split import split_by_time

    return split_by_time(generate(4, 12000), time="ts", train=0.6, dev=0.2, gap_days=1)


def _check(splits):
    from holdout.seal import check_contamination

    cols = [c for c in splits.train.columns if c != "tx_id"]
    return check_contamination(splits, id_col="tx_id", time_col="ts", content_cols=cols, entity_col="customer_id")


def test_seal_checks_pass_on_clean_splits():
    assert _check(_splits()).row_overlap == 0


def test_seal_refuses_replayed_rows():
    s = _splits()
    replay = s.train.iloc[:3].assign(tx_id=lambda f: f.tx_id + 10**9)
    with pytest.raises(RatchetError, match="3 holdout rows are exact copies"):
        _check(type(s)(s.train, s.dev, pd.concat([s.holdout, replay]), s.boundaries))


def test_seal_refuses_id_overlap():
    s = _splits()
    clash = s.holdout.copy()
    clash.loc[0, "tx_id"] = s.dev.tx_id.iloc[5]
    with pytest.raises(RatchetError, match="1 holdout ids in column 'tx_id'"):
        _check(type(s)(s.train, s.dev, clash, s.boundaries))


def test_seal_refuses_holdout_not_after_train():
    s = _splits()
    early = s.holdout.copy()
    early.loc[0, "ts"] = s.train.ts.iloc[10]
    early.loc[0, "amount"] = 12345.67
    with pytest.raises(RatchetError, match="not strictly after"):
        _check(type(s)(s.train, s.dev, early, s.boundaries))


def test_failed_init_leaves_nothing(tmp_path):
    from domains.fraud.data import generate

    g = generate(5, 8000).drop(columns=["fraud_scenario"])
    g.loc[3, "tx_id"] = g.loc[4, "tx_id"]
    path = _csv(tmp_path, g)
    target = tmp_path / "ws"
    with pytest.raises(RatchetError, match="tx_id"):
        init_workspace("fraud", target, overrides={"data.source": "file", "data.file": str(path),
                                                   "data.mapping": FULL_MAP})
    assert not target.exists() and not any(p.name.endswith("init-tmp") for p in tmp_path.iterdir())


def test_contract_refuses_bad_data(tmp_path):
    from domains.fraud.data import generate

    g = generate(5, 8000).drop(columns=["fraud_scenario"])
    g.loc[10:14, "amount"] = -3.0
    path = _csv(tmp_path, g)
    mapping = FULL_MAP
    with pytest.raises(RatchetError) as info:
        init_workspace("fraud", tmp_path / "ws", overrides={"data.source": "file", "data.file": str(path),
                                                           "data.mapping": mapping})
    assert "amount" in str(info.value) and "5" in str(info.value)
    assert not (tmp_path / "ws").exists()


def test_leaky_column_is_refused(tmp_path):
    from domains.fraud.data import generate

    g = generate(6, 8000).drop(columns=["fraud_scenario"])
    g["chargeback_flag"] = g["is_fraud"] * 1.0 + np.random.default_rng(1).normal(0, 0.01, len(g))
    path = _csv(tmp_path, g)
    mapping = FULL_MAP
    with pytest.raises(RatchetError, match="chargeback_flag"):
        init_workspace("fraud", tmp_path / "ws", overrides={"data.source": "file", "data.file": str(path),
                                                           "data.mapping": mapping})
