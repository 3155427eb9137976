"""History: the earlier events a policy may read when it decides, the same wherever it decides.

A policy that declares `HISTORY_DAYS = N` and `def decide(model, rows, history)` gets, with each call, the earlier
events of the entities in `rows` (those sharing a value of one of the domain's history keys with a row, e.g. the
customer or the terminal) from the N days before the call's first event up to its last, oldest first, in
the columns `rows` has (no labels). A row of the call may also use the rows before it in the call: they are
earlier events too. So a decision for an event depends on the event and its entities' past only, never on what
else shares the call: a batch of dev rows, a shadow trial's batch and one event sent to `ratchet serve` get the
same decision (the `parity` guard checks it). A policy without the third argument gets no history.

`History` is the in-memory index the parent builds from the events it holds (train and dev offline, the
workspace's event store in production); it never runs policy code.
"""
from __future__ import annotations

import ast
import functools
import math
from typing import Sequence

import numpy as np
import pandas as pd

from domains import _source

CONSTANT = "HISTORY_DAYS"
MAX_DAYS = 366.0  # a longer lookback is refused: it would ship a year of events with every request


TAIL_ROWS = 256  # events kept unindexed (scanned) before they become a part of the index


class LookbackError(ValueError):
    """policy.py declares HISTORY_DAYS in a way the parent cannot read (the message says how to fix it)."""


@functools.lru_cache(maxsize=64)
def declared(source: str) -> tuple[float, bool]:
    """(HISTORY_DAYS, whether `decide` takes a third argument) read from the policy source without running it.

    No HISTORY_DAYS or a two-argument decide: no history. LookbackError when HISTORY_DAYS is not a literal number
    in [0, MAX_DAYS] assigned once at top level."""
    tree = _source.parse(source)  # shared with the static scan and every other reader: parsed once
    days: float | None = None
    takes = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "decide":
            args = node.args
            takes = len(args.posonlyargs) + len(args.args) >= 3 or args.vararg is not None
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == CONSTANT for t in targets):
            value = node.value  # type: ignore[union-attr]
            if days is not None:
                raise LookbackError(f"policy.py assigns {CONSTANT} more than once at top level; assign it once")
            try:
                number = ast.literal_eval(value)
            except ValueError:
                number = None
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
                    or not 0 <= number <= MAX_DAYS:
                raise LookbackError(f"policy.py: {CONSTANT} must be a literal number of days in [0, {MAX_DAYS:g}] "
                                    f"(the parent reads it without running the file); got {ast.unparse(value)!r}")
            days = float(number)
    return (days or 0.0), takes


def lookback(source: str) -> float:
    """Days of history the policy's decide reads: 0 when it declares none or takes no `history` argument."""
    days, takes = declared(source)
    return days if takes else 0.0


