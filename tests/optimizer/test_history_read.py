"""LiveHistory.read against a plain pandas reference: a served call reads its entities' earlier events, less its own
rows' ids (a retried event does not read itself), with integer and text ids."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from domains.history import History
from optimizer.workspace.history import LiveHistory

KEYS = ("customer_id", "terminal_id")
SOURCE = "HISTORY_DAYS = 30\ndef decide(model, rows, history):\n    pass\n"


def _live(events: pd.DataFrame) -> LiveHistory:
    live = LiveHistory.__new__(LiveHistory)
    live.store, live.lock = SimpleNamespace(id="tx_id"), threading.Lock()
    live.past = History.of(events, time="ts", keys=KEYS)
    return live


@pytest.mark.parametrize("text_ids", [False, True])
def test_a_call_reads_its_entities_past_less_its_own_events(text_ids):
    rng = np.random.default_rng(2)
    n = 1200
    ids = np.arange(n) if not text_ids else pd.array([f"e{i}" for i in range(n)], dtype="str")
    events = pd.DataFrame({"tx_id": ids, "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(
        rng.integers(0, 60 * 24, n), unit="h"), "customer_id": rng.integers(0, 25, n),
        "terminal_id": rng.integers(0, 15, n), "amount": rng.gamma(2.0, 30.0, n)})
    live = _live(events)
    for trial in range(60):
        rows = events.iloc[rng.integers(0, n, int(rng.choice([1, 1, 5])))].reset_index(drop=True)
        if trial % 2:  # new events (unseen ids) rather than retries of held ones
            fresh = np.arange(n + 10 * trial, n + 10 * trial + len(rows))
            rows = rows.assign(tx_id=fresh if not text_ids else pd.array([f"e{i}" for i in fresh], dtype="str"))
        got = live.read(SOURCE, rows)
        mine = events.customer_id.isin(rows.customer_id) | events.terminal_id.isin(rows.terminal_id)
        mine &= (events.ts >= rows.ts.min() - pd.Timedelta(days=30)) & (events.ts <= rows.ts.max())
        mine &= ~events.tx_id.isin(rows.tx_id)
        expected = events[mine].sort_values("ts", kind="stable", ignore_index=True)
        pd.testing.assert_frame_equal(got, expected)
        if trial % 2 == 0:
            assert not got.tx_id.isin(rows.tx_id).any()  # a retry never reads itself


def test_a_policy_without_history_reads_none():
    events = pd.DataFrame({"tx_id": [1], "ts": [pd.Timestamp("2024-01-01")], "customer_id": [1], "terminal_id": [1],
                           "amount": [1.0]})
    assert _live(events).read("def decide(model, rows):\n    pass\n", events) is None
