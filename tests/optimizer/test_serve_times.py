"""A request's zone-less ISO 8601 times are read by numpy (the quick path) exactly as pandas reads them (naive is
UTC); anything else (zones, nulls, impossible days, far years) takes pandas' path and is refused as before."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.release.serve_rows import ColumnSpec, Refused, _plain_times, coerce

NAIVE = ColumnSpec("ts", np.dtype("datetime64[ns]"), False)


def _pandas(values: list) -> np.ndarray:
    return pd.to_datetime(values, format="ISO8601", utc=True).tz_convert(None).astype("datetime64[ns]").to_numpy()


def test_quick_times_equal_pandas_times():
    rng = np.random.default_rng(0)
    values = []
    for ns in rng.integers(-8 * 10**18, 7 * 10**18, 2000):
        t = pd.Timestamp(int(ns))
        fraction = ["", f".{t.microsecond:06d}", f".{t.value % 10**9:09d}", ".5"][int(rng.integers(0, 4))]
        values.append(t.strftime("%Y-%m-%dT%H:%M:%S") + fraction)
    values += ["2024-02-29T23:59:59.999999999", "1970-01-01T00:00:00", "1700-01-01T00:00:00"]
    quick = _plain_times(NAIVE, values)
    assert quick is not None
    np.testing.assert_array_equal(quick, _pandas(values))
    np.testing.assert_array_equal(np.asarray(coerce(NAIVE, values)), _pandas(values))


@pytest.mark.parametrize("values", [["2025-01-01T02:00:00+02:00"], ["2025-01-01T00:00:00Z"], ["2025-01-01"],
                                    ["2025-01-01 00:00:00"], ["2300-01-01T00:00:00"], ["2025-13-01T00:00:00"]])
def test_other_times_take_pandas_path(values):
    assert _plain_times(NAIVE, values) is None


def test_an_impossible_day_is_refused_by_row_as_before():
    assert _plain_times(NAIVE, ["2025-02-29T00:00:00"]) is None
    with pytest.raises(Refused, match="row 1"):
        coerce(NAIVE, ["2025-01-01T00:00:00", "2025-02-30T00:00:00"])


def test_a_zoned_column_never_takes_the_quick_path():
    zoned = ColumnSpec("ts", pd.DatetimeTZDtype("ns", "UTC"), False)
    assert _plain_times(zoned, ["2025-01-01T00:00:00"]) is None
    assert str(coerce(zoned, ["2025-01-01T00:00:00"]).dtype) == "datetime64[ns, UTC]"
