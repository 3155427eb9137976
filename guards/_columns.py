"""Column values as plain floats, the same way for every guard."""
from __future__ import annotations

import numpy as np
import pandas as pd


def datetime_seconds(series: pd.Series) -> np.ndarray:
    """Seconds since the epoch (NaN for NaT); units differ across frames (ns, us), seconds do not."""
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert(None)
    return ((series - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(dtype=float, na_value=np.nan)
