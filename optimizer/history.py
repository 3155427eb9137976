"""history.duckdb: the workspace's event history, what a policy's `history` argument is read from in production.

It starts with train's and dev's decision-time events (written at init, or on first use by a workspace sealed
before history existed); holdout events are never in it (they stay on the sealed side). Then every event that
`ratchet serve` decides or a shadow trial replays is appended, in the order decided, in one transaction per
call: an event acknowledged to a client is on disk before its answer leaves. No labels are stored: decisions
read only decision-time columns. An event whose id is already held is not appended again (a client's retry).

The loop reads the same train and dev events from its verified splits (optimizer.stages.evaluate.Inputs.past),
so it never waits on a running server; a server holds this file for its life (DuckDB lets one process write).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from domains.history import History, declared
from optimizer.errors import RatchetError

FILE = "history.duckdb"


@dataclass(frozen=True)
class Layout:
    """What the store holds and how a window is read: the dev split's decision-time columns and dtypes, the time
    and id columns and the history keys."""

    columns: tuple[str, ...]
    dtypes: tuple[str, ...]
    time: str
    id: str
    keys: tuple[str, ...]

    @classmethod
    def of(cls, domain: Any, dev: pd.DataFrame) -> "Layout":
        view = domain.policy_view(dev.head(0), with_label=False)
        cols = domain.columns
        return cls(tuple(view.columns), tuple(str(view[c].dtype) for c in view.columns), cols.time, cols.id,
                   tuple(cols.history_keys))



class EventStore:
    """One workspace's history.duckdb, open for writing while the object lives (close() or a with block)."""

    def __init__(self, ctx: Any) -> None:
        self._open(ctx.ws.root / FILE, Layout.of(ctx.domain, ctx.dev), lambda: _first_events(ctx.domain, ctx.train,
                                                                                             ctx.dev))

    @classmethod
    def create(cls, root: Path, domain: Any, train: pd.DataFrame, dev: pd.DataFrame) -> None:
        """Write a new workspace's history (train's then dev's events) at init."""
        store = cls.__new__(cls)
        store._open(Path(root) / FILE, Layout.of(domain, dev), lambda: _first_events(domain, train, dev))
        store.close()

    def _open(self, path: Path, layout: Layout, first: Any) -> None:
        self.path, self.layout = path, layout
        self.time, self.id, self.keys = layout.time, layout.id, layout.keys
        self.columns = list(layout.columns)
        self.dtypes = pd.Series(dict(zip(layout.columns, (pd.api.types.pandas_dtype(d) for d in layout.dtypes))),
                                dtype=object)
        fresh = not self.path.exists()
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            raise RatchetError(f"{self.path}: cannot open the workspace's event history ({_first_line(exc)}); "
                               "another process holds it (a running `ratchet serve` or a served registered model): "
                               "stop it, or let a running server shadow the challenger live") from exc
        if fresh or not self._has_table():
            self._write(first(), create=True)
        self._ids: set[str] | None = None

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _has_table(self) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'")
                    .fetchone()[0])

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
        frame = self.con.execute("SELECT * FROM events").df()  # insertion order: DuckDB keeps it for a plain scan
        return frame.astype({c: t for c, t in self.dtypes.items() if frame[c].dtype != t})

    def history(self) -> History:
        """The held events as the index a call's history is read from."""
        return History.of(self.events(), time=self.time, keys=self.keys)

    def held(self, ids: pd.Series) -> pd.Series:
        """Per id, whether an event with it is already held."""
        if self._ids is None:
            self._ids = set(self.con.execute(f'SELECT "{self.id}" FROM events').df()[self.id].astype(str))
        known = self._ids
        return pd.Series([i in known for i in ids.astype(str)], index=ids.index, dtype=bool)

    def append(self, events: pd.DataFrame) -> pd.DataFrame:
        """Append the events not held yet (one transaction, durable when it returns); returns them."""
        new = events[~self.held(events[self.id]).to_numpy()]
        if len(new):
            self._write(new)
            assert self._ids is not None
            self._ids.update(new[self.id].astype(str))
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
        days, takes = declared(source)
        if not takes or days <= 0:
            return None
        found = self.past.window(rows, days)
        key = self.store.id
        return found[~found[key].isin(rows[key])].reset_index(drop=True) if len(found) else found

    def record(self, rows: pd.DataFrame) -> None:
        """Append the rows not held yet, durably, and to the index."""
        self.past.extend(self.store.append(rows))

    def close(self) -> None:
        self.store.close()


def sealed_events(ctx: Any, store: EventStore) -> pd.DataFrame:
    """The holdout's events (canaries left out) as history holds them: they precede every live event, and a policy
    deciding one reads them as `ratchet serve` would have, had it served them; they stay out of history.duckdb."""
    return ctx.domain.policy_view(ctx.holdout, with_label=False)[store.columns]


def _first_events(domain: Any, train: pd.DataFrame, dev: pd.DataFrame) -> pd.DataFrame:
    view = domain.policy_view(dev, with_label=False)
    return pd.concat([domain.policy_view(train, with_label=False)[list(view.columns)], view], ignore_index=True)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
