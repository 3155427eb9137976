"""A running shadow trial's challenger in `ratchet serve`, off the request path.

The acting policy's answer must not wait on the challenger: a slow challenger (160 ms per call) shared the acting
policy's sandbox, whose lock a worker's decide holds for the whole call, and raised the acting policy's p50 from
about 20 ms to 200 ms. So the challenger is fitted in a sandbox of its own (its own fork server, worker and lock), and
a request only hands its rows, the champion's answer and the history the challenger reads with them (read at request
time, under the history lock, so the challenger decides as it would have then) to a bounded queue. One thread
decides them with the challenger and logs both policies' decisions to shadow.duckdb (only the champion's acted),
several requests per write. When the queue is full, or at stop after a bounded wait, a request's shadow work is
dropped and counted (`shadow_dropped` in /health): the trial then lacks those events; the answers never waited.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

log = logging.getLogger("uvicorn.error")

CAPACITY = 1_000  # requests waiting for the challenger; beyond it a request's shadow work is dropped
WRITE_REQUESTS = 64  # requests gathered into one shadow.duckdb write (a connection and transaction per write)
STOP_WAIT_S = 10.0  # at stop, how long the queue may take to drain before the rest is dropped
_STOP = object()


@dataclass(frozen=True)
class Shadowed:
    """One answered request's work for the challenger: the rows, their ids and times, the champion's decisions and
    the latency of its call, and the history the challenger reads with the rows (None: it reads none)."""

    ids: list
    ts: Any  # the rows' times (an array), or None when the rows carry none
    frame: pd.DataFrame
    champion: np.ndarray
    champion_ms: float
    history: pd.DataFrame | None


@dataclass(frozen=True)
class _Logged:
    work: Shadowed
    challenger: np.ndarray | None  # None: the challenger failed on these rows
    challenger_ms: float


class ShadowLane:
    """The challenger's queue and thread. `decide(frame, history) -> (decisions, ms)` runs the challenger (raising
    on failure, with a one-line message); `store` is the trial's ShadowStore."""

    def __init__(self, trial: str, decide: Callable[[pd.DataFrame, pd.DataFrame | None], tuple[np.ndarray, float]],
                 store: Any, *, capacity: int = CAPACITY) -> None:
        self.trial, self._decide, self._store, self.capacity = trial, decide, store, capacity
        self.counts = {"logged_rows": 0, "challenger_failures": 0, "log_failures": 0, "shadow_dropped": 0}
        self._queue: queue.Queue = queue.Queue()
        self._open = True
        self._deadline = float("inf")  # set at stop: work still queued after it is dropped
        self._thread = threading.Thread(target=self._run, name=f"shadow {trial}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, work: Shadowed) -> bool:
        """Queue a request's shadow work without waiting; False (and counted as dropped) when full or stopping."""
        if not self._open or self._queue.qsize() >= self.capacity:
            self.counts["shadow_dropped"] += 1
            return False
        self._queue.put_nowait(work)
        return True

    def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """Take no more work, let the thread decide and log what is queued for up to `wait_s`, drop (and count) the
        rest; True when the thread ended in time (a decide still running ends when its sandbox closes)."""
        self._open = False
        self._deadline = time.monotonic() + wait_s
        self._queue.put(_STOP)
        self._thread.join(timeout=wait_s + 1.0)
        return not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        """Decide and log queued work, several requests per write, until stopped."""
        stopping = False
        while not stopping:
            batch, stopping = self._take()
            logged, late = [], 0
            for work in batch:
                if time.monotonic() > self._deadline:
                    late += 1  # the stop's wait is over: neither policy's decisions of this request are logged
                else:
                    logged.append(self._challenge(work))
            self._dropped_at_stop(late)
            if logged:
                self._write(logged)

    def _take(self) -> tuple[list[Shadowed], bool]:
        """The next request's work (waiting for it) and whatever else is queued, up to WRITE_REQUESTS; and whether
        the stop mark came with them."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < WRITE_REQUESTS:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is _STOP:
                return batch, True
            batch.append(work)
        return batch, False

    def _dropped_at_stop(self, n: int) -> None:
        if n:
            self.counts["shadow_dropped"] += n
            log.warning("ratchet serve: trial %s: the shadow work of %d requests dropped at stop (the challenger had "
                        "not decided them in time)", self.trial, n)

    def _challenge(self, work: Shadowed) -> _Logged:
        """The challenger decides the request's rows with the history read when the request was answered."""
        try:
            values, ms = self._decide(work.frame, work.history)
        except Exception as exc:  # noqa: BLE001 - a failing challenger must not stop the champion's logging
            self.counts["challenger_failures"] += 1
            log.warning("ratchet serve: trial %s challenger: %s", self.trial, getattr(exc, "message", exc))
            return _Logged(work, None, 0.0)
        return _Logged(work, np.asarray(values), ms)

    def _write(self, logged: list[_Logged]) -> None:
        """Both policies' decisions of the gathered requests, one write per policy (only the champion's acted)."""
        champion = [item.work for item in logged]
        challenger = [item for item in logged if item.challenger is not None]
        try:
            ids, ts, values, latency = _rows(champion, [w.champion for w in champion],
                                             [w.champion_ms for w in champion])
            self._store.log_decisions(self.trial, ids, ts, "champion", values, latency, acted=True, source="serve")
            if challenger:
                answers = [i.challenger for i in challenger if i.challenger is not None]  # all: filtered above
                ids, ts, values, latency = _rows([i.work for i in challenger], answers,
                                                 [i.challenger_ms for i in challenger])
                self._store.log_decisions(self.trial, ids, ts, "challenger", values, latency, acted=False,
                                          source="serve")
            self.counts["logged_rows"] += sum(len(w.ids) for w in champion)
        except Exception as exc:  # noqa: BLE001 - a busy or broken shadow.duckdb must not take the server down
            self.counts["log_failures"] += 1
            log.warning("ratchet serve: trial %s: shadow.duckdb not written: %s", self.trial,
                        str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__)


def _rows(works: list[Shadowed], values: list[np.ndarray], ms: list[float]) -> tuple[list, pd.Series, np.ndarray,
                                                                                np.ndarray]:
    """(event ids, times, decisions, per-row latency) of several requests, in order; a request's latency is its
    call's, shared by its rows."""
    ids = [i for w in works for i in w.ids]
    ts = pd.concat([pd.Series(w.ts) if w.ts is not None else pd.Series([pd.NaT] * len(w.ids), dtype="datetime64[ns]")
                    for w in works], ignore_index=True)
    latency = np.concatenate([np.full(len(w.ids), m, dtype=float) for w, m in zip(works, ms)])
    return ids, ts, np.concatenate([np.asarray(v) for v in values]), latency
