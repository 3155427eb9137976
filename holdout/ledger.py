"""Append-only, hash-chained ledger in DuckDB: every seal, experiment and holdout answer.

Each entry's hash covers its seq, time, kind, payload and the previous entry's hash, so editing
or removing any entry breaks the chain from there on. Only the coordinator process appends; an
exclusive lock file stops two writers from forking the chain.

Opening a DuckDB database costs about 25 ms, attaching a file to one already open about 2 ms: the file is attached
to one in-memory DuckDB kept by the process and detached at once (no lock on it outlives a call). A Ledger also
keeps the entries it last read or wrote and reads the file again only when the file no longer looks as it did
then (inode, size, times, DuckDB's header blocks, which every checkpoint rewrites, and the write-ahead log): any
other writer's change, a tamper included, is read afresh.
"""
from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import duckdb

from domains.errors import RatchetError
from holdout.hashing import canonical_json, sha256_bytes

GENESIS = "0" * 64
T = TypeVar("T")
_HEADER_BYTES = 3 * 4096  # DuckDB's file header and its two alternating database headers


class Kind(StrEnum):
    """What a ledger entry records (stored as its text; a StrEnum compares equal to it)."""

    SEAL = "seal"  # init: the holdout sealed, the splits, config and contract bound
    RESEAL = "reseal"  # a fresh holdout; the gate's budget starts again
    BASELINE = "baseline"  # the starting policy evaluated: the first champion
    CHAMPION_REFRESH = "champion_refresh"  # after a reseal, the champion's decisions on the new holdout
    EXPERIMENT = "experiment"  # one experiment's immutable record
    GATE = "gate"  # one holdout answer, with its draws
    KEEP_INTENT = "keep_intent"  # a keep begun (completed or rolled back after a stop)
    CONFIG = "config"  # an approved change of ratchet.yaml
    AGENT_USAGE = "agent_usage"  # the meta-agent's tokens and spend for one proposal
    TASK_AGENT_USAGE = "task_agent_usage"  # a task-agent policy's model use in one sandbox phase
    CONTAMINATION_ALARM = "contamination_alarm"  # a canary or holdout ids in an outgoing prompt, blocked
    SHADOW_TRIAL = "shadow_trial"  # a shadow trial started: champion, challenger, events and their hashes
    SHADOW_OUTCOMES = "shadow_outcomes"  # a batch of outcomes joined to a trial
    SHADOW_RESULT = "shadow_result"  # a trial's report: passed, failed or pending, with its figures
    MODEL = "model"  # a kept policy logged as an MLflow model and registered (name, version)
    PROMOTION = "promotion"  # the registry's champion alias moved to a policy with a passed trial, by a named approver
    ROLLBACK = "rollback"  # the champion alias moved back to the previous version, by a named approver
    UPGRADE = "upgrade"  # the installed scorer put in force after a replay of the kept policies, by a named approver

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_db.ledger (
    seq BIGINT PRIMARY KEY,
    time VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    kind: str
    payload: str  # canonical JSON
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload)
        return data


_host_lock = threading.Lock()
_host: tuple[int, duckdb.DuckDBPyConnection] | None = None  # (pid, connection): a forked child opens its own


