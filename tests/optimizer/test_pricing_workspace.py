"""`init`, `run`, `try` and `audit` work for pricing exactly as for fraud."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from optimizer.cli import app
from tests.conftest import PRICING_BASELINE, copy_workspace


def test_pricing_run_try_audit(pricing_workspace, tmp_path, monkeypatch):

    ws = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(pricing_workspace, ws))
    run = CliRunner().invoke(app, ["run", str(ws), "--experiments", "2", "--proposer", "optuna"])
    assert run.exit_code == 0, run.output
    assert "2 experiments" in run.output and "proposer: optuna" in run.output
    records = sorted((ws / "experiments").glob("exp-*/record.json"))
    assert len(records) == 2
    first = json.loads(records[0].read_text())
    assert {"profit", "conversion_ratio", "ess_share", "price_gap_protected"} <= set(first["dev_metrics"])
    assert "support" in {r["guard"] for r in first["reasons"]}
    candidate = tmp_path / "candidate.py"
    candidate.write_text(PRICING_BASELINE)
    tried = CliRunner().invoke(app, ["try", str(ws), str(candidate), "--json"])
    verdict = json.loads(tried.stdout)
    assert tried.exit_code in (0, 1) and verdict["metrics"]["dev"]["profit"] > 0
    assert {r["guard"] for r in verdict["reasons"]} >= {"support", "guardrail", "significance", "lookahead"}
    audit = CliRunner().invoke(app, ["audit", str(ws), "--json"])
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["ok"] is True


def test_pricing_import_end_to_end(tmp_path):
    """A user's logs with their own column names, mapped on the command line, sealed and audited."""
    from domains.pricing.data import generate

    logs = generate(5, 4000).rename(columns={"ts": "when", "offered_price": "price_paid", "propensity": "p_log",
                                             "converted": "bought", "unit_cost": "cost", "ref_price": "list_price",
                                             "offer_id": "offer", "protected_group": "group"})
    logs["when"] = logs["when"].astype(str)
    path = tmp_path / "offers.csv"
    logs.to_csv(path, index=False)
    args = ["init", "pricing", "--workspace", str(tmp_path / "ws"), "--data", str(path)]
    for key, col in (("time", "when"), ("price", "price_paid"), ("propensity", "p_log"), ("outcome", "bought"),
                     ("cost", "cost"), ("reference", "list_price"), ("id", "offer"), ("entity", "customer_id"),
                     ("product", "product_id"), ("protected", "group")):
        args += ["--map", f"{key}={col}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "holdout sealed" in result.output
    bad = logs.assign(p_log=logs["p_log"].where(logs.index != 10, 1.7))
    bad.to_csv(path, index=False)
    refused = CliRunner().invoke(app, [*args[:3], str(tmp_path / "ws2"), *args[4:]])
    assert refused.exit_code == 2 and "p_log" in refused.output and not (tmp_path / "ws2").exists()
