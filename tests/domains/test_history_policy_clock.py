"""The shipped fraud policy reads its history fast without changing a decision: its clock (hour, weekend) equals
pandas' date accessors, and its numeric decide path equals the booster on the reindexed feature frame."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.fraud import policy


@pytest.mark.parametrize("zone", [None, "UTC", "America/New_York"])
def test_the_clock_equals_pandas_date_accessors(zone):
    rng = np.random.default_rng(1)
    ts = pd.Series(pd.to_datetime(rng.integers(-2 * 10**18, 4 * 10**18, 5000)))  # before 1970 too
    ts[::53] = pd.NaT
    if zone is not None:
        ts = ts.dt.tz_localize("UTC").dt.tz_convert(zone)
    hour, weekend = policy.clock(ts)
    np.testing.assert_array_equal(hour, (ts.dt.hour + ts.dt.minute / 60).to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(weekend, (ts.dt.day_of_week >= 5).to_numpy(dtype=np.float64))


def test_the_numeric_decide_equals_the_booster_on_the_reindexed_frame():
    rng = np.random.default_rng(4)
    n = 600
    frame = pd.DataFrame({"tx_id": np.arange(n), "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 40, n)), unit="D"), "customer_id": rng.integers(0, 30, n),
        "terminal_id": rng.integers(0, 12, n), "amount": np.round(rng.gamma(2.0, 30.0, n), 2)})
    train = frame.iloc[:400].assign(is_fraud=(rng.random(400) < 0.1).astype(int))
    model = policy.fit(train)
    no_terminal = frame.drop(columns="terminal_id")  # a column fit saw, missing here
    for rows, history in ((frame.iloc[[450]], frame.iloc[:450]), (frame.iloc[400:], frame.iloc[:400]),
                          (no_terminal.iloc[[500]], no_terminal.iloc[:500])):
        both = pd.concat([history, rows], ignore_index=True)
        X = policy.features(both).iloc[len(history):].reindex(columns=list(model.feature_names_in_))
        expected = model.get_booster().inplace_predict(X.to_numpy(dtype=np.float32)).astype(np.float64)
        np.testing.assert_array_equal(policy.decide(model, rows, history), expected)
