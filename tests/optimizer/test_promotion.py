"""Promotion and rollback on a real sealed workspace with a real kept experiment: registered versions, the
shadow-trial requirement, aliases in a real registry (sqlite and a real `mlflow server`), and the audit."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from holdout.ledger import Kind, Ledger
from optimizer.cli import app
from tests.conftest import BASELINE, NOTHING, _sealed
from tests.optimizer.test_mlflow_server import server  # noqa: F401 (a real `mlflow server`, per test)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory) -> Path:
    """A fraud workspace whose champion alerts on nothing, so the shipped baseline is an honest keep."""
    return _sealed(tmp_path_factory, "promotion", "fraud", {"data.rows": 20_000, "decision.refits": 0}, NOTHING)


def _keep_baseline(ws: Path, uri: str) -> None:
    """`ratchet try --keep` of the shipped baseline: registers the starting policy (v1) and the kept one (v2)."""
    candidate = ws.parent / "candidate.py"
    candidate.write_text(BASELINE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = CliRunner().invoke(app, ["try", str(ws), str(candidate), "--keep", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kept"] is True


@pytest.fixture(scope="module")
def kept(sealed, tmp_path_factory) -> Path:
    """The sealed workspace with the baseline evaluated and exp-0001 kept, recorded in its own sqlite store."""
    base = tmp_path_factory.mktemp("kept")
    shutil.copytree(sealed, base / "ws")
    shutil.copy(sealed.parent / "mlflow.db", base / "mlflow.db")
    _keep_baseline(base / "ws", f"sqlite:///{base / 'mlflow.db'}")
    return base / "ws"


@pytest.fixture
def ws(kept, tmp_path, monkeypatch) -> Path:
    """A private copy of the kept workspace and its MLflow store (runs, registered versions)."""
    shutil.copytree(kept, tmp_path / "ws")
    shutil.copy(kept.parent / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "ws"


def _trial(ws: Path, ref: str, status: str = "passed", trial: str = "trial-0001") -> None:
    """Stands for a shadow trial's report: the SHADOW_RESULT entry a trial writes, with REF as its challenger."""
    from optimizer.records.context import load_context
    from optimizer.records.refs import resolve

    ctx = load_context(ws)
    ctx.ledger.append(Kind.SHADOW_RESULT, {"trial": trial, "status": status, "challenger": resolve(ctx, ref).to_dict()})


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _client():
    import os

    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _name(ws: Path) -> str:
    return Ledger(ws / "ledger.duckdb").last(Kind.MODEL).data["name"]


def _aliases(ws: Path) -> dict:
    return {k: int(v) for k, v in _client().get_registered_model(_name(ws)).aliases.items()}


def _audit(ws: Path):
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import source_root

    report = audit(ws, source_root=source_root())
    return report, next(c for c in report.checks if c.name == "registry_aliases")


def test_kept_policies_are_registered_and_predict_decides_in_the_sandbox(ws, monkeypatch):
    import mlflow.pyfunc

    models = [e.data for e in Ledger(ws / "ledger.duckdb").entries(Kind.MODEL)]
    assert [(m["experiment"], m["version"]) for m in models] == [("baseline", 1), ("exp-0001", 2)]
    assert set(models[1]) == {"name", "version", "experiment", "commit", "policy_sha256", "model_sha256", "run_id"}
    name = models[0]["name"]
    assert name.startswith("ratchet-ws-") and len({m["name"] for m in models}) == 1
    version = _client().get_model_version(name, "2")
    assert version.tags["ratchet.policy_sha256"] == models[1]["policy_sha256"]
    assert version.tags["ratchet.model_sha256"] == models[1]["model_sha256"] and version.run_id == models[1]["run_id"]

    model = mlflow.pyfunc.load_model(f"models:/{name}/2")
    rows = pd.read_parquet(ws / "data" / "dev.parquet").head(300)
    expected = _sandbox_decisions(Path(_client().get_model_version_download_uri(name, "2").removeprefix("file://")),
                                  rows.drop(columns=["is_fraud", "fraud_scenario"]))

    def unpickle(*args, **kwargs):
        raise AssertionError("the parent unpickled something")

    monkeypatch.setattr(pickle, "loads", unpickle)
    monkeypatch.setattr(pickle, "load", unpickle)
    decided = model.predict(rows)  # the label columns are left out by the version's signature
    # As the loop decided the same rows within the whole of dev: the model reads the workspace's history as
    # `ratchet serve` does (without it, the sandbox alone decides otherwise).
    np.testing.assert_array_equal(decided["decision"].to_numpy(), np.load(ws / "champion" / "dev.npy")[:300])
    assert not np.array_equal(expected, decided["decision"].to_numpy())
    assert "THRESHOLD" in decided


