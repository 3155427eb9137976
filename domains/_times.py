"""Reading a user's time column: datetimes, date strings, or numbers in a unit and from an epoch.

What `ratchet init --time-unit/--epoch` controls; how numbers were read goes into the import notes. Every refusal
is a one-line RatchetError naming the file, the column and the fix.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from domains.errors import RatchetError, examples

UNIX_EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class TimeReading:
    """How a numeric time column is read (`ratchet init --time-unit/--epoch`).

    unit: "auto" (from the values: seconds, milliseconds, microseconds or nanoseconds since the Unix epoch,
    or seconds from the start of the file), or one of UNITS. epoch: None, or the date the count starts from
    (a count from the start of the file; the unit defaults to seconds).
    """

    unit: str = "auto"
    epoch: str | None = None


UNITS = {"s": ("seconds", 1.0), "ms": ("milliseconds", 1e3), "us": ("microseconds", 1e6), "ns": ("nanoseconds", 1e9)}
# A count from the start of the file is placed from here unless --epoch says otherwise (the public card-fraud
# export starts in September 2013).
START_EPOCH = pd.Timestamp("2013-09-01")
RELATIVE_MAX_S = 1e8  # about three years: a count below this is read as seconds from the start of the file
PLAUSIBLE_FROM = pd.Timestamp("1990-01-01")


def times(series: pd.Series, name: str, col: str, *, role: str, reading: TimeReading = TimeReading(),
          notes: list[str] | None = None) -> pd.Series:
    """Datetimes (tz-aware ones in UTC), date strings, or numbers read as `reading` says; tz-naive ns.

    How numbers were read goes into `notes`. A time range that ends in the future is refused."""
    if pd.api.types.is_bool_dtype(series):
        raise RatchetError(f"{name}: column {col!r} for {role} holds booleans; give datetimes or seconds.")
    if pd.api.types.is_numeric_dtype(series):
        out = _numeric_times(series, name, col, role=role, reading=reading, notes=notes)
    elif isinstance(series.dtype, pd.DatetimeTZDtype):
        out = series.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    elif pd.api.types.is_datetime64_dtype(series):
        out = series.astype("datetime64[ns]")
    else:
        present = series.notna()
        if _some_numbers(series):  # then count them: numbers with a few words among them, name the words
            numbers = pd.to_numeric(series, errors="coerce")
            if numbers.notna().sum() > present.sum() // 2:
                bad = (numbers.isna() & present).to_numpy()
                raise RatchetError(f"{name}: column {col!r} for {role} holds numbers, but {int(bad.sum()):,} values "
                                   f"are not (e.g. {examples(series, bad)}); fix those rows or map another column.")
        with warnings.catch_warnings():  # "could not infer format": the row-by-row retry below is the answer
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(series, errors="coerce", utc=True)
            bad = (parsed.isna() & present).to_numpy()
            if bad.any():  # one inferred format did not fit every row: parse row by row (slow, rare)
                parsed = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
                bad = (parsed.isna() & present).to_numpy()
        if bad.any():
            raise RatchetError(f"{name}: column {col!r} for {role} has {int(bad.sum())} values that are not "
                               f"dates (e.g. {examples(series, bad)}); fix them or map another column.")
        out = parsed.dt.tz_localize(None).astype("datetime64[ns]")
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


def _some_numbers(series: pd.Series) -> bool:
    """Whether a seeded sample of the text column holds a number. Converting all of it is what finds the words
    among numbers, but takes 7 s and 0.8 GiB for 10M dates read from a CSV. A column that is more than half
    numbers shows none in the sample with a probability of at most 2**-4096 when every row has a value, and below
    1e-8 when 1 % of them do."""
    if len(series) <= SAMPLE:
        return True
    rows = np.random.default_rng(0).choice(len(series), SAMPLE, replace=False)
    return bool(pd.to_numeric(series.iloc[rows], errors="coerce").notna().any())
