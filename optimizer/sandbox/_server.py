"""The warm fork server: imports the heavy libraries once, then forks one contained child per request.

Protocol (JSON lines on stdin/stdout, never pickle): the parent's first line configures the server,
which answers {"ready": ...}; each later line asks for one phase and gets one line of process facts
back (exit code, signal, timeout, audit records, fit log tail). The server reads no file the child
wrote: interpreting outputs is the parent's job. It runs no candidate code itself.

With "broker": true a phase may also relay model requests (see _channel): each line the child
writes goes to the parent as {"broker": seq, "line": ...}; the parent answers with
{"op": "broker_reply", "seq": seq, "reply": {...}, "stop": reason | null}, and a stop kills the
child. Replies for a request the server no longer waits on (the child was killed) are dropped.

A "worker" phase forks a child that stays (see _host): later {"op": "work", "worker": id, ...} lines are
relayed to it, one decide each, and {"op": "end", "worker": id} ends it. Live workers survive other phases.
"""
from __future__ import annotations

import gc
import importlib
import json
import linecache
import os
import select
import sys
import time
import traceback

from optimizer.sandbox import _channel, _child, _host, _quota  # imports numpy, pandas, pyarrow once, for every child
from optimizer.sandbox._isolation import SYSTEM_READ, _gpu_visible, gpu_paths, python_roots
from optimizer.sandbox._procs import Tail, empty, kill_group, read_into, records, sweep
from optimizer.sandbox._protocol import EXIT_SETUP, LOG_CAP, MAX_VIOLATIONS

_PR_SET_CHILD_SUBREAPER = 36


def _preload(names: list[str]) -> dict[str, str]:
    errors = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional library is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
    if "sklearn" in sys.modules:
        try:  # threadpoolctl finds libc through a subprocess once; do it here, not in a child
            import threadpoolctl

            threadpoolctl.threadpool_info()
        except Exception:  # noqa: BLE001
            pass
    return errors


def _warm_up() -> None:
    """Load rows and write decisions once, here: pandas and Arrow set up their type conversions and memory pools on
    first use, and a forked child would otherwise pay for that in every request."""
    import io
    import pickle

    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"i": np.arange(3), "x": np.ones(3), "t": pd.date_range("2026-01-01", periods=3),
                          "s": pd.array(["a", "b", "a"], dtype="string"), "c": pd.Categorical(["a", "b", "a"])})
    pickle.loads(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own bytes
    np.save(io.BytesIO(), frame["x"].to_numpy(), allow_pickle=False)


def _device() -> str:
    if not _gpu_visible():
        return "cpu"
    try:
        import xgboost

        return "cuda" if xgboost.build_info().get("USE_CUDA") else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


def _serve(request: dict, static: dict, link: "_Link", keep: set[int]) -> dict:
    """One fit or decide in a fresh child; `keep`: live workers, spared by the sweep afterwards."""
    record_r, record_w = os.pipe()
    log_r, log_w = os.pipe() if request["phase"] == "fit" else (-1, -1)
    ask_r, ask_w = os.pipe() if request.get("broker") else (-1, -1)
    answer_r, answer_w = os.pipe() if request.get("broker") else (-1, -1)
    sys.stdout.flush()
    sys.stderr.flush()  # nothing buffered here may be flushed again by the child
    quota = _quota.Quota((request["workdir"], *(["/dev/shm"] if static["private_shm"] else [])),
                         static["disk_bytes"], static["disk_files"])
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        for fd in (record_r, log_r, ask_r, answer_w):
            if fd >= 0:
                os.close(fd)
        _child.run({**static, **request}, record_w, log_w, (ask_w, answer_r) if ask_w >= 0 else None)
    for fd in (record_w, log_w, ask_w, answer_r):
        if fd >= 0:
            os.close(fd)
    tails = {record_r: Tail(1 << 20), **({log_r: Tail(LOG_CAP)} if log_r >= 0 else {})}
    open_fds = set(tails)
    relay = _Relay(ask_r, answer_w, link, pid) if ask_r >= 0 else None
    pidfd = os.pidfd_open(pid)
    deadline = start + float(request["budget_s"])
    timed_out, status, overrun = False, None, None
    while status is None:
        remaining = deadline - time.monotonic()
        overrun = quota.over(pid) if remaining > 0 else None
        if remaining <= 0 or overrun:
            timed_out = not overrun
            kill_group(pid)
            _, status = os.waitpid(pid, 0)
            break
        reads, writes = ([*relay.reads()], [*relay.writes()]) if relay else ([], [])
        ready, writable, _ = select.select([pidfd, *open_fds, *reads], writes, [], quota.wait_s(remaining))
        for fd in ready:
            if fd == pidfd:
                _, status = os.waitpid(pid, 0)
            elif fd in open_fds:
                read_into(fd, tails, open_fds)
            elif relay is not None:  # the only other fds watched are the relay's
                relay.readable(fd)
        if writable and relay is not None:  # only the relay asks to write
            relay.flush()
    seconds = time.monotonic() - start
    os.close(pidfd)
    kill_group(pid)  # anything left in its process group
    strays = sweep(keep)
    overrun = overrun or quota.over(now=True)  # what a writer faster than a tick left behind
    if static["private_shm"]:
        empty("/dev/shm")
    while open_fds:  # every writer is dead now; a bounded wait guards against the unforeseen
        ready, _, _ = select.select(list(open_fds), [], [], 2.0)
        if not ready:
            break
        for fd in ready:
            read_into(fd, tails, open_fds)
    for fd in tails:
        os.close(fd)
    if relay:
        relay.close()
    denied = records(tails[record_r])
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out and not (relay and relay.stop), "seconds": seconds, "strays": strays,
        "violations": denied[:MAX_VIOLATIONS],
        "log": tails[log_r].text() if log_r >= 0 else "",
        "broker_stop": relay.stop if relay else None,
        "broker_requests": relay.seq if relay else 0,
        "quota": overrun,
    }


