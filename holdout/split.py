"""Split by time: train, then dev, then holdout, with a gap between neighbours."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from domains.errors import RatchetError


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    dev: pd.DataFrame
    holdout: pd.DataFrame
    boundaries: dict[str, str]  # ISO times where each split starts and ends
    gap_days: float = 0.0  # the gap used, in days (`auto` resolved)


AUTO_GAP_SHARE = 0.01  # auto: each gap is 1 % of the data's time span ...
AUTO_GAP_MAX_DAYS = 1.0  # ... and never more than a day (months of history keep the 1-day gap)


def span_days(times: pd.Series) -> float:
    """Days from the first to the last time (0.0 for no rows)."""
    times = times.dropna()
    return float((times.max() - times.min()) / pd.Timedelta(days=1)) if len(times) else 0.0


def auto_gap_days(span: float) -> float:
    """The `auto` gap for data spanning `span` days: min(1 day, 1 % of the span), to 3 significant digits."""
    gap = min(AUTO_GAP_MAX_DAYS, AUTO_GAP_SHARE * max(span, 0.0))
    return float(f"{gap:.3g}")


def split_by_time(frame: pd.DataFrame, *, time: str, train: float, dev: float,
                  gap_days: float | str) -> Splits:
    """Cut at row quantiles of time; rows inside a gap belong to no split. `gap_days` is a number of days or
    "auto" (see auto_gap_days); Splits.gap_days is the number used.

    Each split is a contiguous run of the time-ordered rows, so the parts are slices that share the frame's
    memory (copy-on-write) rather than copies; rows already in time order are not sorted again."""
    if frame.empty:
        raise RatchetError("split: the data has no rows. Provide data with at least a few thousand rows.")
    ordered = frame if frame[time].is_monotonic_increasing else frame.sort_values(time, kind="stable")
    ordered = ordered.reset_index(drop=True)
    ts = ordered[time]
    if ts.isna().any():
        raise RatchetError(f"split: column '{time}' has {int(ts.isna().sum()):,} missing times; every row needs the "
                           "time it happened.")
    span = span_days(ts)
    auto = gap_days == "auto"
    gap_days = auto_gap_days(span) if auto else float(gap_days)
    gap = pd.Timedelta(days=gap_days)
    train_end = ts.iloc[int(len(ts) * train) - 1]
    dev_end = ts.iloc[int(len(ts) * (train + dev)) - 1]

    def after(t: pd.Timestamp) -> int:  # the first row later than t
        return int(ts.searchsorted(t, side="right"))

    parts = {
        "train": ordered.iloc[:after(train_end)],
        "dev": ordered.iloc[after(train_end + gap):after(dev_end)],
        "holdout": ordered.iloc[after(dev_end + gap):],
    }
    for name, part in parts.items():
        if len(part) < 100:
            # A gap over 5 % of the span eats much of a 20 % split; an auto gap (1 %) never does: then the rows,
            # not the gap, are too few.
            hint = (f"; the data spans only {span:.3g} days, so set split.gap_days to auto (1 % of the span) or at "
                    f"most {span / 20:.2g} (e.g. `ratchet init ... --config FILE` with that split)"
                    ) if not auto and gap_days > span / 20 else ""
            used = f"gap {gap_days:g} days" + (" (auto)" if auto else "")
            raise RatchetError(
                f"split: the {name} split has only {len(part)} rows (time column '{time}', {used}{hint}). "
                "Use more data, a smaller gap or other split fractions in the config."
            )
    bounds = {f"{n}_{edge}": str(getattr(p[time], edge)()) for n, p in parts.items() for edge in ("min", "max")}
    train_rows, dev_rows, holdout_rows = (p.reset_index(drop=True) for p in parts.values())
    return Splits(train_rows, dev_rows, holdout_rows, boundaries=bounds, gap_days=float(gap_days))
