"""The rows of a `POST /decide` request, read into the frame a policy sees: each column coerced to the dev split's
type, and every problem a 4xx naming the row and the column (never a crash). On a workspace imported with
`--map KEY=COLUMN`, a row may name a mapped column the user's way or ratchet's (not both)."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

from optimizer.workspace.user_columns import both, renames, shown

if TYPE_CHECKING:
    from optimizer.records.context import Context

TIMES = (pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s"))  # what a nanosecond time column holds


class Refused(Exception):
    """A request the server answers with an error status and a one-line message (never a crash)."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code, self.message, self.extra = status_code, message, extra


# --- rows in -----------------------------------------------------------------------------------------------------
def parse_rows(body: bytes, max_rows: int) -> list[dict]:
    """The request's rows as a list of objects; Refused (400/413/422) naming what is wrong with the body."""
    if not body.strip():
        raise Refused(400, 'empty body: send JSON {"rows": [{column: value, ...}, ...]}')
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise Refused(400, f"body is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise Refused(422, 'expected a JSON object {"rows": [{column: value, ...}, ...]}')
    extra = sorted(set(data) - {"rows"})
    if extra:
        raise Refused(422, f"unknown key {extra[0]!r}: the body holds only \"rows\"")
    rows = data["rows"]
    if not isinstance(rows, list):
        raise Refused(422, f'"rows" must be a list of objects, got {_json_type(rows)}')
    if not rows:
        raise Refused(422, '"rows" is empty: send at least one row')
    if len(rows) > max_rows:
        raise Refused(413, f'{len(rows):,} rows in one request; at most {max_rows:,}: split it into batches')
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise Refused(422, f"row {bad}: expected an object of column: value, got {_json_type(rows[bad])}")
    return rows


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


@dataclass(frozen=True)
class ColumnSpec:
    """One decision-time column: its name, the dev split's dtype, and whether dev holds empty values in it."""

    name: str
    dtype: Any
    nullable: bool
    yours: str = ""  # the user's name for it, mapped at init (empty: the same as ours)

    @property
    def called(self) -> str:
        return repr(self.name) if not self.yours else f"{self.yours!r} ({self.name!r})"


@dataclass(frozen=True)
class Schema:
    """The columns a policy decides on, as the dev split's policy view has them, and those it must never see."""

    columns: tuple[ColumnSpec, ...]
    hidden: dict[str, str]  # column -> why it is not known at decision time
    renamed: Mapping[str, str] = field(default_factory=dict)  # the user's column -> ours, as mapped at init

    @classmethod
    def of(cls, ctx: Context) -> "Schema":
        view = ctx.domain.policy_view(ctx.dev, with_label=False)
        cols = ctx.domain.columns
        hidden = {cols.label: "the label", **{c: "outcome-only" for c in cols.outcome_only},
                  **{c: "train-only" for c in cols.train_only}}
        renamed = renames(ctx)
        yours = {ours: user for user, ours in renamed.items()}
        specs = tuple(ColumnSpec(c, view[c].dtype, bool(view[c].isna().any()), yours.get(c, ""))
                      for c in view.columns)
        return cls(specs, {k: v for k, v in hidden.items() if k not in view.columns}, renamed)

    def describe(self) -> dict[str, str]:
        return {c.name: str(c.dtype) for c in self.columns}

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        """The rows as a frame of the dev split's columns and dtypes; Refused (422) naming the row and column."""
        rows = self._ours(rows)
        self._check_keys(rows)
        data = {c.name: coerce(c, [r[c.name] for r in rows]) for c in self.columns}
        return pd.DataFrame(data, index=pd.RangeIndex(len(rows)), copy=False)

    def _ours(self, rows: list[dict]) -> list[dict]:
        """The rows with the user's mapped names as ours; Refused (422) for a row that names a column both ways."""
        if not self.renamed:
            return rows
        expected = {c.name for c in self.columns}
        ours_only = not self.renamed.keys() & expected  # else a user's name is also one of ours: it reads as the user's
        out = []
        for i, row in enumerate(rows):
            if (ours_only and row.keys() == expected) or not self.renamed.keys() & row.keys():
                out.append(row)
                continue
            clash = both(row, self.renamed)
            if clash:
                raise Refused(422, f"row {i}: columns {clash[0]!r} (yours, mapped at init) and {clash[1]!r} "
                                   "(ratchet's) are one column; send one of them")
            out.append({self.renamed.get(k, k): v for k, v in row.items()})
        return out

    def _called(self, name: str) -> str:
        user = next((u for u, ours in self.renamed.items() if ours == name), None)
        return repr(name) if user is None else f"{user!r} ({name!r})"

    def _check_keys(self, rows: list[dict]) -> None:
        expected = {c.name for c in self.columns}
        needed = ", ".join(shown(c.name, self.renamed) for c in self.columns)
        for i, row in enumerate(rows):
            if row.keys() == expected:
                continue
            for name in row:
                if name in self.hidden:
                    raise Refused(422, f"row {i}: column {self._called(name)} is {self.hidden[name]}, not known at "
                                       "decision time; remove it")
            missing = [c for c in self.columns if c.name not in row]
            if missing:
                raise Refused(422, f"row {i}: missing column {missing[0].called} (every row needs {needed})")
            unknown = sorted(set(row) - expected)
            raise Refused(422, f"row {i}: unknown column {unknown[0]!r} (the policy decides on {needed})")


def coerce(spec: ColumnSpec, values: list) -> pd.Series | np.ndarray | pd.api.extensions.ExtensionArray:
    """One column's values in the dev split's dtype (a plain array where numpy holds it: a frame builds fastest from
    those); Refused (422) at the first value that does not fit."""
    dtype = spec.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _each(spec, values, _boolean, "a boolean")
    if pd.api.types.is_integer_dtype(dtype):
        return _each(spec, values, _integer, "an integer")
    if pd.api.types.is_float_dtype(dtype):
        return _each(spec, values, _number, "a finite number")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _times(spec, values)
    if isinstance(dtype, pd.CategoricalDtype):
        return _each(spec, values, _text, "text").astype("category")
    return _each(spec, values, _text, "text")


def _each(spec: ColumnSpec, values: list, one: Callable[[Any], Any], expected: str) -> pd.Series | np.ndarray:
    """Convert value by value, refusing nulls the dev split never has, values `one` rejects and numbers the column's
    dtype cannot hold (an int32 or float32 column refuses by row what numpy would wrap or make infinite)."""
    bounds = _bounds(spec.dtype)
    out: list = []
    for i, value in enumerate(values):
        if value is None:
            if not spec.nullable:
                raise Refused(422, f"row {i}, column {spec.called}: null, expected {expected} (never empty in dev)")
            out.append(None)
            continue
        try:
            converted = one(value)
        except (TypeError, ValueError, OverflowError):
            raise Refused(422, f"row {i}, column {spec.called}: {_shown(value)} is not {expected}") from None
        if bounds is not None and not bounds[0] <= converted <= bounds[1]:
            raise Refused(422, f"row {i}, column {spec.called}: {_shown(value)} is outside what the column holds "
                               f"({_dtype_name(spec.dtype)}: {bounds[0]:,} to {bounds[1]:,}); send a value in that range")
        out.append(converted)
    try:
        if isinstance(spec.dtype, np.dtype) and spec.dtype.kind in "iuf" and None not in out:
            return np.array(out, dtype=spec.dtype)  # what the Series below would hold, without its overhead
        return pd.Series(out, dtype=spec.dtype if not isinstance(spec.dtype, pd.CategoricalDtype) else object)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Refused(422, f"column {spec.called}: values do not fit {spec.dtype} ({_one_line(exc)})") from None


def _bounds(dtype: Any) -> tuple[int | float, int | float] | None:
    """The smallest and largest value a numeric column's dtype holds (None for other columns)."""
    base = getattr(dtype, "numpy_dtype", dtype)  # a nullable Int32 holds what int32 holds
    if not isinstance(base, np.dtype) or base.kind not in "iuf":
        return None
    info = np.iinfo(base) if base.kind in "iu" else np.finfo(base)
    return (int(info.min), int(info.max)) if base.kind in "iu" else (float(info.min), float(info.max))


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "numpy_dtype", dtype))


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError
    return value