class _Link:
    """The parent's end: JSON lines out on `replies`, lines in from stdin without read-ahead surprises."""

    def __init__(self, replies, fd: int) -> None:
        self.replies, self.fd, self.pending, self.closed = replies, fd, bytearray(), False

    def send(self, message: dict) -> None:
        self.replies.write(json.dumps(message) + "\n")

    def feed(self) -> list[bytes]:
        """Read what is there (the fd is readable) and return the complete lines."""
        self.pending += self.feed_raw()
        lines = []
        while b"\n" in self.pending:
            cut = self.pending.index(b"\n")
            lines.append(bytes(self.pending[:cut]))
            del self.pending[:cut + 1]
        return lines

    def readline(self) -> bytes:
        """The next line, blocking; b"" at end of input."""
        while b"\n" not in self.pending and not self.closed:
            self.pending += self.feed_raw()
        if b"\n" not in self.pending:
            return b""
        cut = self.pending.index(b"\n")
        line = bytes(self.pending[:cut + 1])
        del self.pending[:cut + 1]
        return line

    def feed_raw(self) -> bytes:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.closed = True
        return chunk


class _Relay:
    """One phase's model requests: child line -> parent, parent reply -> child, one at a time."""

    waiting: int | None  # the seq of the request the parent is answering, None while none is
    stop: str | None  # why the child was halted, None while it runs

    def __init__(self, ask: int, answer: int, link: _Link, pid: int) -> None:
        self.ask, self.answer, self.link, self.pid = ask, answer, link, pid
        os.set_blocking(answer, False)  # a child that stops reading must not stall the server
        self.inbox, self.outbox = bytearray(), bytearray()
        self.seq, self.waiting, self.stop, self.ask_open = 0, None, None, True

    def reads(self) -> list[int]:
        fds = [self.ask] if self.ask_open and self.waiting is None else []
        return fds + ([self.link.fd] if self.waiting is not None and not self.link.closed else [])

    def writes(self) -> list[int]:
        return [self.answer] if self.outbox else []

    def readable(self, fd: int) -> None:
        if fd == self.link.fd:
            lines = self.link.feed()
            for line in lines:
                self._answer(line)
            if self.link.closed:
                self._halt("the parent went away")
            return
        chunk = os.read(self.ask, 1 << 16)
        if not chunk:
            self.ask_open = False
        self.inbox += chunk
        self._forward()

    def _forward(self) -> None:
        if self.waiting is not None or self.stop:
            return
        if b"\n" not in self.inbox:
            if len(self.inbox) > _channel.MAX_REQUEST_BYTES:
                self._halt(f"a model request longer than {_channel.MAX_REQUEST_BYTES} bytes")
            return
        cut = self.inbox.index(b"\n")
        line = bytes(self.inbox[:cut])
        del self.inbox[:cut + 1]
        if len(line) > _channel.MAX_REQUEST_BYTES:
            self._halt(f"a model request longer than {_channel.MAX_REQUEST_BYTES} bytes")
            return
        self.seq += 1
        self.waiting = self.seq
        self.link.send({"broker": self.seq, "line": line.decode("utf-8", "replace")})

    def _answer(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("op") != "broker_reply" or message.get("seq") != self.waiting:
            return  # a late reply for a request of an earlier phase
        self.waiting = None
        if message.get("stop"):
            self._halt(str(message["stop"])[:300])
            return
        self.outbox += json.dumps(message.get("reply") or {"error": "no reply"}).encode() + b"\n"
        self.flush()
        self._forward()  # a request that arrived while this one was in flight

    def flush(self) -> None:
        try:
            written = os.write(self.answer, self.outbox)
            del self.outbox[:written]
        except BlockingIOError:
            pass
        except OSError:
            self.outbox.clear()

    def _halt(self, reason: str) -> None:
        if not self.stop:
            self.stop = reason
            kill_group(self.pid)

    def close(self) -> None:
        for fd in (self.ask, self.answer):
            os.close(fd)


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries land in the server log, never in the protocol
    link = _Link(replies, sys.stdin.fileno())
    config = json.loads(link.readline())
    errors = _preload(config["preload"])
    import ctypes.util  # noqa: F401 - the child must not need to import anything of its own

    import pyarrow.parquet  # noqa: F401

    try:
        _warm_up()
    except Exception:  # noqa: BLE001 - only a saving: each child then sets these up itself
        traceback.print_exc()

    for module in (_child, _channel, sys.modules["optimizer.sandbox._audit"], sys.modules["optimizer.sandbox._phases"]):
        linecache.getlines(module.__file__ or "")  # tracebacks in the child must not re-read our source
    device = _device()
    libc = ctypes.CDLL(None, use_errno=True)
    subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    roots = python_roots()
    extra = gpu_paths() if device == "cuda" else ()
    static = {
        "server_pid": os.getpid(), "device": device, "memory_mb": config["memory_mb"],
        "uid": config["uid"], "gid": config["gid"], "landlock_abi": config["landlock_abi"],
        "data_limit": config["data_limit"], "private_shm": config["private_shm"],
        "disk_bytes": config["disk_bytes"], "disk_files": config["disk_files"],
        "read_roots": list(roots + SYSTEM_READ + extra),
        "device_paths": [p for p in extra if p.startswith("/dev/")],
        "list_roots": [os.path.realpath(p) for p in sys.path if p],
        "trusted_code": list(roots), "ctypes_dir": os.path.dirname(ctypes.__file__),
    }
    replies.write(json.dumps({"ready": True, "pid": os.getpid(), "device": device,
                              "preload_errors": errors, "subreaper": subreaper}) + "\n")
    host = _host.Host(static)
    # Everything imported so far is kept for the server's life: the collector of a forked child would otherwise walk
    # those objects and copy every page it touches (a child that collects: 76 ms -> 13 ms from fork to exit).
    gc.collect()
    gc.freeze()
    for line in iter(link.readline, b""):
        request = json.loads(line)
        op = request.get("op")
        if op == "stop":
            break
        if op == "broker_reply":
            continue  # the phase it answered has ended
        try:
            if op in ("work", "end"):
                reply = host.work(request) if op == "work" else host.end(request)
            elif request.get("phase") == "worker":
                reply = host.start(request)
            else:
                reply = _serve(request, static, link, host.pids())
        except Exception:  # noqa: BLE001 - e.g. fork refused: this request fails, the server lives
            traceback.print_exc()
            reply = {"exit": EXIT_SETUP, "signal": None, "timed_out": False, "seconds": 0.0,
                     "strays": 0, "violations": [], "log": ""}
        replies.write(json.dumps(reply) + "\n")
    host.close()
    sweep()


if __name__ == "__main__":
    main()
