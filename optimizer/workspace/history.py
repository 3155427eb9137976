"""history.duckdb: the workspace's event history, what a policy's `history` argument is read from in production.

It starts with train's and dev's decision-time events (written at init, or on first use by a workspace sealed
before history existed); holdout events are never in it (they stay on the sealed side). Then every event that
`ratchet serve` decides or a shadow trial replays is appended, in the order decided, in one transaction per
call: an event acknowledged to a client is on disk before its answer leaves. No labels are stored: decisions
read only decision-time columns. An event whose id is already held is not appended again (a client's retry).

A call's events reach the disk as one line in history.log (a write to an append-only file: no process kill loses
it once the write returned) and move into DuckDB in batches of FLUSH_ROWS, and at close; opening the store first
moves whatever the log still holds (after a kill) into DuckDB. A DuckDB commit per request would cost about 4 ms.

The loop reads the same train and dev events from its verified splits (optimizer.loop.stages.evaluate.Inputs.past),
so it never waits on a running server; a server holds this file for its life (DuckDB lets one process write).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from domains.history import History, columns_of, lookback
from optimizer.base.errors import RatchetError

FILE = "history.duckdb"
LOG = "history.log"
FLUSH_ROWS = 2_000  # events gathered in the log before one DuckDB transaction takes them


class EventStore:
    """One workspace's history.duckdb, open for writing while the object lives (close() or a with block)."""

    def __init__(self, ctx: Any) -> None:
        self._open(ctx.ws.root / FILE, ctx.domain, ctx.train, ctx.dev)

    @classmethod
    def create(cls, root: Path, domain: Any, train: pd.DataFrame, dev: pd.DataFrame) -> None:
        """Write a new workspace's history (train's then dev's events) at init."""
        store = cls.__new__(cls)
        store._open(Path(root) / FILE, domain, train, dev)
        store.close()

    def _open(self, path: Path, domain: Any, train: pd.DataFrame, dev: pd.DataFrame) -> None:
        """Open (or create from train's then dev's events) the store; its columns and dtypes are the dev split's
        decision-time view."""
        self.path = path
        cols = domain.columns
        self.time, self.id, self.keys = cols.time, cols.id, cols.history_keys
        view = domain.policy_view(dev, with_label=False)
        self.columns, self.dtypes = list(view.columns), view.dtypes
        fresh = not self.path.exists()
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            raise RatchetError(f"{self.path}: cannot open the workspace's event history ({_first_line(exc)}); "
                               "another process holds it (a running `ratchet serve` or a served registered model): "
                               "stop it, or let a running server shadow the challenger live") from exc
        if fresh or not self._has_table():
            self._write(pd.concat([domain.policy_view(train, with_label=False)[self.columns], view],
                                  ignore_index=True), create=True)
        self._ids: set[str] | None = None
        self._log_path = self.path.with_name(LOG)
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self._log_fd = -1
        try:
            self._recover()
            self._log_fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._log_fd >= 0:
                os.close(self._log_fd)
                self._log_fd = -1
            self.con.close()

    def flush(self) -> None:
        """Move the logged events into DuckDB (one transaction), then empty the log."""
        if self._pending:
            self._write(pd.concat(self._pending, ignore_index=True))
            self._pending, self._pending_rows = [], 0
            os.ftruncate(self._log_fd, 0)

    def _recover(self) -> None:
        """Events a killed process logged but never moved into DuckDB (a torn last line was never acknowledged)."""
        if not self._log_path.exists() or self._log_path.stat().st_size == 0:
            return
        frames = []
        for line in self._log_path.read_bytes().splitlines():
            try:
                frames.append(self._typed(pd.DataFrame(json.loads(line))))
            except ValueError:
                continue
        if frames:
            events = pd.concat(frames, ignore_index=True)
            events = events[~self.held(events[self.id]).to_numpy()].drop_duplicates(self.id)
            if len(events):
                self._write(events)
                self._ids.update(events[self.id].astype(str))  # type: ignore[union-attr]
        self._log_path.write_bytes(b"")

    def _typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A logged line's events in the store's dtypes (times were written as ISO 8601 text)."""
        out = {}
        for col, dtype in self.dtypes.items():
            if pd.api.types.is_datetime64_any_dtype(dtype):
                tz = getattr(dtype, "tz", None)
                times = pd.to_datetime(frame[col], format="ISO8601", utc=tz is not None)
                out[col] = (times.dt.tz_convert(tz) if tz is not None else times).astype(dtype)
            else:
                out[col] = frame[col].astype(dtype)
        return pd.DataFrame(out)

    def _has_table(self) -> bool:
        row = self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'").fetchone()
        assert row is not None, "count(*) answers one row"
        return bool(row[0])

    def _write(self, frame: pd.DataFrame, *, create: bool = False) -> None:
        frame = frame[self.columns]
        categories = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        if categories:  # stored as text, so a later level appends; read back in the dev split's dtype
            frame = frame.astype({c: "string" for c in categories})
        self.con.execute("BEGIN TRANSACTION")
        try:
            if create:
                self.con.execute("CREATE TABLE events AS SELECT * FROM frame")
            else:
                self.con.execute("INSERT INTO events SELECT * FROM frame")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def events(self) -> pd.DataFrame:
        """Every held event, in the order appended, in the dev split's dtypes."""
        self.flush()
        frame = self.con.execute("SELECT * FROM events").df()  # insertion order: DuckDB keeps it for a plain scan
        return frame.astype({c: t for c, t in self.dtypes.items() if frame[c].dtype != t})

    def history(self) -> History:
        """The held events as the index a call's history is read from."""
        return History.of(self.events(), time=self.time, keys=self.keys)

    def held(self, ids: pd.Series) -> pd.Series:
        """Per id, whether an event with it is already held."""
        return pd.Series(self._held(ids.array), index=ids.index, dtype=bool)

    def _held(self, ids: Any) -> np.ndarray:
        if self._ids is None:
            self._ids = set(self.con.execute(f'SELECT "{self.id}" FROM events').df()[self.id].astype(str))
        known = self._ids
        return np.fromiter((i in known for i in _texts(ids)), dtype=bool, count=len(ids))

    def append(self, events: pd.DataFrame) -> pd.DataFrame:
        """Append the events not held yet (on disk when it returns: logged, then in DuckDB by the batch); returns
        them."""
        held = self._held(columns_of(events, [self.id])[self.id])
        new = events[~held] if held.any() else events
        if list(new.columns) != self.columns:
            new = new[self.columns]
        if len(new):
            line = new.to_json(orient="records", date_format="iso", date_unit="ns").encode() + b"\n"
            view = memoryview(line)
            while view:
                view = view[os.write(self._log_fd, view):]
            assert self._ids is not None
            self._ids.update(_texts(columns_of(new, [self.id])[self.id]))
            self._pending.append(new)
            self._pending_rows += len(new)
            if self._pending_rows >= FLUSH_ROWS:
                self.flush()
        return new


