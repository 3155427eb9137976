"""Hostile policies: each forbidden access is denied, recorded and reported, even when caught."""
from __future__ import annotations

import os
import socket

import numpy as np
import pandas as pd
import pytest

from optimizer.sandbox import Sandbox

LIGHT = ("numpy", "pandas", "pyarrow")
TRAIN = pd.DataFrame({"x": np.arange(6, dtype=float), "y": [0, 1] * 3})


@pytest.fixture(scope="module")
def box():
    with Sandbox(preload=LIGHT, memory_mb=1024) as sandbox:
        yield sandbox


@pytest.fixture()
def secret(tmp_path):
    """A root-style private file in another folder: 0600 in a 0700 directory."""
    folder = tmp_path / "vault"
    folder.mkdir(mode=0o700)
    path = folder / "holdout.csv"
    path.write_text("label\nTOPSECRET\n")
    path.chmod(0o600)
    return path


def _fit(box, body: str, **kw):
    """A policy whose fit runs `body` (indented) and returns normally."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    source = f"import os, sys\n\ndef fit(train):\n{lines}\n    return 0\n\ndef decide(m, rows):\n    return rows['x']\n"
    return box.fit(source, TRAIN, budget_s=kw.pop("budget_s", 30), **kw)


@pytest.mark.parametrize("reader", ["open(PATH).read()", "__import__('pandas').read_csv(PATH)"])
def test_reading_outside_the_workdir_is_a_violation_even_when_caught(box, secret, reader):
    result = _fit(box, f"""
try:
    print("GOT", {reader.replace("PATH", repr(str(secret)))})
except Exception as exc:
    print("caught", type(exc).__name__)
""")
    assert result.status == "violation"
    assert any(f"open {secret} for read" in v for v in result.violations), result.violations
    assert str(secret) in result.error
    assert "caught PermissionError" in result.log and "TOPSECRET" not in result.log


def test_native_reads_are_stopped_by_the_os_layers(box, tmp_path):
    """pyarrow opens files in C++, unseen by the audit hook: uid drop and Landlock must stop it."""
    if not {"uid-drop", "landlock"} & set(box.layers):
        pytest.skip("no OS-level file layer on this machine")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    target = private / "holdout.parquet"
    pd.DataFrame({"label": ["TOPSECRET"]}).to_parquet(target)
    target.chmod(0o600)
    result = _fit(box, f"""
import pyarrow.parquet as pq
try:
    print("GOT", pq.read_table({str(target)!r}).to_pydict())
except Exception as exc:
    print("refused", type(exc).__name__)
""")
    assert "refused" in result.log and "TOPSECRET" not in result.log


def test_writing_outside_the_workdir_is_a_violation(box, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o777)  # only the sandbox, not file permissions, stands in the way
    target = drop / "exfil.txt"
    result = _fit(box, f"""
try:
    open({str(target)!r}, "w").write("rows")
except OSError:
    pass
""")
    assert result.status == "violation"
    assert any(f"open {target} for write" in v for v in result.violations), result.violations
    assert not target.exists()


def test_network_is_unreachable_and_nothing_arrives(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        result = _fit(box, f"""
import socket
try:
    sock = socket.socket()
    sock.settimeout(2)
    sock.connect(("127.0.0.1", {port}))
    sock.sendall(b"rows")
except OSError as exc:
    print("no route", type(exc).__name__)
""")
        assert result.status == "violation"
        assert any(f"socket.connect 127.0.0.1:{port}" in v for v in result.violations)
        with pytest.raises(BlockingIOError):
            listener.accept()  # the test server never saw a connection
    finally:
        listener.close()


def test_subprocess_is_a_violation(box):
    result = _fit(box, """
import subprocess
try:
    subprocess.run(["ls"])
except Exception:
    pass
""")
    assert result.status == "violation"
    assert "subprocess.Popen ['ls']" in result.violations


def test_kernel_refuses_exec_even_without_an_audit_event(box):
    """_posixsubprocess raises no audit event in 3.11; Landlock still forbids executing anything."""
    if "landlock" not in box.layers:
        pytest.skip("no Landlock on this kernel")
    result = _fit(box, """
