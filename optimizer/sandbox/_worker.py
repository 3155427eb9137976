"""The parent's handle on a persistent decide worker (see _host): one fitted policy, decided many times.

A fresh child per decide costs a fork, containment, loading the policy and unpickling the model, tens of
milliseconds before the policy runs. A worker pays that once: it is contained exactly like a decide child
and stays, and each `decide` is a pickled row file in its workdir (pickle flows into the sandbox only), one request line, one line of facts back and
a `.npy` read with allow_pickle=False. Results are DecideResults, built by the same rules as decide's.

    with Sandbox() as box:
        fitted = box.fit(source, train, budget_s=300)
        with box.worker(source, fitted.model, budget_s=60) as worker:
            result = worker.decide(rows, budget_s=5, constants=("THRESHOLD",))

A worker ends on an overrun, a denied access, a crash of its process or a lost server; `alive` says so
and later decides answer "crash" without running. Start another to go on. Workers have no model broker,
and are meant for live rows: a worker that saw holdout rows could remember them for the next request.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from optimizer.sandbox import _outcome
from optimizer.sandbox import _protocol as P
from optimizer.sandbox._results import DecideResult, SandboxStatus

if TYPE_CHECKING:
    from optimizer.sandbox._sandbox import Sandbox

ROWS = "rows"  # the one row-set name of a worker's decide


class Worker:
    """A live decide process for one policy and model; use as a context manager or call close()."""

    def __init__(self, sandbox: "Sandbox", worker_id: int, workdir: Path, generation: int, device: str) -> None:
        self._sandbox, self._id, self._work, self._generation = sandbox, worker_id, workdir, generation
        self.device = device
        self._ended = ""  # why it ended; "" while it lives

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return not self._ended and self._generation == self._sandbox._connection.generation

    def decide(self, rows: pd.DataFrame, *, budget_s: float, constants: tuple[str, ...] = (),
               history: pd.DataFrame | None = None) -> DecideResult:
        """decide(model, rows[, history]) in the worker; the decisions come back under the row-set name "rows".
        `history`: the earlier events the rows may read (domains.history)."""
        started = time.perf_counter()
        box = self._sandbox
        if budget_s <= 0:
            raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
        with box._lock:
            if not self.alive:
                return _failed(SandboxStatus.CRASH, f"the decide worker has ended ({self._ended or 'the sandbox restarted'}); "
                                        "start a new one", started)
            try:
                box._write_rows(rows if history is None else (rows, history), self._work / P.WORKER_ROWS)
                reply, lost = box._run({"op": "work", "worker": self._id, "budget_s": float(budget_s),
                                        "constants": list(constants), "phase": "decide",
                                        "history": history is not None}, budget_s)
                facts = (reply or {}).get("facts") or {}
                if reply is None or "ended" in reply:
                    self._ended = lost or _ended_why(reply or {})
                status, error = _outcome.decide_status(reply, facts, lost, budget_s, box.memory_mb, [ROWS])
                decisions: dict[str, np.ndarray] = {}
                if status is SandboxStatus.OK:
                    decisions, problem, loaded = _outcome.load_decisions(self._work, [ROWS], {ROWS: rows})
                    if problem:
                        status, error, decisions = loaded, problem, {}
            finally:
                for name in (P.WORKER_ROWS, P.out_file(0)):
                    (self._work / name).unlink(missing_ok=True)
        return DecideResult(
            status=status, seconds=time.perf_counter() - started, error=error,
            violations=tuple(reply["violations"]) if reply else (), log="", decisions=decisions,
            constants=_outcome.constants(facts, constants) if status is SandboxStatus.OK else {},
            decide_seconds=_outcome.seconds(facts.get("decide_seconds")), device=self.device)

    def close(self) -> None:
        """End the worker process (idempotent); its workdir goes with it."""
        box = self._sandbox
        with box._lock:
            if self.alive:
                box._connection.exchange({"op": "end", "worker": self._id}, 10.0)
            self._ended = self._ended or "closed"
            box._remove(self._work)


def _ended_why(reply: dict) -> str:
    if reply.get("violations"):
        return "a denied access"
    if reply.get("timed_out"):
        return "it overran its budget"
    return str(reply.get("ended") or "its process ended")[:200]


def _failed(status: SandboxStatus, error: str, started: float) -> DecideResult:
    return DecideResult(status=status, seconds=time.perf_counter() - started, error=error, violations=(), log="",
                        decisions={}, constants={}, decide_seconds=0.0)
