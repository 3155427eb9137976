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
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from domains import _source

CONSTANT = "HISTORY_DAYS"
MAX_DAYS = 366.0  # a longer lookback is refused: it would ship a year of events with every request



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
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == CONSTANT for t in targets):
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
    """Events in stream order (the oldest first), held as columns, each history key indexed.

    Built once from a frame (`of`), extended in place as events are decided (`extend`); `window` answers what a
    call may read. Positions are stream positions: `window(..., before=k)` sees only the first k events, which is
    how a batch or one event at position k is decided as if the store held nothing later. Each column is one
    growable numpy array (an extension dtype's values in a numpy form that rebuilds them exactly), so a window is a
    take per column, never a frame sliced and concatenated; per key, each value maps to the ascending positions of
    its events (a dict lookup per entity, whatever the store's size)."""

    def __init__(self, columns: Sequence[str], dtypes: pd.Series, *, time: str, keys: Sequence[str]) -> None:
        self.columns = list(columns)
        self._labels = columns.copy() if isinstance(columns, pd.Index) else pd.Index(self.columns)  # a window's
        self.dtypes = dtypes
        self.time = time
        self.keys = [k for k in keys if k in self.columns]
        self._dtypes = {c: dtypes[c] for c in self.columns}  # a Series' lookups cost microseconds each
        self._values = {c: _Column(self._dtypes[c]) for c in self.columns}
        self._times = _Buffer(np.dtype(np.int64))  # the time column in ns, what windows are cut on
        self._index = {k: _KeyIndex() for k in self.keys}
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
        arrays = columns_of(events, self.columns)
        changed = {c: t for c, t in self._dtypes.items() if arrays[c].dtype != t}
        if changed:  # the index's own dtypes, so every window has the same columns whatever fed it
            arrays.update(columns_of(events[list(changed)].astype(changed), list(changed)))
        start = self._size
        for c in self.columns:
            self._values[c].add(arrays[c])
        self._times.add(_ns(arrays[self.time]))
        for key in self.keys:
            values = np.asarray(arrays[key])
            present = np.flatnonzero(pd.notna(values))
            self._index[key].add(values[present], present + start)
        self._size += len(events)

    def window(self, rows: pd.DataFrame, days: float, *, before: int | None = None) -> pd.DataFrame:
        """The events a call deciding `rows` may read: those of `rows`' entities, in the `days` before the first
        row's time up to the last row's, among the first `before` events (all when None), oldest first."""
        found = self.positions(rows, days, before=before)
        return self.take(found) if len(found) else self.empty()

    def positions(self, rows: pd.DataFrame, days: float, *, before: int | None = None) -> npt.NDArray[np.int64]:
        """The stream positions of `window(rows, days, before=before)`'s events, in its order."""
        if days <= 0 or not self.keys or len(rows) == 0 or self._size == 0:
            return _NONE
        arrays = columns_of(rows, [self.time, *(k for k in self.keys if k in rows.columns)])
        times = _ns(arrays[self.time])
        lo, hi = int(times.min()) - int(days * 86_400e9), int(times.max())
        found: list[np.ndarray] = []
        for key in self.keys:
            if key in arrays:
                values = np.asarray(arrays[key])
                found += self._index[key].find(values[pd.notna(values)])
        if not found:
            return _NONE
        mine: npt.NDArray[np.int64] = found[0]  # ascending, each position once
        if len(found) > 1:
            mine = np.sort(np.concatenate(found))
            mine = mine[np.concatenate([[True], mine[1:] != mine[:-1]])]
        if before is not None:
            mine = mine[:np.searchsorted(mine, before)]
        at = self._times.data[mine]
        keep = (at >= lo) & (at <= hi)
        mine, at = mine[keep], at[keep]
        # Oldest first, ties in the order held (positions ascend): the holdout's events join after the store's.
        return mine[np.argsort(at, kind="stable")]

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The events at `positions` (in that order), as a frame of the index's columns and dtypes."""
        arrays = [self._values[c].take(positions) for c in self.columns]
        try:  # pandas' internals, for arrays already in their dtypes: half the public constructor's time
            return pd.DataFrame._from_arrays(arrays, columns=self._labels, index=pd.RangeIndex(len(positions)),
                                             verify_integrity=False)
        except (AttributeError, TypeError):
            return pd.DataFrame(dict(zip(self.columns, arrays)), columns=self._labels, copy=False)

    def column(self, name: str, positions: np.ndarray) -> Any:
        """Column `name`'s values at `positions` (a numpy or pandas array of its dtype)."""
        return self._values[name].take(positions)


class _Buffer:
    """A numpy array that grows by doubling: appends cost what they add, amortized."""

    def __init__(self, dtype: np.dtype) -> None:
        self.data = np.empty(0, dtype=dtype)
        self.size = 0

    def add(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data), 1024), dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = values
        self.size = end