def _integer(value: Any) -> int:
    if type(value) is int:
        out = value
    elif type(value) is float and value.is_integer():
        out = int(value)
    elif type(value) is str:
        out = int(value.strip())
    else:
        raise TypeError
    return out  # its range is the column's (see _bounds)


def _number(value: Any) -> float:
    if type(value) not in (int, float, str):
        raise TypeError
    out = float(value)
    if not math.isfinite(out):
        raise ValueError
    return out


def _text(value: Any) -> str:
    if type(value) not in (str, int):
        raise TypeError
    return str(value)


def _times(spec: ColumnSpec, values: list) -> pd.Series:
    """ISO 8601 strings as the dev split's timestamps (a zone is converted to the dev split's, naive is UTC); a time
    a nanosecond timestamp cannot hold (before 1677-09-21 or after 2262-04-11) is refused by row, never a crash."""
    for i, value in enumerate(values):
        if value is None and not spec.nullable:
            raise Refused(422, f"row {i}, column {spec.called}: null, expected an ISO 8601 time (never empty in dev)")
        if value is not None and type(value) is not str:
            raise Refused(422, f"row {i}, column {spec.called}: {_shown(value)} is not an ISO 8601 time string")
    quick = _plain_times(spec, values)
    if quick is not None:
        return quick
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    bad = np.asarray(parsed.isna()) & np.array([v is not None for v in values])
    if bad.any():
        i = int(np.argmax(bad))
        raise _bad_time(spec, i, values[i])
    zoned = parsed.tz_convert(getattr(spec.dtype, "tz", None))
    try:
        return zoned.astype(spec.dtype).array
    except (OutOfBoundsDatetime, OverflowError, ValueError):
        i = _out_of_range(zoned, spec.dtype)
        raise _outside(spec, i, values[i]) from None


