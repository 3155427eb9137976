"""The red team against the workspace's history: what the ledger must bind so the audit cannot say intact when it is
not. Retired holdouts (deleted, replaced, sealed again), the kept commit (amended), the entries a keep writes
(removed), the ledger's chain (swapped) and the tracking store (another folder, a missing run)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from optimizer.cli import app
from tests.conftest import BASELINE, copy_workspace
from tests.redteam.test_redteam_trust import COMMENTED, _try


@pytest.fixture(scope="module")
def _module_env():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def kept(weak_workspace, tmp_path_factory, _module_env) -> Path:
    """A weak-champion workspace (beside its own MLflow store) in which the shipped baseline was kept once."""
    ws = tmp_path_factory.mktemp("history-kept") / "ws"
    _module_env.setenv("MLFLOW_TRACKING_URI", copy_workspace(weak_workspace, ws))
    result = _try(ws, BASELINE, "--keep")
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture
def ws(kept, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(kept, copy))
    return copy


def _audit(ws: Path) -> tuple[int, dict[str, str], str]:
    """Exit code, the failed checks and the whole output of `ratchet audit --json`."""
    result = CliRunner().invoke(app, ["audit", str(ws), "--json"])
    report = json.loads(result.stdout)
    return result.exit_code, {c["check"]: c["detail"] for c in report["checks"] if not c["passed"]}, result.output


def _rows(ws: Path) -> list[tuple]:
    with duckdb.connect(str(ws / "ledger.duckdb"), read_only=True) as con:
        return con.execute("SELECT seq, kind FROM ledger ORDER BY seq").fetchall()


def _sql(ws: Path, *statements: str) -> None:
    with duckdb.connect(str(ws / "ledger.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


# --- retired holdouts are bound -----------------------------------------------------------------------------------

def _reseal(ws: Path, seed: int):
    from optimizer.lifecycle.reseal import reseal

    return reseal(ws, seed=seed)


def _data_seed(ws: Path) -> int:
    from optimizer.workspace.config import load_config

    return load_config(ws / "ratchet.yaml").data.seed


def test_a_deleted_or_replaced_retired_holdout_fails_the_audit_and_its_rows_are_never_sealed_again(ws):
    from optimizer.base.errors import RatchetError

    _reseal(ws, 11)
    assert _audit(ws)[0] == 0, _audit(ws)[1]
    retired = ws / "retired" / "holdout-1"
    sealed = (retired / "holdout.parquet").read_bytes()
    retired.chmod(0o700)
    (retired / "holdout.parquet").chmod(0o600)
    (retired / "holdout.parquet").write_bytes(sealed[:-1] + b"\0")  # replaced by other bytes
    code, failed, _ = _audit(ws)
    assert code == 1 and "retired/holdout-1/holdout.parquet" in failed["sealed_holdouts"], failed
    shutil.rmtree(retired)
    code, failed, _ = _audit(ws)
    assert code == 1 and "retired/holdout-1 is missing" in failed["sealed_holdouts"], failed
    # The first holdout's rows, generated again under new ids: refused from the fingerprint the seal bound.
    with pytest.raises(RatchetError, match=r"reseal refused: (\d+) of \1 new holdout rows .* repeat the holdout "
                                           r"sealed by ledger entry 1 \(seal"):
        _reseal(ws, _data_seed(ws))
    with pytest.raises(RatchetError, match="retired/holdout-1 is missing"):  # no overlap, but the history is broken
        _reseal(ws, 5)


def test_an_older_workspace_audits_as_before_and_its_first_reseal_fills_the_fingerprints(ws):
    """A workspace sealed before fingerprints, the init commit and the store's relative path were recorded."""
    from optimizer.base.errors import RatchetError

    _as_older(ws)
    code, failed, output = _audit(ws)
    assert code == 0, failed
    assert "sealed before fingerprints were recorded" in output
    _reseal(ws, 11)
    reseal = _entries(ws)[-1]
    assert reseal.kind == "reseal" and list(reseal.data["fingerprints_filled"])
    assert _audit(ws)[0] == 0
    shutil.rmtree(ws / "retired" / "holdout-1")
    with pytest.raises(RatchetError, match=r"repeat the holdout sealed by ledger entry 1 \(seal"):
        _reseal(ws, _data_seed(ws))


def _entries(ws: Path) -> list:
    from holdout.ledger import Ledger

    return Ledger(ws / "ledger.duckdb").entries()


def _as_older(ws: Path) -> None:
    """Rewrite the ledger as an older ratchet wrote it: the seal without fingerprint, commit and relative store."""
    from holdout.ledger import Ledger

    entries = _entries(ws)
    (ws / "ledger.duckdb").unlink()
    shutil.rmtree(ws / "seals")
    older = Ledger(ws / "ledger.duckdb")
    for e in entries:
        data = e.data
        if e.kind == "seal":
            data = {k: v for k, v in data.items() if k not in ("fingerprint", "commit")}
            data["mlflow"] = {k: v for k, v in data["mlflow"].items() if k != "store"}
        older.append(e.kind, data)


