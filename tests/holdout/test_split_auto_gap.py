"""split_by_time(gap_days="auto"): min(1 day, 1 % of the span), to 3 significant digits, reported in Splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.errors import RatchetError
from holdout.split import auto_gap_days, span_days, split_by_time


def _frame(n: int, days: float) -> pd.DataFrame:
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.linspace(0, days, n), unit="D")
    return pd.DataFrame({"ts": ts, "amount": np.arange(n, dtype=float)})


@pytest.mark.parametrize("span, gap", [(0.0, 0.0), (1.82, 0.0182), (2.0, 0.02), (34.0, 0.34), (100.0, 1.0),
                                       (120.0, 1.0), (3650.0, 1.0), (1 / 3, 0.00333)])
def test_auto_gap_is_one_percent_of_the_span_at_most_a_day(span, gap):
    assert auto_gap_days(span) == gap


def test_auto_resolves_from_the_data_and_reports_the_number():
    f = _frame(3000, 2.0)
    s = split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days="auto")
    assert s.gap_days == 0.02 and span_days(f["ts"]) == pytest.approx(2.0)
    assert s.dev.ts.min() - s.train.ts.max() > pd.Timedelta(days=0.02)
    assert s.holdout.ts.min() - s.dev.ts.max() > pd.Timedelta(days=0.02)
    same = split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=0.02)
    pd.testing.assert_frame_equal(s.dev, same.dev)
    assert split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=0.1).gap_days == 0.1


def test_a_fixed_gap_too_wide_for_the_span_hints_at_auto():
    with pytest.raises(RatchetError) as info:
        split_by_time(_frame(3000, 1.82), time="ts", train=0.6, dev=0.2, gap_days=1.0)
    message = str(info.value)
    assert "the dev split has only 0 rows" in message and "gap 1 days" in message
    assert "spans only 1.82 days, so set split.gap_days to auto (1 % of the span) or at most 0.091" in message


def test_a_gap_as_long_as_a_split_hints_too():
    with pytest.raises(RatchetError, match="the dev split has only 0 rows .*set split.gap_days to auto"):
        split_by_time(_frame(3000, 2.0), time="ts", train=0.6, dev=0.2, gap_days=0.5)


def test_too_few_rows_under_auto_name_the_rows_not_the_gap():
    with pytest.raises(RatchetError) as info:
        split_by_time(_frame(300, 2.0), time="ts", train=0.6, dev=0.2, gap_days="auto")
    message = str(info.value)
    assert "gap 0.02 days (auto)" in message and "set split.gap_days" not in message