import multiprocessing.util as util
pid = util.spawnv_passfds(b"/bin/echo", [b"/bin/echo", b"EXEC" + b"UTED"], [])
print("exit code", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
""")
    assert "EXECUTED" not in result.log
    assert "exit code 255" in result.log  # the forked child could not exec and gave up


@pytest.mark.parametrize("attack, fragment", [
    ("import ctypes; ctypes.CDLL(None).system(b'true')", "ctypes.dlopen"),
    ("os.kill(os.getppid(), 0)", "os.kill"),
    ("import gc; gc.get_objects()", "gc.get_objects"),
    ("import optimizer.sandbox._audit as a\na._under.__code__ = (lambda path, roots: True).__code__",
     "__code__ (tampering with the audit hook)"),
    ("sys.settrace(lambda *args: None)", "sys.settrace"),
    ("import importlib; importlib.import_module('guards._result')", "guards"),
    ("os.listdir('/etc')", "list directory /etc"),
    ("open('/proc/self/fd/3', 'rb')", "open /proc/self/fd/3"),
    ("os.symlink('/etc', 'etc-link')", "os.symlink"),
    # code compiled under a library's file name passes the caller check, not the symbol allowlist
    ("import ctypes\nexec(compile('lib = ctypes.CDLL(None)\\nlib.system(b\"true\")',"
     " sys.prefix + '/lib/fake.py', 'exec'))", "ctypes.dlsym system"),
    # re-pointing what the hook's module or the builtins hold does not change the installed hook
    ("import optimizer.sandbox._audit as a\na._under = lambda path, roots: True\n"
     "import builtins\nbuiltins.isinstance = lambda *args: False\nopen('/etc/hostname')",
     "open /etc/hostname for read"),
])
def test_other_escapes_are_recorded(box, attack, fragment):
    body = "try:\n" + "\n".join("    " + line for line in attack.splitlines()) + "\nexcept Exception:\n    pass"
    result = _fit(box, body)
    assert result.status == "violation", (result.error, result.log)
    assert any(fragment in v for v in result.violations), result.violations


def test_pickled_model_payload_runs_contained_in_decide(box, secret):
    source = f"""
class Trap:
    def __reduce__(self):
        return (steal, ({str(secret)!r},))

def steal(path):
    return open(path).read()

def fit(train):
    return Trap()

def decide(model, rows):
    return rows["x"]
"""
    fitted = box.fit(source, TRAIN, budget_s=30)
    assert fitted.status == "ok", fitted.error  # the parent copied bytes; it never loaded them
    result = box.decide(source, fitted.model, {"holdout": TRAIN[["x"]]}, budget_s=30)
    assert result.status == "violation"
    assert any(f"open {secret} for read" in v for v in result.violations)
    assert result.decisions == {}


def test_overrunning_the_budget_kills_the_process_group(box):
    result = _fit(box, """
import threading, time
threading.Thread(target=time.sleep, args=(120,), daemon=False).start()
print("pid", os.getpid(), flush=True)
time.sleep(120)
""", budget_s=1.0)
    assert result.status == "timeout" and "1 s budget" in result.error
    pid = int(result.log.split("pid", 1)[1].split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_allocating_ten_times_the_limit_is_reported_as_memory(box):
    result = _fit(box, f"""
import numpy as np
block = np.ones({box.memory_mb * 10} * 1024 * 1024, dtype=np.uint8)
""")
    assert result.status == "memory", (result.error, result.log)
    assert "memory" in result.error


def test_secrets_in_the_parent_environment_never_reach_a_policy(monkeypatch):
    names = ["ANTHROPIC_API_KEY", "RATCHET_SEAL_KEY", "MLFLOW_TRACKING_URI"]
    for name in names:
        monkeypatch.setenv(name, "sk-do-not-leak")
    source = f"""
import os
def fit(train):
    return 0
def decide(model, rows):
    return [os.environ.get(name, "absent") for name in {names!r}]
"""
    with Sandbox(preload=LIGHT) as sandbox:
        fitted = sandbox.fit(source, TRAIN, budget_s=30)
        rows = {"dev": TRAIN[["x"]].iloc[:3]}
        result = sandbox.decide(source, fitted.model, rows, budget_s=30)
    assert result.status == "ok", result.error
    assert result.decisions["dev"].tolist() == ["absent"] * 3


@pytest.mark.parametrize("tamper", ["os.close(3)", "r, w = os.pipe()\nos.dup2(w, 3)"])
def test_silencing_the_record_channel_ends_the_child_as_a_violation(box, tamper):
    result = _fit(box, tamper + "\ntry:\n    open('/etc/hostname')\nexcept OSError:\n    pass")
    assert result.status == "violation" and "record channel" in result.error
