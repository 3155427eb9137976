"""shadow.duckdb: one file per workspace holding every shadow trial's events, decisions and outcomes.

Append-only by use: a trial's rows are written once, in one transaction with its ledger entry; outcomes arrive
in batches, each batch its own rows (a later batch may correct an event's outcome: the latest batch counts).
Decisions are stored as text (a score, a price or a team), with the latency of the call that made them and whether
they acted (only the champion's do).

DuckDB lets one process write a file at a time, and `ratchet serve` writes its shadowed decisions here from its own
process: a connection that finds the file locked waits, retrying for up to `wait_s` seconds, then says the store
is busy in one line.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd

from optimizer.base.errors import RatchetError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial VARCHAR PRIMARY KEY, started_at VARCHAR NOT NULL, champion_commit VARCHAR NOT NULL,
    challenger_commit VARCHAR NOT NULL, challenger_ref VARCHAR NOT NULL, events_sha256 VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    trial VARCHAR NOT NULL, event_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    trial VARCHAR NOT NULL, event_id VARCHAR NOT NULL, ts TIMESTAMP, policy VARCHAR NOT NULL,
    decision VARCHAR NOT NULL, latency_ms DOUBLE, acted BOOLEAN NOT NULL, source VARCHAR NOT NULL
);
-- latency_ms is NULL for an event decided only in a batch (not timed alone); stores made before that allowed none
ALTER TABLE decisions ALTER COLUMN latency_ms DROP NOT NULL;
CREATE TABLE IF NOT EXISTS quarantine (
    trial VARCHAR NOT NULL, row_number BIGINT NOT NULL, event_id VARCHAR, reason VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    trial VARCHAR NOT NULL, batch INTEGER NOT NULL, event_id VARCHAR NOT NULL, label VARCHAR,
    known_at TIMESTAMP NOT NULL, reviewed BOOLEAN NOT NULL, extra VARCHAR NOT NULL
);
"""
POLICIES = ("champion", "challenger")
WAIT_S = 5.0  # how long a command waits for a running server's write to end before saying the store is busy


@dataclass(frozen=True)
class Trial:
    trial: str
    started_at: str
    champion_commit: str
    challenger_commit: str
    challenger_ref: str
    events_sha256: str


class ShadowStore:
    """The workspace's shadow.duckdb (created on first write)."""

    def __init__(self, path: Path, *, wait_s: float | None = None) -> None:
        self.path = Path(path)
        self.wait_s = WAIT_S if wait_s is None else wait_s
        self._con: duckdb.DuckDBPyConnection | None = None  # the open transaction of `writing()`, if any

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is not None:  # inside `writing()`: every write joins its transaction
            yield self._con
            return
        con = self._open()
        try:
            con.execute(_SCHEMA)
            yield con
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A connection, waiting while another process (a running `ratchet serve`) holds the file's lock."""
        deadline, pause = time.monotonic() + self.wait_s, 0.05
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise RatchetError(f"{self.path}: cannot be opened ({_first_line(exc)}).") from None
                if time.monotonic() >= deadline:
                    raise RatchetError(f"{self.path} is busy (held by another ratchet process, e.g. `ratchet serve`); "
                                       "retry") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction for every write inside the block: committed when the block ends, rolled back if it
        raises (so a trial or an outcomes batch is in the store with its ledger entry, or not at all)."""
        with self._session(commit=True) as con:
            yield con

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection and one snapshot for every read inside the block (a verification reads each table once,
        as of one moment, without opening the file per query)."""
        with self._session(commit=False) as con:
            yield con

    @contextmanager
    def _session(self, *, commit: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            self._con = con
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            else:
                con.execute("COMMIT" if commit else "ROLLBACK")
            finally:
                self._con = None

    # --- writes -------------------------------------------------------------------------------
    def add_trial(self, trial: Trial, events: pd.DataFrame) -> None:
        """The trial and its valid events (`event_id`, `ts`), in decision order."""
        rows = pd.DataFrame({"trial": trial.trial, "event_id": events["event_id"].astype(str).to_numpy(),
                             "ts": pd.to_datetime(events["ts"]).to_numpy(), "seq": np.arange(len(events))})
        with self._connect() as con:
            con.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?)",
                        [trial.trial, trial.started_at, trial.champion_commit, trial.challenger_commit,
                         trial.challenger_ref, trial.events_sha256])
            con.register("new_events", rows)
            con.execute("INSERT INTO events SELECT trial, event_id, ts, seq FROM new_events")

    def log_decisions(self, trial: str, event_ids: Sequence, ts: Sequence | None, policy: str, values: np.ndarray,
                      latency_ms: float | np.ndarray, *, acted: bool, source: str = "trial") -> None:
        """One row per decision; `latency_ms` per event, or one figure for the whole call (shared by its rows)."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        n = len(event_ids)
        frame = pd.DataFrame({
            "trial": trial, "event_id": [str(i) for i in event_ids],
            "ts": pd.to_datetime(pd.Series(ts)) if ts is not None else pd.Series([pd.NaT] * n, dtype="datetime64[ns]"),
            "policy": policy, "decision": [str(v) for v in np.asarray(values).tolist()],
            "latency_ms": np.broadcast_to(np.asarray(latency_ms, dtype=float), (n,)), "acted": acted,
            "source": source})
        with self._connect() as con:
            con.register("new_decisions", frame)
            con.execute("INSERT INTO decisions SELECT trial, event_id, ts, policy, decision, latency_ms, acted, source "
                        "FROM new_decisions")

    def quarantine(self, trial: str, rows: pd.DataFrame) -> None:
        """Rows refused before any policy saw them: `row_number` (in the file), `event_id` (may be null), `reason`."""
        if rows.empty:
            return
        frame = rows.assign(trial=trial)[["trial", "row_number", "event_id", "reason"]]
        with self._connect() as con:
            con.register("new_quarantine", frame)
            con.execute("INSERT INTO quarantine SELECT * FROM new_quarantine")

    def add_outcomes(self, trial: str, batch: int, outcomes: pd.DataFrame) -> None:
        """Batch `batch` of outcomes (`event_id`, `label`, `known_at`, `reviewed`, `extra`: the outcome-only columns
        as JSON). Labels are kept as text (a fraud flag, a team's name); the report reads them back in the dev
        split's type."""
        if outcomes.empty:
            return
        frame = outcomes.assign(trial=trial, batch=batch)[["trial", "batch", "event_id", "label", "known_at",
                                                           "reviewed", "extra"]]
        with self._connect() as con:
            con.register("new_outcomes", frame)
            con.execute("INSERT INTO outcomes SELECT * FROM new_outcomes")

    def latest_outcomes(self, trial: str) -> pd.DataFrame:
        """Each event's outcome as it stands: the row of its latest batch."""
        return self.query("SELECT event_id, label, known_at, reviewed, extra FROM outcomes WHERE trial = ? "
                          "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY batch DESC) = 1", [trial])

    def forget(self, trial: str) -> None:
        """Remove every row of a trial the ledger never recorded (a start that was cut short)."""
        if not self.path.exists():
            return
        with self._connect() as con:
            for table in ("trials", "events", "decisions", "quarantine", "outcomes"):
                con.execute(f"DELETE FROM {table} WHERE trial = ?", [trial])

    # --- reads --------------------------------------------------------------------------------
    def trials(self) -> list[Trial]:
        if not self.path.exists():
            return []
        with self._connect() as con:
            rows = con.execute("SELECT * FROM trials ORDER BY trial").fetchall()
        return [Trial(*r) for r in rows]

    def query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(sql, list(params)).df()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
