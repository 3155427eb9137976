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


def split_by_time(frame: pd.DataFrame, *, time: str, train: float, dev: float, gap_days: float) -> Splits:
    """Cut at row quantiles of time; rows inside a gap belong to no split.

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
    gap = pd.Timedelta(days=gap_days)
    train_end = ts.iloc[int(len(ts) * train) - 1]
    dev_end = ts.iloc[int(len(ts) * (train + dev)) - 1]
    after = lambda t: int(ts.searchsorted(t, side="right"))  # noqa: E731 - the first row later than t
    parts = {
        "train": ordered.iloc[:after(train_end)],
        "dev": ordered.iloc[after(train_end + gap):after(dev_end)],
        "holdout": ordered.iloc[after(dev_end + gap):],
    }
    for name, part in parts.items():
        if len(part) < 100:
            span = (ts.iloc[-1] - ts.iloc[0]) / pd.Timedelta(days=1)
            hint = (f"; the data spans only {span:.3g} days, so set split.gap_days to at most {span / 20:.2g} "
                    "(e.g. `ratchet init ... --config FILE` with that split)") if gap_days * 4 > span else ""
            raise RatchetError(
                f"split: the {name} split has only {len(part)} rows (time column '{time}', gap {gap_days} days{hint}). "
                "Use more data, a smaller gap or other split fractions in the config."
            )
    bounds = {f"{n}_{edge}": str(getattr(p[time], edge)()) for n, p in parts.items() for edge in ("min", "max")}
    return Splits(*(p.reset_index(drop=True) for p in parts.values()), boundaries=bounds)
