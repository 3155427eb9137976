"""The history contract: what a call may read, read from the policy file without running it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.history import History, LookbackError, declared


def _events() -> pd.DataFrame:
    ts = pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-20", "2024-02-10", "2024-02-11", "2024-02-12"])
    return pd.DataFrame({"tx_id": ["a", "b", "c", "d", "e", "f"], "ts": ts,
                         "customer_id": ["c1", "c2", "c1", "c1", "c3", "c2"],
                         "terminal_id": ["t1", "t1", "t2", "t3", "t2", "t9"], "amount": np.arange(6.0)})


def test_a_window_holds_the_rows_entities_within_the_lookback_in_stream_order():
    history = History.of(_events(), time="ts", keys=("customer_id", "terminal_id"))
    row = pd.DataFrame({"tx_id": ["z"], "ts": [pd.Timestamp("2024-02-11 12:00")], "customer_id": ["c1"],
                        "terminal_id": ["t2"], "amount": [1.0]})
    # c1's a (too old for 30 days), c, d; t2's c and e; never c2's or t1's events.
    assert history.window(row, 30).tx_id.tolist() == ["c", "d", "e"]
    assert history.window(row, 60).tx_id.tolist() == ["a", "c", "d", "e"]
    assert history.window(row, 30, before=3).tx_id.tolist() == ["c"]  # the store as it was after 3 events
    assert history.window(row, 0).empty and list(history.window(row, 0).columns) == list(row.columns)
    later = row.assign(ts=pd.Timestamp("2024-02-10 12:00"))
    assert history.window(later, 30).tx_id.tolist() == ["c", "d"]  # nothing after the call's last event


def test_extending_answers_as_if_built_at_once():
    events = _events()
    whole = History.of(events, time="ts", keys=("customer_id", "terminal_id"))
    grown = History.of(events.iloc[:2], time="ts", keys=("customer_id", "terminal_id"))
    for i in range(2, len(events)):
        grown.extend(events.iloc[i:i + 1])
    rows = events.iloc[[5, 3]].assign(ts=pd.Timestamp("2024-03-01"))
    pd.testing.assert_frame_equal(whole.window(rows, 90), grown.window(rows, 90))
    assert len(grown) == len(events)


@pytest.mark.parametrize("source, expected", [
    ("def decide(model, rows):\n    pass\n", (0.0, False)),
    ("HISTORY_DAYS = 30\ndef decide(model, rows, history):\n    pass\n", (30.0, True)),
    ("HISTORY_DAYS: float = 7.5\ndef decide(model, rows, *rest):\n    pass\n", (7.5, True)),
])
def test_the_lookback_is_read_without_running_the_file(source, expected):
    assert declared(source) == expected


@pytest.mark.parametrize("source, words", [
    ("HISTORY_DAYS = 400\n", "in [0, 366]"),
    ("HISTORY_DAYS = max(1, 2)\n", "literal number"),
    ("HISTORY_DAYS = True\n", "literal number"),
    ("HISTORY_DAYS = 1\nHISTORY_DAYS = 2\n", "more than once"),
])
def test_a_lookback_the_parent_cannot_read_is_refused_by_name(source, words):
    with pytest.raises(LookbackError, match="HISTORY_DAYS") as err:
        declared(source)
    assert words in str(err.value)


def test_a_grown_index_answers_every_window_as_one_built_at_once():
    """Events arriving one or a few at a time (the tail, then indexed parts merged like a binary counter) give the
    same windows, cut at any stream position, as an index built from all of them."""
    rng = np.random.default_rng(5)
    n = 1500
    events = pd.DataFrame({"tx_id": np.arange(n), "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 90, n)), unit="D"), "customer_id": rng.integers(0, 40, n),
        "terminal_id": rng.integers(0, 25, n), "amount": rng.gamma(2.0, 30.0, n)})
    keys = ("customer_id", "terminal_id")
    whole = History.of(events, time="ts", keys=keys)
    grown, at = History.of(events.iloc[:300], time="ts", keys=keys), 300
    while at < n:
        step = int(rng.choice([1, 1, 1, 7, 90, 300]))
        grown.extend(events.iloc[at:at + step])
        at += step
    for _ in range(40):
        i = int(rng.integers(0, n))
        row, before = events.iloc[[i]], int(rng.integers(0, n + 1))
        pd.testing.assert_frame_equal(grown.window(row, 30, before=before), whole.window(row, 30, before=before))
        expected = events.iloc[:before]
        expected = expected[((expected.customer_id == row.customer_id.iloc[0])
                             | (expected.terminal_id == row.terminal_id.iloc[0]))
                            & (expected.ts >= row.ts.iloc[0] - pd.Timedelta(days=30)) & (expected.ts <= row.ts.iloc[0])]
        assert sorted(whole.window(row, 30, before=before).tx_id) == sorted(expected.tx_id)