@contextmanager
def _attached(path: Path, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection on which `path` is the database `ledger_db`, for the length of the block."""
    global _host
    with _host_lock:
        if _host is None or _host[0] != os.getpid():
            _host = (os.getpid(), duckdb.connect(":memory:"))
        con = _host[1]
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS ledger_db" + (" (READ_ONLY)" if read_only else ""))
        try:
            yield con
        finally:
            con.execute("DETACH ledger_db")


def per_entry(fn: Callable[[Entry], T]) -> Callable[[Entry], T]:
    """`fn(entry)` computed once per entry, known by its hash (which names its content): every experiment reads the
    whole ledger, and parsing each payload again made an experiment's cost grow with the ledger."""
    cache: dict[str, T] = {}

    @functools.wraps(fn)
    def cached(entry: Entry) -> T:
        if entry.hash not in cache:
            cache[entry.hash] = fn(entry)
        return cache[entry.hash]

    return cached


def entry_hash(seq: int, time: str, kind: str, payload: str, prev_hash: str) -> str:
    return sha256_bytes(f"{seq}|{time}|{kind}|{payload}|{prev_hash}".encode())


# (inode, size, mtime ns, ctime ns, the header blocks, the WAL's size, mtime ns and ctime ns or None)
_Signature = tuple[int, int, int, int, bytes, tuple[int, int, int] | None]


class Ledger:
    """The workspace's ledger file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._known: tuple[_Signature, tuple[Entry, ...]] | None = None  # (signature, entries) last read or written

    def _signature(self) -> _Signature:
        """What changes whenever the file's content may have: stat figures, the header blocks and the WAL's."""
        with open(self.path, "rb") as fh:
            info = os.fstat(fh.fileno())
            head = fh.read(_HEADER_BYTES)
        try:
            wal = os.stat(f"{self.path}.wal")
            wal_sig = (wal.st_size, wal.st_mtime_ns, wal.st_ctime_ns)
        except FileNotFoundError:
            wal_sig = None
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, head, wal_sig

    @contextmanager
    def _locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        lock = self.path.with_suffix(".lock")
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RatchetError(
                    f"{self.path}: another process is writing this ledger; only one coordinator may run "
                    "per workspace. Wait for it to finish."
                ) from None
            try:
                with _attached(self.path, read_only=False) as con:
                    con.execute(_SCHEMA)
                    yield con
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def append(self, kind: str, payload: dict[str, Any]) -> Entry:
        body, kind = canonical_json(payload), str(Kind(kind))  # an unknown kind is refused
        known = self._known
        with self._locked() as con:
            before = self._signature()  # under the lock: no other writer between this and the insert
            fresh = known is not None and known[0] == before  # the entries known are the file's
            last: tuple[Any, ...] | None
            if fresh and known is not None and known[1]:
                last = (known[1][-1].seq, known[1][-1].hash)
            else:
                last = con.execute("SELECT seq, hash FROM ledger_db.ledger ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            digest = entry_hash(seq, now, kind, body, prev)
            con.execute("INSERT INTO ledger_db.ledger VALUES (?, ?, ?, ?, ?, ?)", [seq, now, kind, body, prev, digest])
        entry = Entry(seq, now, kind, body, prev, digest)
        # The entries known before stay valid only if the file was as they were read: the new one follows them.
        self._known = (self._signature(), (*known[1], entry)) if fresh and known is not None else None
        return entry

    def entries(self, kind: str | None = None) -> list[Entry]:
        if not self.path.exists():
            raise RatchetError(f"{self.path}: ledger not found. Is this a ratchet workspace (ratchet init)?")
        signature = self._signature()
        if self._known is None or self._known[0] != signature:
            with _attached(self.path, read_only=True) as con:
                rows = con.execute("SELECT seq, time, kind, payload, prev_hash, hash FROM ledger_db.ledger "
                                   "ORDER BY seq").fetchall()
            self._known = (signature, tuple(Entry(*r) for r in rows))
        return [e for e in self._known[1] if kind is None or e.kind == kind]

    def last(self, kind: str) -> Entry | None:
        found = self.entries(kind)
        return found[-1] if found else None


def verify_chain(entries: list[Entry]) -> list[str]:
    """Every break in the chain, named by entry; empty when intact."""
    problems: list[str] = []
    prev = GENESIS
    for expected_seq, e in enumerate(entries, start=1):
        if e.seq != expected_seq:
            problems.append(f"ledger entry seq {expected_seq} is missing (found seq {e.seq} in its place)")
            break
        if e.prev_hash != prev:
            problems.append(f"ledger entry {e.seq} ({e.kind}): prev_hash does not match entry {e.seq - 1}'s hash")
        recomputed = entry_hash(e.seq, e.time, e.kind, e.payload, e.prev_hash)
        if recomputed != e.hash:
            problems.append(f"ledger entry {e.seq} ({e.kind}): stored hash {e.hash[:12]} != recomputed {recomputed[:12]}")
        prev = e.hash
    if entries and entries[0].kind != "seal":
        problems.append(f"ledger entry 1 is '{entries[0].kind}', expected the seal")
    return problems
