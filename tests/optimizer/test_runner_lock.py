"""One runner per workspace: a second writer is refused at once naming the holder; a killed holder's lock is taken
over; two real `ratchet run`s on one workspace never interleave their experiments."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holdout.ledger import Kind, Ledger
from optimizer.base.errors import WorkspaceBusy
from optimizer.cli import app
from optimizer.workspace.runner import Holder, runner_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from optimizer.workspace.runner import runner_lock
with runner_lock(sys.argv[1], "ratchet run ws --experiments 50"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture()
def ws(small_workspace, tmp_path, monkeypatch) -> Path:
    shutil.copytree(small_workspace, tmp_path / "ws")
    shutil.copy(small_workspace.parent / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "ws"


@pytest.fixture()
def holder(ws):
    """Another process holding the workspace's runner lock until the test ends (or kills it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ws)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_second_writer_is_refused_at_once_naming_the_holder(ws, holder, tmp_path):
    candidate = tmp_path / "candidate.py"
    candidate.write_text((ws / "policy.py").read_text())
    for args in (("try", ws, candidate), ("run", ws, "--experiments", "1", "--proposer", "optuna"),
                 ("reseal", ws, "--seed", "3"), ("repair", ws),
                 ("promote", ws, "baseline", "--approved-by", "A. Reviewer")):
        result = _cli(*args)
        assert result.exit_code == 75, (args, result.output)
        assert f"pid {holder.pid}" in result.output and "ratchet run ws --experiments 50" in result.output
        assert "busy" in result.output and "since" in result.output
    assert Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT) == []  # nothing was written
    audit = _cli("audit", ws)  # reading needs no lock
    assert audit.exit_code == 0, audit.output


def test_a_killed_holders_lock_is_taken_over_and_says_whose_it_was(ws, holder):
    with pytest.raises(WorkspaceBusy):
        with runner_lock(ws):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    left = Holder.read(ws / "runner.lock")
    assert left is not None and left.pid == holder.pid  # the dead process never cleaned up
    with runner_lock(ws) as taken_over:
        assert taken_over == left
        with runner_lock(ws) as nested:  # re-entrant within a process
            assert nested is None
        mine = Holder.read(ws / "runner.lock")
        assert mine.pid == os.getpid()
    assert (ws / "runner.lock").read_text() == ""  # a released lock names nobody


def test_two_runs_at_once_never_interleave(ws, tmp_path):
    """The second `ratchet run` is refused while the first runs; the first's experiments are whole and unique."""
    patches = tmp_path / "patches"
    patches.mkdir()
    slow = (ws / "policy.py").read_text().replace("def fit(train):\n", "def fit(train):\n    import time\n"
                                                  "    time.sleep(3)\n", 1)
    for i in range(2):
        (patches / f"p{i}.py").write_text(slow.replace("SEED = 0", f"SEED = {i + 1}"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", "from optimizer.cli import main; main()", "run", str(ws), "--experiments", "2",
               "--proposer", "patches", "--patches", str(patches)]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while Holder.read(ws / "runner.lock") is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out, errs = first.communicate(timeout=600)
    assert first.returncode == 0, errs[-2000:]
    assert second.returncode == 75 and f"pid {first.pid}" in second.stderr, second.stderr[-2000:]
    experiments = [e.data["experiment"] for e in Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT)]
    assert experiments == ["exp-0001", "exp-0002"]
    assert sorted(p.name for p in (ws / "experiments").iterdir()) == experiments
    audit = _cli("audit", ws, "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["ok"]