# A zone-less ISO 8601 time with valid fields, in the years a nanosecond timestamp holds throughout.
_PLAIN_TIME = re.compile(r"(1[7-9]\d\d|2[01]\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
                         r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?")


def _plain_times(spec: ColumnSpec, values: list) -> np.ndarray | None:
    """The times numpy parses as pandas does (naive is UTC: the same nanoseconds), for a tz-naive nanosecond column
    whose values are all zone-less ISO 8601 with valid fields; None otherwise (the general path decides)."""
    if spec.dtype != np.dtype("datetime64[ns]") or not all(type(v) is str and _PLAIN_TIME.fullmatch(v)
                                                            for v in values):
        return None
    try:
        return np.array(values, dtype="datetime64[ns]")
    except ValueError:  # a day the month does not have: the general path names it
        return None


def _bad_time(spec: ColumnSpec, i: int, value: str) -> Refused:
    """Why row `i`'s time did not parse with the others: outside what a timestamp holds, or no ISO 8601 time."""
    try:
        pd.to_datetime([value], format="ISO8601", utc=True)
    except OutOfBoundsDatetime:
        return _outside(spec, i, value)
    except (ValueError, OverflowError):
        return Refused(422, f"row {i}, column {spec.called}: {_shown(value)} is not an ISO 8601 time "
                            "(YYYY-MM-DDTHH:MM:SS[+HH:MM], a year from 1 to 9999)")
    return _outside(spec, i, value)  # it parses alone, at a coarser unit than the other rows share


def _outside(spec: ColumnSpec, i: int, value: str) -> Refused:
    return Refused(422, f"row {i}, column {spec.called}: {_shown(value)} is outside the times the column holds "
                        f"({TIMES[0]:%Y-%m-%dT%H:%M:%S} to {TIMES[1]:%Y-%m-%dT%H:%M:%S}); send a time in that range")


def _out_of_range(times: pd.DatetimeIndex, dtype: Any) -> int:
    """The first row whose time the column's unit cannot hold."""
    unit = getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]
    for i, ts in enumerate(times):
        try:
            if ts is not pd.NaT:
                ts.as_unit(unit)
        except (OutOfBoundsDatetime, OverflowError, ValueError):
            return i
    return 0  # not reached: the conversion refused some row


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else _json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."
