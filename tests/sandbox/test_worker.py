"""Persistent decide workers: one contained process per fitted policy, reused across requests, ended on misuse."""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from optimizer.base.errors import RatchetError
from optimizer.sandbox import Sandbox

LIGHT = ("numpy", "pandas", "pyarrow")

POLICY = """
import numpy as np
THRESHOLD = 0.5
CALLS = 0

def fit(train):
    return {"mean": float(train["y"].mean())}

def decide(model, rows):
    global CALLS
    CALLS += 1
    act = rows["act"].iloc[0] if len(rows) else ""
    if act == "sleep":
        import time
        time.sleep(30)
    if act == "boom":
        raise ValueError("the policy's own words, never shown")
    if act == "peek":
        try:
            open(PEEK).read()
        except OSError:
            pass
    if act == "threshold":
        global THRESHOLD
        THRESHOLD = 0.9
    return rows["x"].to_numpy() * 2 + model["mean"] + 0 * CALLS
"""
COUNTER = POLICY.replace("+ 0 * CALLS", "* 0 + CALLS")


def rows(n: int = 3, act: str = "", start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(start, start + n, dtype=float), "act": pd.array([act] * n, dtype="string")})


@pytest.fixture(scope="module")
def box():
    with Sandbox(preload=LIGHT, memory_mb=1024) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def train():
    return pd.DataFrame({"x": np.arange(20, dtype=float), "y": np.arange(20) % 4})


def _source(text: str, peek: str = "/etc/shadow") -> str:
    return f"PEEK = {peek!r}\n" + text


def _worker(box, train, text: str = POLICY, **kw):
    source = _source(text, **kw)
    fitted = box.fit(source, train, budget_s=30)
    assert fitted.ok, fitted.error
    return source, fitted.model, box.worker(source, fitted.model, budget_s=30)


def test_a_worker_decides_like_a_fresh_child_and_reads_constants_each_time(box, train):
    source, model, worker = _worker(box, train)
    with worker:
        frame = rows(5)
        fresh = box.decide(source, model, {"rows": frame}, budget_s=30, constants=("THRESHOLD",))
        first = worker.decide(frame, budget_s=10, constants=("THRESHOLD",))
        assert first.ok, first.error
        np.testing.assert_array_equal(first.decisions["rows"], fresh.decisions["rows"])
        assert first.constants == {"THRESHOLD": 0.5} and first.log == ""
        changed = worker.decide(rows(1, "threshold"), budget_s=10, constants=("THRESHOLD",))
        assert changed.ok and changed.constants == {"THRESHOLD": 0.9}  # read after this decide, not cached


def test_one_process_answers_every_request(box, train):
    _, _, worker = _worker(box, train, COUNTER)
    with worker:
        seen = [worker.decide(rows(2), budget_s=10).decisions["rows"][0] for _ in range(4)]
    assert seen == [1.0, 2.0, 3.0, 4.0]  # the module's state lives on: the policy was loaded once


def test_a_failing_request_is_answered_from_the_closed_vocabulary_and_the_worker_goes_on(box, train):
    _, _, worker = _worker(box, train, COUNTER)
    with worker:
        failed = worker.decide(rows(1, "boom"), budget_s=10)
        assert failed.status == "crash" and "decide raised ValueError" in failed.error
        assert "own words" not in failed.error and worker.alive
        after = worker.decide(rows(1), budget_s=10)
        assert after.ok and after.decisions["rows"][0] == 2.0  # the same process, second request


def test_an_overrun_kills_the_worker_and_later_requests_say_so(box, train):
    source, model, worker = _worker(box, train)
    started = time.monotonic()
    result = worker.decide(rows(1, "sleep"), budget_s=1)
    assert result.status == "timeout" and "1 s budget" in result.error
    assert time.monotonic() - started < 10 and not worker.alive
    later = worker.decide(rows(1), budget_s=10)
    assert later.status == "crash" and "has ended (it overran its budget)" in later.error
    with box.worker(source, model, budget_s=30) as fresh:  # a new one takes over
        assert fresh.decide(rows(1), budget_s=10).ok


