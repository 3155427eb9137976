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
import math
from typing import Sequence

import numpy as np
import pandas as pd

CONSTANT = "HISTORY_DAYS"
MAX_DAYS = 366.0  # a longer lookback is refused: it would ship a year of events with every request


class LookbackError(ValueError):
    """policy.py declares HISTORY_DAYS in a way the parent cannot read (the message says how to fix it)."""


def declared(source: str) -> tuple[float, bool]:
    """(HISTORY_DAYS, whether `decide` takes a third argument) read from the policy source without running it.

    No HISTORY_DAYS or a two-argument decide: no history. LookbackError when HISTORY_DAYS is not a literal number
    in [0, MAX_DAYS] assigned once at top level."""
    tree = ast.parse(source)
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


class History:
    """Events in stream order (the oldest first) with, per history key, where each entity's events are.

    Built once from a frame (`of`), extended in place as events are decided (`extend`); `window` answers what a
    call may read. Positions are stream positions: `window(..., before=k)` sees only the first k events, which is
    how a batch or one event at position k is decided as if the store held nothing later."""

    def __init__(self, columns: Sequence[str], dtypes: pd.Series, *, time: str, keys: Sequence[str]) -> None:
        self.columns = list(columns)
        self.dtypes = dtypes
        self.time = time
        self.keys = [k for k in keys if k in self.columns]
        self._parts: list[pd.DataFrame] = []  # frames in stream order, compacted now and then
        self._times: list[np.ndarray] = []  # their times as int64 ns
        self._where: dict[str, dict[object, list[int]]] = {k: {} for k in self.keys}
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
        start = self._size
        for key in self.keys:
            where = self._where[key]
            codes, uniques = pd.factorize(frame[key], use_na_sentinel=True)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
            for j, value in enumerate(uniques):
                where.setdefault(value, []).extend((order[bounds[j]:bounds[j + 1]] + start).tolist())
        self._parts.append(frame)
        self._times.append(_ns(frame[self.time]))
        self._size += len(frame)
        # Merge the newest part into the one before while that one is at most twice its size (like a binary counter):
        # few parts to take rows from, and each event copied a logarithmic number of times, never the whole store
        # for every few requests.
        while len(self._parts) > 1 and len(self._parts[-2]) <= 2 * len(self._parts[-1]):
            last, times = self._parts.pop(), self._times.pop()
            self._parts[-1] = pd.concat([self._parts[-1], last], ignore_index=True)
            self._times[-1] = np.concatenate([self._times[-1], times])

    def window(self, rows: pd.DataFrame, days: float, *, before: int | None = None) -> pd.DataFrame:
        """The events a call deciding `rows` may read: those of `rows`' entities, in the `days` before the first
        row's time up to the last row's, among the first `before` events (all when None), oldest first."""
        if days <= 0 or not self.keys or len(rows) == 0 or self._size == 0:
            return self.empty()
        found = []
        for key in self.keys:
            if key in rows.columns:
                where = self._where[key]
                for value in pd.unique(rows[key].dropna()):
                    found.extend(where.get(value, ()))
        positions = np.unique(np.asarray(found, dtype=np.int64))
        if before is not None:
            positions = positions[positions < before]
        times = _ns(rows[self.time])
        lo, hi = int(times.min()) - int(days * 86_400e9), int(times.max())
        out, offset = [], 0
        for part, ts in zip(self._parts, self._times):
            mine = positions[(positions >= offset) & (positions < offset + len(part))] - offset
            mine = mine[(ts[mine] >= lo) & (ts[mine] <= hi)]
            if len(mine):
                out.append(part.iloc[mine])
            offset += len(part)
        if not out:
            return self.empty()
        found = pd.concat(out, ignore_index=True) if len(out) > 1 else out[0].reset_index(drop=True)
        # Oldest first, ties in the order held: the holdout's events join the index after the store's.
        return found.sort_values(self.time, kind="stable", ignore_index=True)


def _ns(times: pd.Series) -> np.ndarray:
    return times.to_numpy().astype("datetime64[ns]").astype(np.int64)
