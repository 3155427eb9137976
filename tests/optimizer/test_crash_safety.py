"""Real kills (SIGKILL at named fault points, RATCHET_FAULT) of `ratchet try --keep` and `ratchet init`: the next
command finds the workspace at its last kept commit with an intact audit, every experiment id used once, no folder
without its ledger entry and no holdout query without its experiment."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holdout.ledger import Kind, Ledger
from optimizer.base.faults import FAULT_POINTS
from optimizer.cli import app
from tests.conftest import BASELINE, NOTHING, _sealed, mlflow_store

ROOT = Path(__file__).resolve().parents[2]
FAST = BASELINE.replace("N_ESTIMATORS = 300 ", "N_ESTIMATORS = 60 ")  # an honest keep over NOTHING, quickly
EXPERIMENT_POINTS = [p for p in FAULT_POINTS if p.split(":")[0] in ("evaluate", "gate", "keep", "record", "mlflow")]


@pytest.fixture(scope="module")
def baselined(tmp_path_factory) -> Path:
    """A fraud workspace whose champion alerts on nothing, with its baseline evaluated (no refits: fast)."""
    ws = _sealed(tmp_path_factory, "crash", "fraud", {"data.rows": 20_000, "decision.refits": 0}, NOTHING)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{ws.parent / 'mlflow.db'}"
    try:
        assert _try(ws, NOTHING + "\n# unchanged\n").exit_code == 1  # evaluates the baseline
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    return ws


def _try(ws: Path, source: str, *args: str):
    path = ws.parent / "candidate.py"
    path.write_text(source)
    return CliRunner().invoke(app, ["try", str(ws), str(path), "--json", *args])


def _killed(args: list[str], point: str, env: dict[str, str]) -> None:
    """Run a ratchet command that kills itself at `point`; fails unless it really died there."""
    proc = subprocess.run([sys.executable, "-c", "from optimizer.cli import main; main()", *args], cwd=ROOT,
                          env={**env, "RATCHET_FAULT": point, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"{point} never reached (exit {proc.returncode}): {proc.stderr[-1500:]}"


def _kill_a_keep(baselined: Path, tmp_path: Path, monkeypatch, point: str) -> tuple[Path, str]:
    """A private copy of the workspace and its MLflow store, where `try --keep` of FAST was killed at `point`."""
    ws = tmp_path / "ws"
    shutil.copytree(baselined, ws)
    shutil.copyfile(baselined.parent / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    candidate = tmp_path / "fast.py"
    candidate.write_text(FAST)
    _killed(["try", str(ws), str(candidate), "--keep", "--json"], point, dict(os.environ))
    return ws, uri


def _story(ws: Path) -> None:
    """Git, champion state, ledger, folders and the audit tell one story."""
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import source_root
    from optimizer.records.context import load_context

    report = audit(ws, source_root=source_root())
    if report.status == "unverified":  # a kill before the run was whole in MLflow: the ledger holds it, sync writes it
        assert {c.name for c in report.unverified} == {"mlflow_experiments"} and "ratchet sync" in \
            report.unverified[0].detail, report.unverified
        assert CliRunner().invoke(app, ["sync", str(ws)]).exit_code == 0
        report = audit(ws, source_root=source_root())
    assert report.ok, {c.name: c.detail for c in report.checks if not c.passed}
    entries = Ledger(ws / "ledger.duckdb").entries()
    ids = [e.data["experiment"] for e in entries if e.kind == Kind.EXPERIMENT]
    assert ids == [f"exp-{i:04d}" for i in range(1, len(ids) + 1)]  # each id once, none skipped
    assert sorted(p.name for p in (ws / "experiments").iterdir()) == ids  # no folder without its entry, and back
    queries = [e.data["query"] for e in entries if e.kind == Kind.GATE]
    assert queries == list(range(1, len(queries) + 1))  # never double-spent
    asked = {e.data.get("experiment") for e in entries if e.kind == Kind.GATE}
    assert asked <= set(ids)  # no holdout query without its experiment
    ctx = load_context(ws)
    assert ctx.ws.head() == ctx.champion().commit and ctx.ws.policy.read_text() == ctx.ws.champion_source()
    assert not (ws / "champion.next").exists() and not (ws / "champion.prev").exists()


# The walk is split in two files (this one and test_crash_safety_walk.py) so two workers share it; together they
# walk every point of EXPERIMENT_POINTS.
SPLIT = 5


@pytest.mark.parametrize("point", EXPERIMENT_POINTS[:SPLIT])
def test_a_kill_at_each_point_of_an_experiment_is_recovered_by_the_next_command(baselined, tmp_path, monkeypatch,
                                                                                point):
    walk(baselined, tmp_path, monkeypatch, point)


def walk(baselined: Path, tmp_path: Path, monkeypatch, point: str) -> None:
    """A kill at `point`, then the next command: it recovers and the workspace tells one story."""
    ws, uri = _kill_a_keep(baselined, tmp_path, monkeypatch, point)
    after = _try(ws, FAST.replace("SEED = 0", "SEED = 5"), "--keep")  # what the next command finds, and does
    assert after.exit_code in (0, 1), after.output
    _story(ws)
    entries = Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT)
    first = entries[1].data  # exp-0002: the killed one (exp-0001 evaluated the baseline's copy)
    if point in ("keep:swap", "keep:complete", "keep:cleanup", "record:before-folder", "record:before-mlflow",
                 "mlflow:experiment"):
        assert first["kept"], first["reasons"][-1]  # the new champion was in place: rolled forward or finished
    elif point.startswith(("keep:", "gate:")):
        assert first["status"] == "crashed" and "stays counted" in first["reasons"][-1]["detail"]
    assert json.loads(after.stdout)["experiment"] == f"exp-{len(entries):04d}"
    from mlflow.tracking import MlflowClient

    running = MlflowClient(uri).search_runs([e.experiment_id for e in MlflowClient(uri).search_experiments()],
                                            "attributes.status = 'RUNNING'")
    assert not running  # what the killed process left RUNNING was marked KILLED


def test_a_killed_init_blocks_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    args = ["init", "fraud", "--workspace", str(tmp_path / "ws"), "--rows", "8000"]
    _killed(args, "init:before-move", dict(os.environ))
    assert not (tmp_path / "ws").exists()  # the target is whole or untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ws.init-")]  # only the staging folder is left
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ws.init-")]  # removed by the next init
    audit = CliRunner().invoke(app, ["audit", str(tmp_path / "ws")])
    assert audit.exit_code == 0, audit.output


def test_the_audit_names_a_stray_folder_and_a_query_without_its_experiment(baselined, tmp_path):
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import source_root

    ws = tmp_path / "ws"
    shutil.copytree(baselined, ws)
    (ws / "experiments" / "exp-0042").mkdir()
    Ledger(ws / "ledger.duckdb").append(Kind.GATE, {"query": 1, "experiment": "exp-0007", "budget_left": 1})
    failed = {c.name: c.detail for c in audit(ws, source_root=source_root()).checks if not c.passed}
    assert "experiments/exp-0042 has no ledger entry" in failed["experiment_ids"]
    assert "names exp-0007, which the ledger does not hold" in failed["experiment_ids"]
    assert "not a holdout answer ratchet wrote" in failed["gate_replay"]


def test_sync_writes_what_mlflow_missed(baselined, tmp_path, monkeypatch):
    """A kill before the MLflow run: the ledger and the folder hold the experiment, MLflow does not; `ratchet sync`
    writes it (once: a second sync writes nothing)."""
    from mlflow.tracking import MlflowClient

    ws, uri = _kill_a_keep(baselined, tmp_path, monkeypatch, "record:before-mlflow")

    def experiment_runs() -> dict:
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  "tags.`ratchet.kind` = 'experiment'")
        return {r.data.tags["ratchet.experiment"]: r.data.tags.get("ratchet.synced") for r in runs}

    assert "exp-0002" not in experiment_runs()
    first = CliRunner().invoke(app, ["sync", str(ws)])
    assert first.exit_code == 0 and "written now: exp-0002" in first.output, first.output
    assert experiment_runs()["exp-0002"] == "true"
    again = CliRunner().invoke(app, ["sync", str(ws)])
    assert again.exit_code == 0 and "written now: none" in again.output
    _story(ws)


DISK_FULL = """
import os, shutil, subprocess, sys
from pathlib import Path
src, mount, left = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + 3_000_000}", "tmpfs", str(mount)], check=True)
shutil.copytree(src, mount / "ws")
with open(mount / "filler", "wb") as f:
    f.write(b"\\0" * max(shutil.disk_usage(mount).free - left, 0))