class _Column:
    """One column's values: a numpy dtype's as they are; a categorical's codes; a masked array's (nullable integer,
    float or boolean) values and mask; any other extension dtype's as objects, rebuilt with `pd.array`."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        if isinstance(dtype, np.dtype):
            self.form, parts = "numpy", [dtype]
        elif isinstance(dtype, pd.CategoricalDtype):
            self.form, parts = "codes", [np.dtype(np.int64)]
        elif isinstance(dtype.construct_array_type(), type) and issubclass(dtype.construct_array_type(), _MASKED):
            self.form, parts = "masked", [dtype.numpy_dtype, np.dtype(bool)]
        else:
            self.form, parts = "objects", [np.dtype(object)]
        self.parts = [_Buffer(p) for p in parts]

    def add(self, values: Any) -> None:
        if self.form == "numpy":
            self.parts[0].add(np.asarray(values, dtype=self.dtype))
        elif self.form == "codes":
            if not values.dtype.categories.equals(self.dtype.categories):  # equal dtypes, categories in another order
                values = pd.Categorical(np.asarray(values, dtype=object), dtype=self.dtype)
            self.parts[0].add(values.codes)
        elif self.form == "masked":
            self.parts[0].add(values._data)
            self.parts[1].add(values._mask)
        else:
            self.parts[0].add(np.asarray(values, dtype=object))

    def take(self, positions: np.ndarray) -> Any:
        taken = [p.data[positions] for p in self.parts]
        if self.form == "numpy":
            return taken[0]
        if self.form == "codes":
            return pd.Categorical.from_codes(taken[0], dtype=self.dtype)
        if self.form == "masked":
            return self.dtype.construct_array_type()(taken[0], taken[1])
        return pd.array(taken[0], dtype=self.dtype)


_MASKED = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


class _KeyIndex:
    """One history key: each value (as a plain Python value, so an equal value of another type finds it) mapped to
    the ascending stream positions of its events. Positions added a few at a time gather in a list per value and
    join the value's array once the list is a quarter of it, so each is copied a bounded number of times."""

    def __init__(self) -> None:
        self.held: dict[Any, np.ndarray] = {}
        self.recent: dict[Any, list[int]] = {}

    def add(self, values: np.ndarray, positions: np.ndarray) -> None:
        if len(values) < 64:
            held, recent = self.held, self.recent
            for value, at in zip(_plain(values), positions.tolist()):
                try:
                    pending = recent.setdefault(value, [])
                except TypeError:  # an unhashable value (a list in an object column) matches nothing
                    continue
                pending.append(at)
                if len(pending) >= 32:
                    base = held.get(value)
                    if base is None or len(pending) * 4 >= len(base):
                        self._settle(value)
            return
        try:
            order = np.argsort(values, kind="stable")
        except TypeError:  # values that do not sort together: one at a time
            for lo in range(0, len(values), 32):
                self.add(values[lo:lo + 32], positions[lo:lo + 32])
            return
        ordered, at = values[order], positions[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        held, recent = self.held, self.recent
        firsts, groups = _plain(ordered[np.concatenate([[0], cuts]).astype(np.int64)]), np.split(at, cuts)
        if not held and not recent:  # the first events (a store loaded at start): no value to merge with
            try:
                self.held = dict(zip(firsts, groups))
                return
            except TypeError:
                pass
        for value, group in zip(firsts, groups):
            try:
                base, waiting = held.get(value), recent.pop(value, None)
            except TypeError:
                continue
            parts = [p for p in (base, None if waiting is None else np.array(waiting, dtype=np.int64)) if p is not None]
            held[value] = np.concatenate([*parts, group]) if parts else group

    def _settle(self, value: Any) -> None:
        pending = np.array(self.recent.pop(value), dtype=np.int64)
        base = self.held.get(value)
        self.held[value] = pending if base is None else np.concatenate([base, pending])

    def find(self, wanted: np.ndarray) -> list[np.ndarray]:
        """Per value of `wanted` that is held, the arrays of its positions (each ascending)."""
        out, values = [], _plain(wanted)
        try:
            values = list(dict.fromkeys(values))  # each value once
        except TypeError:
            pass
        for value in values:
            try:
                base, pending = self.held.get(value), self.recent.get(value)
            except TypeError:
                continue
            if base is not None:
                out.append(base)
            if pending:
                out.append(np.array(pending, dtype=np.int64))
        return out


def _plain(values: np.ndarray) -> list[Any]:
    """Key values as Python values (times as integer ns, whatever their unit), the form the index is keyed by."""
    values = np.asarray(values)
    if values.dtype.kind in "mM":
        values = values.astype(f"{values.dtype.kind}8[ns]").view(np.int64)
    plain: list[Any] = values.tolist()
    return plain


_NONE = np.zeros(0, dtype=np.int64)


def _ns(times: Any) -> np.ndarray:
    """A time column (Series or array) as integer ns."""
    return np.asarray(times).astype("datetime64[ns]").astype(np.int64)


def columns_of(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, Any]:
    """Columns `names` of `frame` as arrays (numpy where numpy holds the dtype, else the pandas array): what
    `frame[name].array` holds, taken in one step (each `frame[name]` builds a Series, tens of microseconds)."""
    try:
        where = [frame.columns.get_loc(name) for name in names]
        if all(type(i) is int for i in where):  # unique names
            arrays = [frame._mgr.iget_values(i) for i in where]  # pandas' internals: the public way otherwise
            if all(len(a) == len(frame) for a in arrays):
                return dict(zip(names, arrays))
    except (AttributeError, TypeError):
        pass
    out = {name: frame[name].array for name in names}
    return {name: a.to_numpy() if isinstance(a, pd.arrays.NumpyExtensionArray) else a for name, a in out.items()}
