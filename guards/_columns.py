"""Column values as plain floats, the same way for every guard."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd


def datetime_seconds(series: pd.Series) -> npt.NDArray[np.float64]:
    """Seconds since the epoch (NaN for NaT); units differ across frames (ns, us), seconds do not."""
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert(None)
    seconds: npt.NDArray[np.float64] = ((series - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(
        dtype=float, na_value=np.nan)
    return seconds