def test_a_denied_access_ends_the_worker_as_a_violation_even_when_caught(box, train, tmp_path):
    secret = tmp_path / "vault.csv"
    secret.write_text("TOPSECRET\n")
    secret.chmod(0o600)
    _, _, worker = _worker(box, train, peek=str(secret))
    assert worker.decide(rows(1), budget_s=10).ok
    result = worker.decide(rows(1, "peek"), budget_s=10)
    assert result.status == "violation" and str(secret) in result.error
    assert result.decisions == {} and not worker.alive


@pytest.mark.parametrize("text, words", [
    ("def fit(train):\n    return 0\n", "defines no callable decide()"),
    ("def fit(train):\n    return 0\ndef decide(m, rows):\n    return rows\nraise_here = 1 / 0\n",
     "loading policy.py raised ZeroDivisionError"),
])
def test_a_worker_that_cannot_load_its_policy_is_refused_with_the_reason(box, train, text, words):
    fitted = box.fit("def fit(train):\n    return 0\n", train, budget_s=30)
    with pytest.raises(RatchetError, match="did not start") as caught:
        box.worker(text, fitted.model, budget_s=30)
    assert words in str(caught.value)


def test_the_parent_never_follows_a_link_the_worker_left_in_its_workdir(box, train, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    _, _, worker = _worker(box, train)
    with worker:
        os.symlink(target, worker._work / "rows.pkl")  # as if the policy had planted it between requests
        result = worker.decide(rows(2), budget_s=10)
        assert result.ok, result.error
    assert target.read_text() == "untouched"


def test_workers_outlive_other_phases_and_end_with_the_sandbox(train):
    with Sandbox(preload=LIGHT, memory_mb=1024) as sandbox:
        source, model, worker = _worker(sandbox, train, COUNTER)
        assert worker.decide(rows(1), budget_s=10).decisions["rows"][0] == 1.0
        assert sandbox.decide(source, model, {"r": rows(1)}, budget_s=30).ok  # a fresh child, then the sweep
        assert sandbox.fit(source, train, budget_s=30).ok
        assert worker.decide(rows(1), budget_s=10).decisions["rows"][0] == 2.0  # still the same process
    assert not worker.alive
    assert worker.decide(rows(1), budget_s=10).status == "crash"


def test_workers_have_no_model_broker(train):
    class Quiet:
        def handle(self, line):
            return {"error": "no"}, None

        def close(self):
            pass

    class Broker:
        def session(self, *a):
            return Quiet()

    with Sandbox(preload=LIGHT, broker=Broker()) as sandbox:
        fitted = sandbox.fit(POLICY, train, budget_s=30)
        with pytest.raises(RatchetError, match="no model broker"):
            sandbox.worker(POLICY, fitted.model, budget_s=30)


def test_a_killed_owners_folder_is_removed_by_the_next_sandbox(tmp_path):
    """A SIGKILL skips close(): the next Sandbox removes the folder (labelled rows, models) of an owner that is gone."""
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from optimizer.sandbox._leftovers import PREFIX, clean

    script = ("import sys, time\nfrom optimizer.sandbox import Sandbox\nbox = Sandbox(preload=('numpy',))\n"
              "box.start()\nprint(box._base, flush=True)\ntime.sleep(120)\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    left = Path(proc.stdout.readline().strip())
    assert left.name.startswith(f"{PREFIX}{proc.pid}-") and left.is_dir()
    clean()
    assert left.is_dir()  # its owner lives: never touched
    (left / "train.parquet").write_bytes(b"x" * 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert left.is_dir()  # the kill skipped every cleanup
    stranger = Path(tempfile.mkdtemp(prefix=PREFIX))  # no owner record: only `doctor --clean --all` removes it
    try:
        with Sandbox(preload=LIGHT) as sandbox:
            assert not left.exists() and stranger.is_dir()
            assert sandbox._base.stat().st_mode & 0o077 in (0o011, 0)  # others may at most pass through
    finally:
        stranger.rmdir()