class History:
    """Events in stream order (the oldest first), each part of them indexed by history key.

    Built once from a frame (`of`), extended in place as events are decided (`extend`); `window` answers what a
    call may read. Positions are stream positions: `window(..., before=k)` sees only the first k events, which is
    how a batch or one event at position k is decided as if the store held nothing later. Per part and key the
    index is two arrays (the key's values sorted, and where each sits), so a million events cost 16 bytes each
    per key and a lookup is a binary search per part."""

    def __init__(self, columns: Sequence[str], dtypes: pd.Series, *, time: str, keys: Sequence[str]) -> None:
        self.columns = list(columns)
        self.dtypes = dtypes
        self.time = time
        self.keys = [k for k in keys if k in self.columns]
        self._parts: list[_Part] = []  # in stream order; merged like a binary counter
        self._tail: pd.DataFrame | None = None  # the newest events, fewer than TAIL_ROWS, searched by a scan
        self._size = 0

    @classmethod
    def of(cls, events: pd.DataFrame, *, time: str, keys: Sequence[str]) -> "History":
        history = cls(events.columns, events.dtypes, time=time, keys=keys)
        history.extend(events)
        return history

    def __len__(self) -> int:
        return self._size

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype=self.dtypes[c]) for c in self.columns})

    def extend(self, events: pd.DataFrame) -> None:
        """Append `events` (the same columns) after everything held."""
        if len(events) == 0:
            return
        frame = events[self.columns].reset_index(drop=True)
        changed = {c: t for c, t in self.dtypes.items() if frame[c].dtype != t}
        if changed:  # the index's own dtypes, so every window has the same columns whatever fed it
            frame = frame.astype(changed)
        self._size += len(frame)
        # Events a request at a time gather in the tail (one small concat each); a part is indexed once it is full.
        if self._tail is not None:
            frame = pd.concat([self._tail, frame], ignore_index=True)
        if len(frame) < TAIL_ROWS:
            self._tail = frame
            return
        self._tail = None
        self._parts.append(_Part(frame, self.time, self.keys, self._size - len(frame)))
        # Merge the newest part into the one before while that one is at most twice its size: few parts to search,
        # and each event copied a logarithmic number of times, never the whole store every few requests.
        while len(self._parts) > 1 and len(self._parts[-2].frame) <= 2 * len(self._parts[-1].frame):
            last, before = self._parts.pop(), self._parts.pop()
            merged = pd.concat([before.frame, last.frame], ignore_index=True)
            self._parts.append(_Part(merged, self.time, self.keys, before.start))

    def window(self, rows: pd.DataFrame, days: float, *, before: int | None = None) -> pd.DataFrame:
        """The events a call deciding `rows` may read: those of `rows`' entities, in the `days` before the first
        row's time up to the last row's, among the first `before` events (all when None), oldest first."""
        if days <= 0 or not self.keys or len(rows) == 0 or self._size == 0:
            return self.empty()
        values = {key: pd.unique(rows[key].dropna().to_numpy()) for key in self.keys if key in rows.columns}
        times = _ns(rows[self.time])
        lo, hi = int(times.min()) - int(days * 86_400e9), int(times.max())
        out = []
        for part in self._parts:
            if before is not None and part.start >= before:
                break
            mine = part.find(values)
            if before is not None:
                mine = mine[mine < before - part.start]
            mine = mine[(part.times[mine] >= lo) & (part.times[mine] <= hi)]
            if len(mine):
                out.append(part.frame.iloc[mine])
        tail = self._tail
        if tail is not None and (before is None or before > self._size - len(tail)):
            hit = np.zeros(len(tail), dtype=bool)
            for key, wanted in values.items():
                hit |= tail[key].isin(wanted).to_numpy()
            if before is not None:
                hit[max(before - (self._size - len(tail)), 0):] = False
            times = _ns(tail[self.time])
            hit &= (times >= lo) & (times <= hi)
            if hit.any():
                out.append(tail[hit])
        if not out:
            return self.empty()
        found = pd.concat(out, ignore_index=True) if len(out) > 1 else out[0].reset_index(drop=True)
        # Oldest first, ties in the order held: the holdout's events join the index after the store's.
        return found.sort_values(self.time, kind="stable", ignore_index=True)


class _Part:
    """One stretch of events and, per key, its values sorted with the rows they sit in."""

    def __init__(self, frame: pd.DataFrame, time: str, keys: Sequence[str], start: int) -> None:
        self.frame, self.start = frame, start
        self.times = _ns(frame[time])
        self.index = {}
        for key in keys:
            column = frame[key]
            present = np.flatnonzero(column.notna().to_numpy())
            values = column.to_numpy()[present]
            order = np.argsort(values, kind="stable")
            self.index[key] = (values[order], present[order])

    def find(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Rows (sorted, unique) whose key equals one of `values[key]` for some key."""
        found = []
        for key, wanted in values.items():
            ordered, rows = self.index[key]
            if len(wanted) == 0 or len(ordered) == 0:
                continue
            try:
                lo = np.searchsorted(ordered, wanted, side="left")
                hi = np.searchsorted(ordered, wanted, side="right")
            except TypeError:  # values of another type than the column's (an int sent for a text id): none match
                continue
            found.extend(rows[a:b] for a, b in zip(lo.tolist(), hi.tolist()) if b > a)
        if not found:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(found))


def _ns(times: pd.Series) -> np.ndarray:
    return times.to_numpy().astype("datetime64[ns]").astype(np.int64)
