"""Audit on a real sealed workspace: intact passes; every tamper case fails, named precisely."""
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from holdout.audit import audit
from holdout.hashing import content_hash, sha256_file
from holdout.manifest import MANIFEST
from optimizer.lifecycle.initialize import source_root
from tests.conftest import copy_workspace, mlflow_store


@pytest.fixture
def ws(small_workspace, tmp_path, monkeypatch):
    copy = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(small_workspace, copy))
    return copy


def _failed(report):
    return {c.name: c.detail for c in report.checks if not c.passed}


def _writable(path: Path):
    path.parent.chmod(0o700)
    path.chmod(0o600)


def test_intact_workspace_passes(ws):
    report = audit(ws, source_root=source_root())
    assert report.ok, _failed(report)
    names = {c.name for c in report.checks}
    assert {"holdout_file", "content", "hmac", "ledger_chain", "manifest_vs_ledger", "mlflow_seal",
            "scorer_source"} <= names


def test_flipped_byte(ws):
    path = ws / "holdout" / "holdout.parquet"
    _writable(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    failed = _failed(audit(ws, source_root=source_root()))
    assert "holdout_file" in failed and "holdout.parquet" in failed["holdout_file"]


def test_replaced_file(ws):
    path = ws / "holdout" / "holdout.parquet"
    frame = pd.read_parquet(path)
    _writable(path)
    frame.loc[0, "is_fraud"] = 1 - frame.loc[0, "is_fraud"]
    frame.to_parquet(path, index=False)
    failed = _failed(audit(ws, source_root=source_root()))
    assert {"holdout_file", "content"} <= set(failed)


def test_rewritten_manifest_matching_tampered_data_still_fails(ws):
    """The attacker re-derives every hash in the manifest: the ledger and MLflow still disagree."""
    path = ws / "holdout" / "holdout.parquet"
    frame = pd.read_parquet(path)
    _writable(path)
    frame = frame[frame.is_fraud == 0]  # drop the hard rows
    frame.to_parquet(path, index=False)
    mpath = ws / "holdout" / MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest.update(files={"holdout.parquet": sha256_file(path)}, content_sha256=content_hash(frame),
                    rows=len(frame), label_rate=0.0)
    _writable(mpath)
    mpath.write_text(json.dumps(manifest))
    failed = _failed(audit(ws, source_root=source_root()))
    assert set(failed) == {"manifest_vs_ledger"}, failed
    assert "rewritten" in failed["manifest_vs_ledger"]


def test_edited_and_removed_ledger_entries(ws):
    con = duckdb.connect(str(ws / "ledger.duckdb"))
    con.execute("INSERT INTO ledger VALUES (2, 't', 'experiment', '{}', 'x', 'y')")
    con.execute("UPDATE ledger SET payload = replace(payload, 'manifest', 'mani') WHERE seq = 1")
    con.close()
    failed = _failed(audit(ws, source_root=source_root()))
    assert "ledger_chain" in failed and "entry 1" in failed["ledger_chain"]
    con = duckdb.connect(str(ws / "ledger.duckdb"))
    con.execute("DELETE FROM ledger WHERE seq = 1")
    con.close()
    failed = _failed(audit(ws, source_root=source_root()))
    assert "seq 1 is missing" in failed["ledger_chain"]


def test_changed_scorer_source(ws, tmp_path):
    root = tmp_path / "src"
    for pkg in ("guards", "holdout", "domains"):
        shutil.copytree(source_root() / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "guards" / "significance.py", "a") as fh:
        fh.write("\n# a quiet change to how gains are judged\n")
    failed = _failed(audit(ws, source_root=root))
    assert set(failed) == {"scorer_source"} and "guards/significance.py" in failed["scorer_source"]


def test_mlflow_record_disagrees(ws, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "other.db"))
    failed = _failed(audit(ws, source_root=source_root()))
    assert "mlflow_seal" in failed


def test_hmac(small_workspace, tmp_path, monkeypatch):
    from optimizer.lifecycle.initialize import init_workspace

    monkeypatch.setenv("RATCHET_SEAL_KEY", "s3cret")
    res = init_workspace("fraud", tmp_path / "signed", overrides={"data.rows": 8000, "seal.canaries": 2})
    assert audit(res.workspace.root, source_root=source_root()).ok
    monkeypatch.setenv("RATCHET_SEAL_KEY", "wrong")
    failed = _failed(audit(res.workspace.root, source_root=source_root()))
    assert "hmac" in failed
    monkeypatch.delenv("RATCHET_SEAL_KEY")
    hmac_check = [c for c in audit(res.workspace.root, source_root=source_root()).checks if c.name == "hmac"][0]
    assert hmac_check.passed and "not checked" in hmac_check.detail