def _sandbox_decisions(folder: Path, rows: pd.DataFrame) -> np.ndarray:
    """A fresh sandboxed child's decisions for `rows` from a registered version's policy and fitted bytes."""
    from optimizer.sandbox import Sandbox

    with Sandbox() as box:
        model = box.adopt((folder / "artifacts" / "model.bin").read_bytes())  # bytes only, never unpickled here
        result = box.decide((folder / "artifacts" / "policy.py").read_text(), model, {"rows": rows}, budget_s=60,
                            constants=("THRESHOLD",))
    assert result.status == "ok", result.error
    return result.decisions["rows"]


def test_promote_is_refused_without_a_passed_trial(ws):
    result = _cli("promote", str(ws), "exp-0001", "--approved-by", " ")
    assert result.exit_code == 2 and "--approved-by" in result.output
    result = _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer")
    assert result.exit_code == 1 and "no shadow trial" in result.output and "passed shadow trial" in result.output
    _trial(ws, "exp-0001", status="failed")
    result = _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer")
    assert result.exit_code == 1 and "trial-0001 is failed, not passed" in result.output
    result = _cli("rollback", str(ws), "--approved-by", "A. Reviewer")
    assert result.exit_code == 1 and "nothing has been promoted" in result.output
    assert not Ledger(ws / "ledger.duckdb").entries(Kind.PROMOTION) and _aliases(ws) == {}
    assert _audit(ws)[1].passed


def test_promote_and_rollback_move_the_aliases_and_the_audit_follows(ws):
    _trial(ws, "baseline", trial="trial-0001")
    _trial(ws, "exp-0001", trial="trial-0002")
    assert _cli("promote", str(ws), "baseline", "--approved-by", "A. Reviewer").exit_code == 0
    assert _aliases(ws) == {"champion": 1}
    result = _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer", "--reason", "trial passed", "--json")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert {k: entry[k] for k in ("version", "previous_version", "experiment", "trial", "approved_by", "reason")} == {
        "version": 2, "previous_version": 1, "experiment": "exp-0001", "trial": "trial-0002",
        "approved_by": "A. Reviewer", "reason": "trial passed"}
    assert _aliases(ws) == {"champion": 2, "previous": 1}
    tags = _client().get_model_version(_name(ws), "2").tags
    assert tags["ratchet.approved_by"] == "A. Reviewer" and tags["ratchet.trial"] == "trial-0002"
    assert tags["ratchet.reason"] == "trial passed" and tags["ratchet.commit"] == entry["commit"]
    report, check = _audit(ws)
    assert report.ok and "champion version 2, previous version 1" in check.detail, check.detail
    again = _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer")
    assert again.exit_code == 1 and "already the champion" in again.output

    result = _cli("rollback", str(ws), "--approved-by", "B. Oncall", "--reason", "false declines up")
    assert result.exit_code == 0, result.output
    assert _aliases(ws) == {"champion": 1}
    back = Ledger(ws / "ledger.duckdb").last(Kind.ROLLBACK).data
    assert (back["version"], back["previous_version"], back["rolled_back_version"]) == (1, None, 2)
    assert (back["approved_by"], back["reason"], back["experiment"]) == ("B. Oncall", "false declines up", "baseline")
    report, check = _audit(ws)
    assert report.ok and "champion version 1, previous unset" in check.detail, check.detail
    result = _cli("rollback", str(ws), "--approved-by", "B. Oncall")
    assert result.exit_code == 1 and "no previous version" in result.output


