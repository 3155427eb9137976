"""The fork server's lifecycle: recovery after it dies, stray processes, and the layer report."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from optimizer.base.errors import RatchetError
from optimizer.sandbox import Sandbox, describe_isolation

LIGHT = ("numpy", "pandas", "pyarrow")
TRAIN = pd.DataFrame({"x": np.arange(4, dtype=float)})
QUICK = "def fit(train):\n    return 1\ndef decide(model, rows):\n    return rows['x']\n"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.update(int(p) for p in handle.read().split())
        except FileNotFoundError:  # a thread that ended while we listed them
            continue
    return found


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for an init that may not reap promptly in a container."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_server_death_mid_request_is_a_crash_and_the_next_request_recovers():
    slow = "import time\ndef fit(train):\n    time.sleep(60)\ndef decide(model, rows):\n    return rows['x']\n"
    with Sandbox(preload=LIGHT) as box:
        server = box._process.pid
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(r=box.fit(slow, TRAIN, budget_s=60)))
        worker.start()
        for _ in range(600):  # wait (event-driven, not a timing assertion) for the forked child
            if _children(server):
                break
            time.sleep(0.02)
        orphan = _children(server).pop()
        os.kill(server, signal.SIGKILL)
        worker.join(timeout=120)
        crashed = outcome["r"]
        assert crashed.status == "crash" and "server died" in crashed.error
        for _ in range(500):  # its parent-death signal takes the child down with the server
            if _dead(orphan):
                break
            time.sleep(0.02)
        assert _dead(orphan)
        again = box.fit(QUICK, TRAIN, budget_s=30)
        assert again.status == "ok", again.error
        assert box._process.pid != server


def test_a_server_killed_while_idle_is_restarted_transparently():
    with Sandbox(preload=LIGHT) as box:
        first = box._process.pid
        os.kill(first, signal.SIGKILL)
        box._process.wait()
        result = box.fit(QUICK, TRAIN, budget_s=30)
        assert result.status == "ok", result.error
        assert box._process.pid != first


def test_hook_only_mode_records_and_sweeps_an_escaped_grandchild():
    """Without Landlock a grandchild can be spawned in a new session (out of the process group);
    as subreaper the server still finds and kills it after the timeout."""
    source = """
import multiprocessing.util as util, os, time
def fit(train):
    pid = util.spawnv_passfds(b"/usr/bin/setsid", [b"/usr/bin/setsid", b"/bin/sleep", b"120"], [])
    print("grandchild", pid, flush=True)
    time.sleep(120)
def decide(model, rows):
    return rows["x"]
"""
    with Sandbox(preload=LIGHT, isolation="hook-only") as box:
        assert box.layers[0] == "audit-hook" and "netns" not in box.layers
        result = box.fit(source, TRAIN, budget_s=2.0)
        assert result.status == "timeout", (result.error, result.log)
        grandchild = int(result.log.split("grandchild", 1)[1].split()[0])
        with pytest.raises(ProcessLookupError):
            os.kill(grandchild, 0)
        connect = "import socket\ndef fit(train):\n    try:\n        socket.socket().connect(('127.0.0.1', 9))\n    except OSError:\n        pass\n"
        refused = box.fit(connect, TRAIN, budget_s=30)
        assert refused.status == "violation" and "socket.connect 127.0.0.1:9" in refused.violations


def test_describe_isolation_matches_what_a_sandbox_uses():
    report = describe_isolation()
    assert report["layers"] == list(Sandbox(preload=LIGHT).layers)
    assert {"audit-hook", "scrubbed-env"} <= set(report["layers"])
    for layer, reason in report["skipped"].items():
        assert layer not in report["layers"] and reason
    hook_only = describe_isolation("hook-only")
    assert not {"netns", "uid-drop", "landlock"} & set(hook_only["layers"])


def test_strict_mode_refuses_to_run_with_a_missing_layer():
    report = describe_isolation()
    if report["skipped"]:
        with pytest.raises(RatchetError, match="strict"):
            Sandbox(isolation="strict")
    else:
        assert Sandbox(isolation="strict").layers == tuple(report["layers"])
    with pytest.raises(ValueError):
        Sandbox(isolation="none")
