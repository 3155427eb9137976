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
