"""Experiment runs written by the recorder process while the loop goes on: every run whole and in its place, a
failed write said with what to do, and the process gone with the loop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from holdout.ledger import Kind, Ledger
from optimizer.base.errors import RatchetError
from optimizer.lifecycle.initialize import init_workspace

ROOT = Path(__file__).resolve().parents[2]


def test_a_loop_on_a_sqlite_store_gets_every_run_whole_under_its_loop_run(tmp_path, monkeypatch):
    from optimizer.loop.run import run_loop
    from optimizer.tracking import recorder

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ws = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 12_000, "seal.canaries": 2,
                                                               "decision.refits": 0}).workspace.root
    seen = []
    original = recorder.behind

    def behind(tracker, parent_run, seal, workspace):
        with original(tracker, parent_run, seal, workspace):
            seen.append(tracker.recorder)  # the recorder process is what writes the runs that keep nothing
            yield

    monkeypatch.setattr(recorder, "behind", __import__("contextlib").contextmanager(behind))
    summary = run_loop(ws, experiments=5, proposer="optuna")
    assert len(summary.records) == 5 and seen and seen[0] is not None
    ledger = {e.data["experiment"]: e for e in Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT)}
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    loop = [r for r in runs if r.data.tags.get("ratchet.kind") == "loop"]
    experiments = {r.data.tags["ratchet.experiment"]: r for r in runs if r.data.tags.get("ratchet.kind") == "experiment"}
    assert sorted(experiments) == sorted(ledger) and len(loop) == 1
    for name, run in experiments.items():
        entry = ledger[name].data
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == loop[0].info.run_id
        assert run.data.tags["ratchet.ledger_seq"] == str(ledger[name].seq)
        assert run.data.metrics["kept"] == float(entry["kept"])
        for reason in entry["reasons"]:
            assert run.data.metrics[f"guard_{reason['guard']}_passed"] == float(reason["passed"])
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"policy.py", "record.json", "diff.patch"}


def test_a_run_the_recorder_cannot_write_is_said_with_what_to_do(tmp_path):
    from optimizer.tracking.recorder import Recorder
    from optimizer.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker("recorder-test", uri)
    parent = tracker.client.create_run(tracker.experiment_id)
    record = {"experiment": "exp-0007", "number": 7, "proposer": "patches", "hypothesis": "", "status": "reverted",
              "reasons": [], "parent_commit": "c0", "commit": None, "policy_sha256": "0" * 64, "dev_metrics": {},
              "gate": None, "fit": {}, "seconds": {}, "proposal": {}, "decisions_sha256": {}, "ledger_seq": 9}
    recorder = Recorder(uri, "recorder-test", "seal", parent.info.run_id, tmp_path / "ws")
    try:
        recorder.submit(record, "", tmp_path / "experiments" / "exp-0007")  # no such folder: nothing to log
        with pytest.raises(RatchetError, match=r"writing the run of exp-0007 failed .*`ratchet sync .*ws`"):
            recorder.drain()
    finally:
        recorder.close()


LOOP_STAND_IN = """
import subprocess, sys, time
from optimizer.tracking.recorder import Recorder
recorder = Recorder(sys.argv[1], "recorder-test", "seal", sys.argv[2], "ws")
# Another holder of the recorder's input: the loop's death alone must end it, not the end of its input.
holder = subprocess.Popen(["sleep", "60"], pass_fds=[recorder._process.stdin.fileno()])
print(recorder._process.pid, holder.pid, flush=True)
time.sleep(120)
"""


def test_the_recorder_ends_with_the_loop_that_started_it(tmp_path):
    """A loop killed outright takes its recorder with it: no process goes on writing into the store that the next
    command's recovery reads (what was queued is in the ledger, for `ratchet sync`)."""
    from optimizer.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker("recorder-test", uri)
    parent = tracker.client.create_run(tracker.experiment_id)
    loop = subprocess.Popen([sys.executable, "-c", LOOP_STAND_IN, uri, parent.info.run_id], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        pid, holder = map(int, loop.stdout.readline().split())
        time.sleep(3)  # the recorder is up (armed its death signal)
        assert Path(f"/proc/{pid}").exists()
        os.kill(loop.pid, signal.SIGKILL)
        loop.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"
    finally:
        loop.kill()
        if "holder" in locals():
            os.kill(holder, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
