"""A data team's own transaction file, end to end: epoch-millisecond times, zero amounts and text categories
are read as meant, sealed with the data contract, run and audited; a column that encodes the label is refused
by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from domains.fraud.data import generate
from optimizer.cli import app
from tests.conftest import mlflow_store


def _team_file(tmp_path, rows: int = 20_000, **extra) -> "Path":
    """Generated transactions as a team exports them: their own names, Unix milliseconds, verifications."""
    frame = generate(5, rows)
    rng = np.random.default_rng(5)
    verification = rng.random(len(frame)) < 0.01
    amount = np.where(verification, 0.0, frame["amount"])
    fraud = frame["is_fraud"].to_numpy() == 1
    out = pd.DataFrame({
        "event_ms": (frame["ts"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1),
        "card": frame["customer_id"], "merchant": frame["terminal_id"], "amt": amount,
        "fraud": frame["is_fraud"],
        "channel": np.where(rng.random(len(frame)) < np.where(fraud, 0.7, 0.3), "online", "card_present"),
        **{k: v(frame) for k, v in extra.items()},
    })
    path = tmp_path / "transactions.csv"
    out.to_csv(path, index=False)
    return path


ARGS = ["--label", "fraud", "--time", "event_ms", "--amount", "amt", "--entity", "card", "--terminal", "merchant"]


def test_team_file_inits_runs_and_audits(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    path = _team_file(tmp_path)
    ws = tmp_path / "ws"
    runner = CliRunner()
    init = runner.invoke(app, ["init", "fraud", "-w", str(ws), "--data", str(path), *ARGS])
    assert init.exit_code == 0, init.output
    assert "read: event_ms: numbers read as milliseconds since the Unix epoch (detected): 2025-04-01" in init.output
    train = pd.read_parquet(ws / "data" / "train.parquet")
    assert str(train["channel"].dtype) == "string" and (train["amount"] == 0).any()
    assert train["ts"].min() >= pd.Timestamp("2025-04-01")
    suite = json.loads((ws / "contract" / "suite.json").read_text())
    assert ("expect_column_values_to_be_in_type_list", "channel") in {
        (e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    from holdout.ledger import Ledger

    seal = Ledger(ws / "ledger.duckdb").entries()[0]
    assert "contract/suite.json" in seal.data["evidence"]
    run = runner.invoke(app, ["run", str(ws), "--experiments", "1", "--proposer", "optuna"])
    assert run.exit_code == 0, run.output
    record = json.loads((ws / "experiments" / "exp-0001" / "record.json").read_text())
    assert record["status"] != "crashed", record["reasons"]
    details = {r["guard"]: r["detail"] for r in record["reasons"]}
    if "guardrail" in details:  # a card column gives tenure: the fairness gap is measured, not skipped
        assert "false_decline_gap (fairness)" in details["guardrail"] or "false_decline_gap" in details["guardrail"]
        assert "not measured" not in details["guardrail"]
    audit = runner.invoke(app, ["audit", str(ws)])
    assert audit.exit_code == 0, audit.output
    assert "audit: intact" in audit.output


def test_a_tampered_data_contract_is_refused_and_audited(tmp_path, monkeypatch, small_workspace):
    import os
    import shutil

    from holdout.audit import audit
    from optimizer.base.errors import RatchetError
    from optimizer.lifecycle.initialize import source_root
    from optimizer.records.context import load_context

    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    suite_path = ws / "contract" / "suite.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"] = [e for e in suite["expectations"] if e["kwargs"].get("column") != "amount"]
    os.chmod(suite_path, 0o644)
    suite_path.write_text(json.dumps(suite))  # a looser contract for later batches
    with pytest.raises(RatchetError, match="contract/suite.json"):
        load_context(ws)
    failed = [c for c in audit(ws, source_root=source_root()).checks if not c.passed]
    assert any("contract/suite.json" in c.detail for c in failed), failed


def test_a_column_that_encodes_the_label_is_refused_by_name(tmp_path, monkeypatch):
    """Someone's export carries the fraud scenario code: refused at init, naming the column."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    scenario = {"scenario_code": lambda f: np.array(["none", "large_amount", "terminal", "card_theft"])[
        f["fraud_scenario"].to_numpy()]}
    path = _team_file(tmp_path, rows=8000, **scenario)
    init = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--data", str(path), *ARGS])
    assert init.exit_code == 2, init.output
    assert "seal refused: column 'scenario_code' (AUC 1.000) predicts 'is_fraud'" in init.output
    assert not (tmp_path / "ws").exists()


def test_checked_suite_applies_to_a_later_batch(small_workspace):
    from domains._gx import check_suite
    from optimizer.base.errors import RatchetError

    suite = json.loads((small_workspace / "contract" / "suite.json").read_text())
    dev = pd.read_parquet(small_workspace / "data" / "dev.parquet")
    check_suite(dev, suite, source="dev")
    batch = dev.head(500).copy()
    batch.loc[[1, 2], "amount"] = -3.0
    with pytest.raises(RatchetError, match=r"'events.csv': column 'amount': expect_column_values_to_be_between "
                                           r"\(min 0, max 1e\+12\) failed on 2 of 500 rows.*contract the workspace"):
        check_suite(batch, suite, source="events.csv")
