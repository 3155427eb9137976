"""Persistent decide workers, on the fork server's side: one contained child per fitted policy, kept alive.

A worker is forked and contained exactly like a decide child (every layer, output to /dev/null), loads
the policy and unpickles its model once, and then answers one decide per request: the server writes a
request line on the worker's input pipe and relays the one line of facts the worker answers. Each request
has its own budget; an overrun, an audit record or an answer the server cannot read ends the worker
(its whole process group, then any stray it left), and the parent starts a new one when it wants.
Nothing the worker writes is trusted here: lines are bounded, parsed as JSON and passed on as facts.
"""
from __future__ import annotations

import json
import os
import select
import time
from dataclasses import dataclass, field

from optimizer.sandbox import _child, _quota
from optimizer.sandbox._procs import Tail, empty, kill_group, records, sweep
from optimizer.sandbox._protocol import MAX_VIOLATIONS, WORKER_ROWS

MAX_ANSWER_BYTES = 64 * 1024  # one line of facts; a longer one ends the worker


@dataclass
class _Live:
    pid: int
    pidfd: int
    send: int  # server -> worker: requests
    answers: int  # worker -> server: one line of facts per request
    record: int  # the audit hook's records
    quota: _quota.Quota  # what it may add to its workdir over its whole life (see _quota)
    record_open: bool = True
    pending: bytearray = field(default_factory=bytearray)
    tail: Tail = field(default_factory=lambda: Tail(1 << 20))


class Host:
    """The server's live workers by id; every method returns the one reply line for the parent."""

    def __init__(self, static: dict) -> None:
        self.static = static
        self.live: dict[int, _Live] = {}
        self.count = 0

    def pids(self) -> set[int]:
        return {worker.pid for worker in self.live.values()}

    def start(self, request: dict) -> dict:
        """Fork and contain a worker in `request["workdir"]`; the reply says it is ready or why it ended."""
        record_r, record_w = os.pipe()
        answer_r, answer_w = os.pipe()
        send_r, send_w = os.pipe()
        quota = _quota.Quota((request["workdir"],), self.static["disk_bytes"], self.static["disk_files"])
        pid = os.fork()
        if pid == 0:
            for fd in (record_r, answer_r, send_w):
                os.close(fd)
            _child.run({**self.static, **request}, record_w, -1, (answer_w, send_r))
        for fd in (record_w, answer_w, send_r):
            os.close(fd)
        worker = _Live(pid, os.pidfd_open(pid), send_w, answer_r, record_r, quota)
        facts, reply = self._await(worker, float(request["budget_s"]))
        if reply is not None:
            return reply
        assert facts is not None, "_await gives facts when it gives no reply"
        if facts.get("status") != "ready":  # the policy or its model did not load: the worker said why, and exits
            select.select([worker.pidfd], [], [], 5.0)
            return self._finish(worker, timed_out=False, facts=facts)
        self.count += 1
        self.live[self.count] = worker
        return {"worker": self.count, "exit": 0, "signal": None, "timed_out": False, "violations": [],
                "facts": facts}

    def work(self, request: dict) -> dict:
        """Relay one decide request to a live worker and return its facts (or why it ended)."""
        worker = self.live.get(request.get("worker", 0))  # 0: no worker's id (they count from 1)
        if worker is None:
            return {"ended": "no such worker (it ended earlier)", "exit": None, "signal": None,
                    "timed_out": False, "violations": []}
        line = json.dumps({"constants": request.get("constants") or [],
                           "history": bool(request.get("history"))}).encode() + b"\n"
        worker.quota.allow([os.path.join(worker.quota.folders[0], WORKER_ROWS)])
        try:
            os.write(worker.send, line)  # a short line into an empty pipe: written whole
        except OSError:
            pass  # it died: the wait below reports how
        facts, reply = self._await(worker, float(request["budget_s"]))
        if reply is not None:
            del self.live[request["worker"]]
            return reply
        return {"exit": 0, "signal": None, "timed_out": False, "violations": [], "facts": facts}

    def end(self, request: dict) -> dict:
        worker = self.live.pop(request.get("worker", 0), None)  # 0: no worker's id (they count from 1)
        if worker is not None:
            self._finish(worker, timed_out=False)
        return {"ended": "closed"}

    def close(self) -> None:
        for key in list(self.live):
            self._finish(self.live.pop(key), timed_out=False)

    # --- waiting ---------------------------------------------------------------------------------------------
    def _await(self, worker: _Live, budget_s: float) -> tuple[dict | None, dict | None]:
        """(the worker's next line of facts, None) while it lives and is clean; else (None, the final reply)."""
        deadline = time.monotonic() + budget_s
        while True:
            cut = worker.pending.find(b"\n")
            if cut >= 0:
                line = bytes(worker.pending[:cut])
                del worker.pending[:cut + 1]
                facts = _facts(line)
                self._drain(worker)
                if facts is None:
                    return None, self._finish(worker, timed_out=False, why="an unreadable answer")
                if worker.tail.data:
                    return None, self._finish(worker, timed_out=False, facts=facts)
                overrun = worker.quota.over(worker.pid, now=True)  # a writer faster than a tick
                if overrun:
                    return None, {**self._finish(worker, timed_out=False, why="it wrote past its folder's quota"),
                                  "quota": overrun}
                return facts, None
            if len(worker.pending) > MAX_ANSWER_BYTES:
                return None, self._finish(worker, timed_out=False, why="an answer over the size limit")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, self._finish(worker, timed_out=True)
            overrun = worker.quota.over(worker.pid)
            if overrun:
                return None, {**self._finish(worker, timed_out=False, why="it wrote past its folder's quota"),
                              "quota": overrun}
            watched = [worker.answers, worker.pidfd] + ([worker.record] if worker.record_open else [])
            ready, _, _ = select.select(watched, [], [], worker.quota.wait_s(remaining))
            if worker.record in ready:
                self._drain(worker)
                if worker.tail.data:  # a denied access: the worker ends now, whatever it was doing
                    return None, self._finish(worker, timed_out=False)
            if worker.answers in ready:
                chunk = os.read(worker.answers, 1 << 16)
                if chunk:
                    worker.pending += chunk
                    continue
                return None, self._finish(worker, timed_out=False)  # its answer pipe closed
            if worker.pidfd in ready:
                return None, self._finish(worker, timed_out=False)

    def _drain(self, worker: _Live) -> None:
        while worker.record_open and select.select([worker.record], [], [], 0)[0]:
            chunk = os.read(worker.record, 1 << 16)
            if not chunk:
                worker.record_open = False
                return
            worker.tail.add(chunk)

    def _finish(self, worker: _Live, *, timed_out: bool, facts: dict | None = None, why: str = "") -> dict:
        """Kill the worker's group, reap it, sweep its strays; the process facts for the parent."""
        kill_group(worker.pid)
        _, status = os.waitpid(worker.pid, 0)
        others = self.pids() - {worker.pid}
        strays = sweep(others)
        if self.static["private_shm"] and not others:
            empty("/dev/shm")
        self._drain(worker)  # every writer is dead: what is left is all there is
        for fd in (worker.pidfd, worker.send, worker.answers, worker.record):
            os.close(fd)
        return {"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "timed_out": timed_out, "strays": strays, "violations": records(worker.tail)[:MAX_VIOLATIONS],
                "facts": facts, "ended": why or "the worker ended"}


def _facts(line: bytes) -> dict | None:
    try:
        facts = json.loads(line)
    except ValueError:
        return None
    return facts if isinstance(facts, dict) else None