class LiveHistory:
    """What `ratchet serve` and a registered model share: the store open for writing, its in-memory index (with the
    holdout's events, read from the sealed split by this process and never written to the store), and the rule for
    a call: read the rows' history, decide, then append the rows (on disk before the answer leaves)."""

    def __init__(self, ctx: Any) -> None:
        self.store = store = EventStore(ctx)
        try:
            self.past = store.history()
            self.past.extend(sealed_events(ctx, store))
        except BaseException:
            store.close()
            raise
        self.lock = threading.Lock()  # hold it from read to record: each call reads every event answered before it

    def read(self, source: str, rows: pd.DataFrame) -> pd.DataFrame | None:
        """What a policy with `source` reads with `rows`: its entities' earlier events held now, less the rows' own
        (a retry); None when its decide takes no history."""
        days = lookback(source)
        if days <= 0:
            return None
        past, key = self.past, self.store.id
        found = past.positions(rows, days)
        if len(found):  # a retry's event is held: it does not read itself
            found = found[~_isin(past.column(key, found), columns_of(rows, [key])[key], past.dtypes[key])]
        return past.take(found) if len(found) else past.empty()

    def record(self, rows: pd.DataFrame) -> None:
        """Append the rows not held yet, durably, and to the index."""
        self.past.extend(self.store.append(rows))

    def close(self) -> None:
        self.store.close()


def sealed_events(ctx: Any, store: EventStore) -> pd.DataFrame:
    """The holdout's events (canaries left out) as history holds them: they precede every live event, and a policy
    deciding one reads them as `ratchet serve` would have, had it served them; they stay out of history.duckdb."""
    return ctx.domain.policy_view(ctx.holdout, with_label=False)[store.columns]


def _texts(ids: Any) -> list[str]:
    """The ids (an array) as the held set knows them, `Series.astype(str)`; plain integers' text directly."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        return [str(i) for i in ids.tolist()]
    return pd.Series(ids, copy=False).astype(str).tolist()


def _isin(held: Any, ids: Any, dtype: Any) -> np.ndarray:
    """`Series(held).isin(ids)` as a boolean array; numpy's own for integers on both sides (the same answer)."""
    if isinstance(held, np.ndarray) and isinstance(ids, np.ndarray) and held.dtype.kind in "iu" \
            and ids.dtype.kind in "iu":
        return np.isin(held, ids)
    return pd.Series(held, dtype=dtype, copy=False).isin(pd.Series(ids, copy=False)).to_numpy()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