ratchet = [sys.executable, "-c", "from optimizer.cli import main; main()"]
full = subprocess.run([*ratchet, "try", str(mount / "ws"), sys.argv[4], "--keep", "--json"], capture_output=True,
                      text=True)
(mount / "filler").unlink()
print(full.returncode)
print(full.stderr.strip().splitlines()[-1] if full.stderr.strip() else "")
shutil.copytree(mount / "ws", sys.argv[5])
"""


def test_a_full_disk_is_one_line_and_the_next_command_goes_on(baselined, tmp_path, monkeypatch):
    """The workspace on a tmpfs with 20 kB left: `try --keep` stops with one line naming the full device (no
    traceback); once space is back the next keep succeeds and the audit is intact."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs a private mount namespace (unshare -m) to mount a small tmpfs")
    shutil.copyfile(baselined.parent / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "mnt").mkdir()
    candidate = tmp_path / "fast.py"
    candidate.write_text(FAST)
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", DISK_FULL, str(baselined), str(tmp_path / "mnt"),
                           "20000", str(candidate), str(tmp_path / "ws")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, line = proc.stdout.strip().splitlines()[-2:]
    assert code == "2" and line.startswith("error: ") and "no space left on the device" in line, proc.stdout
    after = _try(tmp_path / "ws", FAST, "--keep")
    assert after.exit_code == 0, after.output
    _story(tmp_path / "ws")


