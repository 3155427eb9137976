"""Reading a user's time column: datetimes, text in one format, or numbers in a unit and from an epoch.

What `ratchet init --time-format/--time-unit/--epoch` controls; how the column was read (the format, or the unit and
start, and the first and last time) goes into the import notes. Every refusal is a one-line RatchetError naming the
file, the column and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from domains.errors import RatchetError, examples, listing

UNIX_EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class TimeReading:
    """How a time column is read (`ratchet init --time-unit/--epoch/--time-format`).

    Numbers: unit "auto" (from the values: seconds, milliseconds, microseconds or nanoseconds since the Unix
    epoch, or seconds from the start of the file), or one of UNITS; epoch None, or the date the count starts from
    (a count from the start of the file; the unit defaults to seconds). Text: format None (the one format of
    FORMATS that reads every value), or strptime codes such as "%d/%m/%Y %H:%M" (or ISO8601) for every row.
    recorded: the format is the workspace's, recorded at init (reseal reads new data with it), not a flag's.
    """

    unit: str = "auto"
    epoch: str | None = None
    format: str | None = None
    recorded: bool = False


UNITS = {"s": ("seconds", 1.0), "ms": ("milliseconds", 1e3), "us": ("microseconds", 1e6), "ns": ("nanoseconds", 1e9)}
# A count from the start of the file is placed from here unless --epoch says otherwise (the public card-fraud
# export starts in September 2013).
START_EPOCH = pd.Timestamp("2013-09-01")
RELATIVE_MAX_S = 1e8  # about three years: a count below this is read as seconds from the start of the file
PLAUSIBLE_FROM = pd.Timestamp("1990-01-01")


def times(series: pd.Series, name: str, col: str, *, role: str, reading: TimeReading = TimeReading(),
          notes: list[str] | None = None, formats: dict[str, str] | None = None) -> pd.Series:
    """Datetimes (tz-aware ones in UTC), text or numbers read as `reading` says; tz-naive ns.

    How the column was read goes into `notes`; the format text was read with into `formats` under the column's
    name (init records it: reseal reads new data the same way). A time range that ends in the future is refused."""
    if pd.api.types.is_bool_dtype(series):
        raise RatchetError(f"{name}: column {col!r} for {role} holds booleans; give datetimes or seconds.")
    if pd.api.types.is_integer_dtype(series) and reading.format not in (None, ISO):  # e.g. 20240304 as %Y%m%d
        out = _text_times(series.astype("str"), name, col, role=role, reading=reading, notes=notes, formats=formats)
    elif pd.api.types.is_numeric_dtype(series):
        out = _numeric_times(series, name, col, role=role, reading=reading, notes=notes)
    elif isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
        aware = isinstance(series.dtype, pd.DatetimeTZDtype)
        out = (series.dt.tz_convert("UTC").dt.tz_localize(None) if aware else series).astype("datetime64[ns]")
        if notes is not None and out.notna().any():
            notes.append(f"{col}: datetimes as stored{' (in UTC)' if aware else ''}: {out.min():%Y-%m-%d %H:%M} to "
                         f"{out.max():%Y-%m-%d %H:%M}")
    else:
        if reading.format is None and _some_numbers(series):  # then count them: numbers with a few words among them, name the words
            present = series.notna()
            numbers = pd.to_numeric(series, errors="coerce")
            if numbers.notna().sum() > present.sum() // 2:
                bad = (numbers.isna() & present).to_numpy()
                raise RatchetError(f"{name}: column {col!r} for {role} holds numbers, but {int(bad.sum()):,} values "
                                   f"are not (e.g. {examples(series, bad)}); fix those rows or map another column.")
        out = _text_times(series, name, col, role=role, reading=reading, notes=notes, formats=formats)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    last = out.max()
    if pd.notna(last) and last > now + pd.Timedelta(days=1):
        how = "" if not pd.api.types.is_numeric_dtype(series) else \
            " (numbers: check the unit and start, or set --time-unit and --epoch to read them otherwise)"
        raise RatchetError(f"{name}: column {col!r} for {role} ends at {last:%Y-%m-%d %H:%M}, in the future"
                           f"{how}; times must be when the events happened.")
    return out


def _numeric_times(series: pd.Series, name: str, col: str, *, role: str, reading: TimeReading,
                   notes: list[str] | None) -> pd.Series:
    values = series.astype(np.float64)
    bad = ~np.isfinite(values) & series.notna()
    if bad.any():
        raise RatchetError(f"{name}: column {col!r} for {role} has non-finite numbers "
                           f"(e.g. {examples(series, bad.to_numpy())}); fix those rows.")
    if reading.unit != "auto" and reading.unit not in UNITS:
        raise RatchetError(f"--time-unit {reading.unit!r}: use auto, {', '.join(UNITS)}.")
    epoch = None
    if reading.epoch is not None:
        try:
            epoch = pd.Timestamp(reading.epoch)
        except (ValueError, TypeError):
            raise RatchetError(f"--epoch {reading.epoch!r}: not a date; give e.g. 2024-01-01 or "
                               "'2024-01-01 08:00'.") from None
        epoch = epoch.tz_convert("UTC").tz_localize(None) if epoch.tzinfo else epoch
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    unit, how = reading.unit, "given"
    if epoch is None and unit == "auto":
        unit, epoch, how = _detect(lo, hi, name, col, role)
    elif unit == "auto":
        unit = "s"
    if epoch is None:
        epoch = UNIX_EPOCH
    word, factor = UNITS[unit]
    try:
        out = (epoch + pd.to_timedelta(values / factor, unit="s")).astype("datetime64[ns]")
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta):
        raise RatchetError(f"{name}: column {col!r} for {role} holds numbers from {lo:g} to {hi:g}, which as "
                           f"{word} since {epoch:%Y-%m-%d} are out of range; pass the right --time-unit.") from None
    since = "the Unix epoch" if epoch == UNIX_EPOCH else f"{epoch:%Y-%m-%d %H:%M:%S}"
    if len(finite) and out.min() < PLAUSIBLE_FROM:
        raise RatchetError(f"{name}: column {col!r} for {role} read as {word} since {since} ({how}) starts at "
                           f"{out.min():%Y-%m-%d %H:%M}, before {PLAUSIBLE_FROM:%Y}; pass the right --time-unit "
                           "(s, ms, us, ns) and --epoch DATE.")
    if notes is not None and len(finite):
        hint = "; pass --epoch DATE for the real start" if how == RELATIVE else ""
        notes.append(f"{col}: numbers read as {word} since {since} ({how}): {out.min():%Y-%m-%d %H:%M} to "
                     f"{out.max():%Y-%m-%d %H:%M}{hint}")
    return out


RELATIVE = "detected: a count from the start of the file"


def _detect(lo: float, hi: float, name: str, col: str, role: str) -> tuple[str, pd.Timestamp | None, str]:
    """(unit, epoch or None for the Unix epoch, how) from the range of the values."""
    if lo >= 0 and hi < RELATIVE_MAX_S:
        return "s", START_EPOCH, RELATIVE
    earliest = (PLAUSIBLE_FROM - UNIX_EPOCH).total_seconds()
    latest = (pd.Timestamp.now(tz="UTC").tz_localize(None) - UNIX_EPOCH).total_seconds() + 86_400
    for unit, (_, factor) in UNITS.items():
        if earliest <= lo / factor and hi / factor <= latest:
            return unit, None, "detected"
    raise RatchetError(f"{name}: column {col!r} for {role} holds numbers from {lo:g} to {hi:g}: neither seconds "
                       "from the start of the file nor seconds, milliseconds, microseconds or nanoseconds since "
                       "the Unix epoch that end by today; pass --time-unit (s, ms, us, ns) and --epoch DATE.")


SAMPLE = 4096
PROBE = 64  # a format is tried on this many values of the sample first


def _some_numbers(series: pd.Series) -> bool:
    """Whether a seeded sample of the text column holds a number. Converting all of it is what finds the words
    among numbers, but takes 7 s and 0.8 GiB for 10M dates read from a CSV. A column that is more than half
    numbers shows none in the sample with a probability of at most 2**-4096 when every row has a value, and below
    1e-8 when 1 % of them do."""
    if len(series) <= SAMPLE:
        return True
    rows = np.random.default_rng(0).choice(len(series), SAMPLE, replace=False)
    return bool(pd.to_numeric(series.iloc[rows], errors="coerce").notna().any())


ISO = "ISO8601"  # pandas' ISO 8601 reader: dates, times, fractions of a second, Z and offsets
_DATES = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y/%m/%d")
_CLOCKS = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p")
# What a text time column is tried with, ISO 8601 first; a format is kept when it reads every value.
FORMATS = (ISO, *(d + c for d in _DATES for c in _CLOCKS), "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
EXAMPLE_FORMAT = "'%d/%m/%Y %H:%M'"


def _text_times(series: pd.Series, name: str, col: str, *, role: str, reading: TimeReading,
                notes: list[str] | None, formats: dict[str, str] | None) -> pd.Series:
    """A text column read with one format for every row: the one given, or the one of FORMATS that reads every
    value (day first and month first both reading it, differently, is refused)."""
    present = series.notna().to_numpy()
    if reading.format is not None:
        fmt = _given(reading)
        parsed = _parse(series, fmt)
        bad = parsed.isna().to_numpy() & present
        if bad.any():
            fix = ("write the new file's times that way (data.time_format in ratchet.yaml, recorded at init)"
                   if reading.recorded else "fix those rows, or pass the --time-format that reads them")
            raise RatchetError(f"{name}: column {col!r} for {role} has {int(bad.sum()):,} values that do not match "
                               f"{_said(fmt, reading)} ({_rows(name, bad)}: {examples(series, bad)}); {fix}.")
        how = "given" if not reading.recorded else "recorded at init"
    else:
        fmt, parsed, how = _detect_format(series, present, name, col, role)
    out = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    if formats is not None:
        formats[col] = fmt
    if notes is not None and present.any():
        notes.append(f"{col}: text read as {'ISO 8601' if fmt == ISO else fmt} ({how}): {out.min():%Y-%m-%d %H:%M} "
                     f"to {out.max():%Y-%m-%d %H:%M}")
    return out


def _given(reading: TimeReading) -> str:
    fmt = reading.format or ""
    if fmt.replace(" ", "").upper() == ISO:
        return ISO
    if "%" not in fmt:
        raise RatchetError(f"--time-format {fmt!r}: give it in strptime codes, e.g. '%d/%m/%Y' for dd/mm/yyyy or "
                           f"'%m/%d/%Y %H:%M' for mm/dd/yyyy hh:mm (or ISO8601).")
    return fmt


def _said(fmt: str, reading: TimeReading) -> str:
    if reading.recorded:
        return f"{'ISO 8601' if fmt == ISO else repr(fmt)}, the format this workspace reads times in"
    return f"--time-format {fmt!r}"


def _parse(values: pd.Series, fmt: str) -> pd.Series:
    try:
        return pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    except ValueError as exc:  # a bad directive (only a given format can have one)
        raise RatchetError(f"--time-format {fmt!r}: {exc}; give strptime codes, e.g. {EXAMPLE_FORMAT}.") from None


def _rows(name: str, bad: np.ndarray) -> str:
    """Where the bad values are: CSV lines (the header is line 1), else rows counted from 1."""
    where = np.flatnonzero(bad)
    line = name.lower().endswith(".csv")
    numbers = [int(i) + (2 if line else 1) for i in where]
    word = ("line" if line else "row") + ("s" if len(numbers) > 1 else "")
    return f"{word} {listing(numbers, 5)}"


def _detect_format(series: pd.Series, present: np.ndarray, name: str, col: str,
                   role: str) -> tuple[str, pd.Series, str]:
    """(format, times, how) for a text column: the one format of FORMATS that reads every value. Each is tried on
    few values, then on a sample (a failed conversion is slow: 4 s per million values), and those that read all of
    it, on all."""
    values = series[present]
    sample = values if len(values) <= SAMPLE else \
        values.iloc[np.random.default_rng(0).choice(len(values), SAMPLE, replace=False)]
    tried = {fmt: _parse(sample.iloc[:PROBE], fmt) for fmt in FORMATS}  # fmt -> the values it was tried on, read
    fits: list[tuple[str, pd.Series]] = []
    for fmt in [f for f, got in tried.items() if got.notna().all()]:
        for values in (sample, series):
            tried[fmt] = _parse(values, fmt)
            if (tried[fmt].isna().to_numpy() & values.notna().to_numpy()).any():
                break
        else:
            fits.append((fmt, tried[fmt]))
            if fmt == ISO:  # unambiguous, and what most files hold
                return ISO, tried[fmt], "detected"
    if not fits:
        counts = {f: int(_parse(sample, f).notna().sum()) for f in FORMATS}
        best = max(counts, key=counts.__getitem__)  # the first of the best: ISO 8601 on a tie
        if not counts[best]:
            raise RatchetError(f"{name}: column {col!r} for {role} has {int(present.sum()):,} values that are not "
                               f"dates (e.g. {examples(series, present)}) in any format ratchet tries; pass "
                               f"--time-format with the format they are in (strptime codes, e.g. {EXAMPLE_FORMAT}), "
                               "or map another column.")
        bad = _parse(series, best).isna().to_numpy() & present
        said = "ISO 8601" if best == ISO else repr(best)
        raise RatchetError(f"{name}: column {col!r} for {role} has {int(bad.sum()):,} values that are not dates "
                           f"(e.g. {examples(series, bad)}) read as {said}, the format that reads most of it "
                           f"({_rows(name, bad)}); fix them or map another column, or pass --time-format with the "
                           f"format they are in (strptime codes, e.g. {EXAMPLE_FORMAT}).")
    (fmt, parsed), *others = fits
    differ = [(f, p) for f, p in others if not p.equals(parsed)]
    if differ:
        _ambiguous(series, name, col, role, (fmt, parsed), differ[0])
    twin = _twin(fmt)
    if twin in tried:  # said why day first (or month first): a value the other way round cannot be
        got = tried[twin]
        proof = got.index[got.isna().to_numpy() & series[got.index].notna().to_numpy()]
        if len(proof):
            first = "day" if _day_first(fmt) else "month"
            return fmt, parsed, f"detected; {first} first, as {series[proof[0]]!r} can only be"
    return fmt, parsed, "detected"


def _twin(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _day_first(fmt: str) -> bool:
    return fmt.index("%d") < fmt.index("%m")


def _ambiguous(series: pd.Series, name: str, col: str, role: str, one: tuple[str, pd.Series],
               other: tuple[str, pd.Series]) -> None:
    (day, by_day), (month, by_month) = (one, other) if _day_first(one[0]) else (other, one)
    differ = (by_day != by_month).to_numpy() & series.notna().to_numpy()
    shown = list(dict.fromkeys(series[differ].tolist()))[:2]
    ways = ", ".join(f"{v!r} is {a.day} {a:%B} or {b:%B} {b.day}" for v in shown
                     for a, b in [(by_day[series == v].iloc[0], by_month[series == v].iloc[0])])
    raise RatchetError(f"{name}: column {col!r} for {role} reads day first ({day}) and month first ({month}) with "
                       f"different times, as no day is after the 12th: {ways}; pass --time-format '{day}' or "
                       f"--time-format '{month}'.")