def test_the_first_promotion_replaces_the_baseline_and_a_rollback_returns_to_it(ws):
    from optimizer.records.context import load_context
    from optimizer.records.refs import acting

    ctx = load_context(ws)
    assert acting(ctx, ctx.ledger.entries())[0].experiment == "baseline"  # exp-0001 is kept, but nothing promoted
    _trial(ws, "exp-0001")
    result = _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["previous_version"] == 1
    assert _aliases(ws) == {"champion": 2, "previous": 1}
    ctx = load_context(ws)
    ref, why = acting(ctx, ctx.ledger.entries())
    assert ref.experiment == "exp-0001" and why.startswith("registry champion (promotion, version 2")
    assert _cli("rollback", str(ws), "--approved-by", "B. Oncall").exit_code == 0
    assert _aliases(ws) == {"champion": 1}
    ctx = load_context(ws)
    assert acting(ctx, ctx.ledger.entries())[0].experiment == "baseline"
    assert _audit(ws)[1].passed
    again = _cli("rollback", str(ws), "--approved-by", "B. Oncall")
    assert again.exit_code == 1 and "no previous version" in again.output


def test_an_alias_moved_behind_the_ledger_fails_the_audit_and_blocks_promotion(ws):
    _trial(ws, "exp-0001")
    assert _cli("promote", str(ws), "exp-0001", "--approved-by", "A. Reviewer").exit_code == 0
    _client().set_registered_model_alias(_name(ws), "champion", "1")  # someone points production elsewhere
    report, check = _audit(ws)
    assert not report.ok and not check.passed
    assert "alias champion is version 1" in check.detail and "says version 2" in check.detail, check.detail
    _trial(ws, "baseline", trial="trial-0002")
    result = _cli("promote", str(ws), "baseline", "--approved-by", "A. Reviewer")
    assert result.exit_code == 2 and "alias champion is version 1" in result.output and "outside ratchet" in result.output
    assert _cli("audit", str(ws)).exit_code == 1


def test_an_unreadable_registry_is_not_verified(ws):
    from holdout.audit import audit
    from holdout.records import MlflowRecords, RecordsUnavailable
    from optimizer.lifecycle.initialize import source_root

    class RegistryDown(MlflowRecords):
        def model_aliases(self, name):
            raise RecordsUnavailable("ConnectionError: the registry is down")

    report = audit(ws, source_root=source_root(), records=RegistryDown)
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert list(failed) == ["registry_aliases"], failed
    assert failed["registry_aliases"].startswith("not verified: ") and "registry is down" in failed["registry_aliases"]


def test_promote_and_rollback_through_a_server(server, sealed, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    shutil.copytree(sealed, tmp_path / "ws")
    ws = tmp_path / "ws"
    _keep_baseline(ws, server)
    _trial(ws, "baseline", trial="trial-0001")
    _trial(ws, "exp-0001", trial="trial-0002")
    for ref in ("baseline", "exp-0001"):
        result = _cli("promote", str(ws), ref, "--approved-by", "A. Reviewer")
        assert result.exit_code == 0, result.output
    assert _aliases(ws) == {"champion": 2, "previous": 1}
    assert _cli("rollback", str(ws), "--approved-by", "B. Oncall").exit_code == 0
    assert _aliases(ws) == {"champion": 1}
    assert _audit(ws)[1].passed


@pytest.mark.parametrize("command", ["promote", "rollback"])
def test_help_with_an_example(command):
    result = _cli(command, "--help")
    assert result.exit_code == 0 and "Example: ratchet" in result.output and "--approved-by" in result.output
