"""Parallel experiments: K candidates a round evaluated at once (local sandboxes or a real Dask LocalCluster), judged
in proposal order, give the verdicts of one at a time; a Dask worker killed mid-evaluation is a crashed experiment
and the loop carries on."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from optimizer.loop.run import run_loop
from tests.conftest import BASELINE, NOTHING, _sealed

FAST = BASELINE.replace("N_ESTIMATORS = 300 ", "N_ESTIMATORS = 60 ")  # an honest keep over NOTHING, quickly
PATCHES = {
    "a_fast.py": '"""A small gradient-boosted model."""\n' + FAST.split('"""', 2)[2],
    "b_crash.py": "def fit(train):\n    raise RuntimeError('x')\n\n\ndef decide(m, r):\n    return r\n",
    "c_stricter.py": '"""The same model, alerting less."""\n' + FAST.split('"""', 2)[2].replace(
        "THRESHOLD = 0.3 ", "THRESHOLD = 0.5 "),
}
PATCHES["d_same.py"] = PATCHES["a_fast.py"]  # after a_fast is kept: identical to the champion


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    """A fraud workspace whose champion alerts on nothing (so FAST is kept), its baseline not yet evaluated."""
    assert "THRESHOLD = 0.3 " in FAST
    return _sealed(tmp_path_factory, "parallel", "fraud", {"data.rows": 20_000, "decision.refits": 0}, NOTHING)


def _copy(start: Path, tmp_path: Path, monkeypatch, name: str) -> Path:
    """A private copy of the workspace and its MLflow store (so the audit's MLflow checks see this run only)."""
    ws = tmp_path / name / "ws"
    shutil.copytree(start, ws)
    shutil.copyfile(start.parent / "mlflow.db", ws.parent / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.parent / 'mlflow.db'}")
    return ws


def _patches(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "patches"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _verdicts(summary) -> list[tuple]:
    return [(r.experiment, str(r.status), r.verdict.failed_guards, r.policy_sha256,
             {k: round(v, 9) for k, v in r.dev_metrics.items()}) for r in summary.records]


def _intact(ws: Path) -> None:
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import source_root

    report = audit(ws, source_root=source_root())
    assert report.status == "intact", [(c.name, c.detail) for c in report.checks if not c.passed]


def test_parallel_rounds_give_the_verdicts_of_one_at_a_time(start, tmp_path, monkeypatch):
    patches = _patches(tmp_path, PATCHES)
    runs = {}
    for name, options in {"sequential": {}, "local2": {"parallel": 2},
                          "dask2": {"parallel": 2, "executor": "dask"}}.items():
        ws = _copy(start, tmp_path, monkeypatch, name)
        summary = run_loop(ws, experiments=4, proposer="patches", patches=patches, **options)
        assert not summary.interrupted and summary.stop_reason == "4 experiments done", summary.stop_reason
        _intact(ws)  # every experiment recorded in ledger, folders and MLflow; git and champion agree
        runs[name] = _verdicts(summary)
    seq = runs["sequential"]
    assert [v[1] for v in seq] == ["kept", "crashed", "reverted", "reverted"], seq
    assert seq[3][2] == ("change",)  # judged against the champion kept two experiments earlier
    assert runs["local2"] == seq and runs["dask2"] == seq


def test_a_killed_dask_worker_is_a_crashed_experiment_and_the_loop_carries_on(start, tmp_path, monkeypatch):
    import dask
    from distributed import Client, LocalCluster

    ws = _copy(start, tmp_path, monkeypatch, "killed")
    slow = "def fit(train):\n    while True:\n        pass\n\n\ndef decide(model, rows):\n    return rows\n"
    patches = _patches(tmp_path, {"a_slow.py": slow, "b_fast.py": PATCHES["a_fast.py"]})
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    killed: list[int] = []

    def kill_the_busy_worker() -> None:
        """Once both workers took a task and one is still busy alone (the slow fit), SIGKILL that worker."""
        with Client(cluster.scheduler_address) as client:
            seen, alone_since = set(), None
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                seen.update(busy)
                if len(seen) == 2 and len(busy) == 1:
                    alone_since = alone_since or time.monotonic()
                    if time.monotonic() - alone_since > 1.0:
                        pid = client.run(os.getpid, workers=busy)[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                else:
                    alone_since = None
                time.sleep(0.2)

    killer = threading.Thread(target=kill_the_busy_worker, daemon=True)
    killer.start()
    try:
        summary = run_loop(ws, experiments=2, proposer="patches", patches=patches, parallel=2, executor="dask",
                           scheduler=cluster.scheduler_address, budget=120)
    finally:
        killer.join(timeout=10)
        cluster.close()
    assert killed, "the slow candidate's worker was never found alone"
    lost, fast = summary.records
    assert str(lost.status) == "crashed" and lost.verdict.failed_guards == ("sandbox",)
    assert "Dask worker evaluating this candidate was lost" in lost.verdict.failures[0].detail
    assert str(fast.status) == "kept"
    _intact(ws)


def test_ctrl_c_in_a_parallel_round_exits_130_and_the_next_run_records_the_round(start, tmp_path, monkeypatch):
    """SIGINT while one lane's fit has just returned and the other's candidate is being evaluated: the command stops
    as interrupted with nothing recorded and no sandbox server left; the next run judges both candidates."""
    import subprocess
    import sys

    import psutil

    from holdout.ledger import Kind, Ledger

    root = Path(__file__).resolve().parents[2]
    ws = _copy(start, tmp_path, monkeypatch, "ctrl-c")
    slow = PATCHES["a_fast.py"].replace("N_ESTIMATORS = 60 ", "N_ESTIMATORS = 400 ")
    patches = _patches(tmp_path, {"a_fast.py": PATCHES["a_fast.py"], "b_slow.py": slow})
    args = ["run", str(ws), "--proposer", "patches", "--patches", str(patches), "--parallel", "2", "--experiments", "2"]
    env = {**os.environ, "RATCHET_FAULT": "evaluate:fitted", "RATCHET_FAULT_SIGNAL": "INT", "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", "from optimizer.cli import main; main()", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if f"ratchet-sandbox-{proc.pid}-" in " ".join(p.info["cmdline"] or ())]
    assert not left, "a sandbox server of the interrupted run is still running"
    assert not [e for e in Ledger(ws / "ledger.duckdb").entries() if e.kind in (Kind.EXPERIMENT, Kind.GATE)]
    summary = run_loop(ws, experiments=2, proposer="patches", patches=patches, parallel=2)
    assert [str(r.status) for r in summary.records][0] == "kept" and len(summary.records) == 2
    _intact(ws)