READ_ONLY = """
import shutil, subprocess, sys
from pathlib import Path
src, mount = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, mount / "ws")
subprocess.run(["mount", "--bind", str(mount / "ws"), str(mount / "ws")], check=True)
subprocess.run(["mount", "-o", "remount,ro,bind", str(mount / "ws")], check=True)
ratchet = [sys.executable, "-c", "from optimizer.cli import main; main()"]
for args in (["try", str(mount / "ws"), sys.argv[3], "--keep"], ["run", str(mount / "ws"), "--experiments", "1"],
             ["audit", str(mount / "ws")]):
    done = subprocess.run([*ratchet, *args], capture_output=True, text=True)
    print(chr(10).join(line for line in done.stdout.splitlines() if "FAIL" in line), file=sys.stderr)
    print(done.returncode, (done.stdout + done.stderr).strip().splitlines()[-1].replace(chr(10), " "))
"""


def test_a_read_only_workspace_is_one_line_before_anything_and_still_audits(baselined, tmp_path, monkeypatch):
    """A read-only copy (a bind mount remounted ro): `try --keep` and `run` stop with exit 2 and one line naming
    the workspace's lock file, before any work; `audit` reads it and says intact."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs a private mount namespace (unshare -m) for a read-only bind mount")
    shutil.copyfile(baselined.parent / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "mnt").mkdir()
    candidate = tmp_path / "fast.py"
    candidate.write_text(FAST)
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", READ_ONLY, str(baselined), str(tmp_path / "mnt"),
                           str(candidate)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (try_code, try_line), (run_code, run_line), (audit_code, audit_line) = (
        line.split(" ", 1) for line in proc.stdout.strip().splitlines()[-3:])
    for code, line in ((try_code, try_line), (run_code, run_line)):
        assert code == "2" and line.startswith("error: ") and "runner.lock: cannot open the runner lock (Read-only" \
            in line and "nothing was changed" in line, proc.stdout
    assert audit_code == "0" and audit_line == "audit: intact", proc.stdout + proc.stderr


def test_ctrl_c_while_an_experiment_is_recorded_finishes_the_record_then_exits_130(baselined, tmp_path,
                                                                                   monkeypatch):
    """SIGINT inside the experiment's half-logged MLflow run (an interrupt there once left the store locked and
    exited 1): the record is written whole, then the command stops as interrupted."""
    ws = tmp_path / "ws"
    shutil.copytree(baselined, ws)
    shutil.copyfile(baselined.parent / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    candidate = tmp_path / "fast.py"
    candidate.write_text(FAST)
    env = {**os.environ, "RATCHET_FAULT": "mlflow:experiment",
           "RATCHET_FAULT_SIGNAL": "INT", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", "from optimizer.cli import main; main()", "try", str(ws),
                           str(candidate), "--keep", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "database is locked" not in proc.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`ratchet.experiment` = 'exp-0002'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.metrics["kept"] == 1.0 and "guard_significance_passed" in runs[0].data.metrics
    _story(ws)