# --- the kept commit is bound -------------------------------------------------------------------------------------

def test_an_amended_kept_commit_fails_the_audit_and_every_try(ws):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True).stdout.strip()
    policy = ws / "policy.py"
    policy.write_text(policy.read_text().replace("THRESHOLD = ", "THRESHOLD = 0.01 + "))
    git = ["git", "-c", "user.name=x", "-c", "user.email=x@x", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "commit", "-q", "--amend", "-am", "exp-0001: keep"], cwd=ws, check=True)
    code, failed, _ = _audit(ws)
    assert code == 1 and f"is not the last commit the ledger recorded, {head[:12]}" in failed["kept_head"], failed
    before = len(_rows(ws))
    result = _try(ws, COMMENTED)
    assert result.exit_code == 2 and head[:12] in result.output and "git -C" in result.output, result.output
    assert len(_rows(ws)) == before


# --- repair completes every entry a keep writes -----------------------------------------------------------------

def test_deleting_the_last_two_ledger_rows_is_repaired_whole_by_the_next_try(ws):
    rows = _rows(ws)
    assert [k for _, k in rows[-2:]] == ["experiment", "model"], rows
    _sql(ws, f"DELETE FROM ledger WHERE seq >= {rows[-2][0]}")
    assert _try(ws, COMMENTED).exit_code in (0, 1)
    models = [e.data for e in _entries(ws) if e.kind == "model"]
    assert [(m["experiment"], m["version"]) for m in models] == [("baseline", 1), ("exp-0001", 2)], models
    code, failed, _ = _audit(ws)
    assert code == 0, failed


def test_a_removed_model_entry_fails_the_audit_until_repair_enters_it_again(ws):
    rows = _rows(ws)
    _sql(ws, f"DELETE FROM ledger WHERE seq = {rows[-1][0]}")
    code, failed, _ = _audit(ws)
    assert code == 1 and "registered version 2" in failed["model_entries"] and "ratchet repair" in \
        failed["model_entries"], failed
    result = CliRunner().invoke(app, ["repair", str(ws)])
    assert result.exit_code == 0 and "registered version 2" in result.output, result.output
    assert _audit(ws)[0] == 0


# --- the integrity guard verifies the chain ----------------------------------------------------------------------

def test_try_refuses_a_ledger_whose_chain_is_broken_and_appends_nothing(ws):
    rows = _rows(ws)
    _sql(ws, "UPDATE ledger SET seq = -1 WHERE seq = 2", "UPDATE ledger SET seq = 2 WHERE seq = 3",
         "UPDATE ledger SET seq = 3 WHERE seq = -1")
    result = _try(ws, COMMENTED)
    assert result.exit_code == 2 and "ledger.duckdb: hash chain broken" in result.output, result.output
    assert "ratchet audit" in result.output and len(_rows(ws)) == len(rows)


def test_the_integrity_guard_checks_the_chain_before_each_experiment(ws):
    from optimizer.base.errors import IntegrityError
    from optimizer.loop.experiment import run_experiment
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    ctx = load_context(ws)
    rows = _rows(ws)
    _sql(ws, "UPDATE ledger SET payload = replace(payload, 'exp-0001', 'exp-0009') WHERE kind = 'experiment'")
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox, \
            pytest.raises(IntegrityError, match=r"ledger.duckdb: hash chain broken .* run `ratchet audit"):
        run_experiment(ctx, sandbox, COMMENTED, proposer="redteam", hypothesis="a comment")
    assert len(_rows(ws)) == len(rows)


# --- the workspace owns its tracking store -----------------------------------------------------------------------

def test_commands_from_another_folder_record_to_the_store_the_workspace_recorded(ws, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert _try(ws, COMMENTED).exit_code in (0, 1)
    assert not (elsewhere / "mlflow").exists()
    code, failed, _ = _audit(ws)
    assert code == 0, failed
    # Named by MLFLOW_TRACKING_URI, another store is used, and said once.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    shutil.copyfile(ws.parent / "mlflow.db", tmp_path / "other.db")
    result = CliRunner().invoke(app, ["try", str(ws), str(ws.parent / "candidate.py"), "--json"])
    assert result.exit_code in (0, 1) and result.stderr.count("MLFLOW_TRACKING_URI=") == 1, result.stderr


def test_a_run_the_ledger_holds_and_mlflow_lacks_makes_the_audit_not_verified_until_sync(ws):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`ratchet.experiment` = 'exp-0001'")
    client.delete_run(runs[0].info.run_id)
    code, failed, output = _audit(ws)
    assert code == 4 and "ratchet sync" in failed["mlflow_experiments"], failed
    assert CliRunner().invoke(app, ["sync", str(ws)]).exit_code == 0
    assert _audit(ws)[0] == 0
