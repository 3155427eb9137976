"""The columnar history index against a plain pandas reference: every window, grown any way, cut at any stream
position, equals filtering the events frame by hand (entities, lookback, `before`), oldest first, ties in the order
held, in the index's dtypes (numpy, categorical, text, nullable integer and boolean columns)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.history import History

KEYS = ("customer_id", "terminal_id")


def _events(rng: np.random.Generator, n: int, *, text_ids: bool) -> pd.DataFrame:
    # Times on a coarse grid: many events share a time, so ties must keep the order held.
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h")
    customers = rng.integers(0, 30, n)
    terminals = rng.integers(0, 20, n)
    frame = pd.DataFrame({
        "tx_id": np.arange(n) if not text_ids else pd.array([f"tx-{i}" for i in range(n)], dtype="str"),
        "ts": ts,
        "customer_id": customers if not text_ids else pd.array([f"c{c}" for c in customers], dtype="str"),
        "terminal_id": terminals.astype(float),
        "amount": rng.gamma(2.0, 30.0, n),
        "channel": pd.Categorical(rng.choice(["web", "pos", "atm"], n), categories=["web", "pos", "atm"]),
        "merchant": pd.array(rng.choice(["a", "b", None], n), dtype="str"),
        "items": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 9, n)).tolist(), dtype="Int64"),
        "card_present": pd.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5).tolist(),
                                 dtype="boolean"),
    })
    frame.loc[rng.random(n) < 0.05, "terminal_id"] = np.nan  # a missing key joins no entity
    return frame


def _reference(events: pd.DataFrame, rows: pd.DataFrame, days: float, before: int | None) -> pd.DataFrame:
    held = events.iloc[:before] if before is not None else events
    mine = np.zeros(len(held), dtype=bool)
    for key in KEYS:
        mine |= held[key].isin(rows[key].dropna()).to_numpy()
    lo, hi = rows.ts.min() - pd.Timedelta(days=days), rows.ts.max()
    mine &= ((held.ts >= lo) & (held.ts <= hi)).to_numpy()
    return held[mine].sort_values("ts", kind="stable", ignore_index=True)


def _grown(events: pd.DataFrame, rng: np.random.Generator) -> History:
    history, at = History.of(events.iloc[:200], time="ts", keys=KEYS), 200
    while at < len(events):  # one at a time (a served event), a few, a batch, a bulk load past the per-list cut
        step = int(rng.choice([1, 1, 1, 2, 7, 63, 64, 300]))
        history.extend(events.iloc[at:at + step])
        at += step
    return history


@pytest.mark.parametrize("text_ids", [False, True])
def test_every_window_equals_the_pandas_reference(text_ids):
    rng = np.random.default_rng(11 if text_ids else 7)
    events = _events(rng, 2500, text_ids=text_ids)
    whole, grown = History.of(events, time="ts", keys=KEYS), _grown(events, rng)
    assert len(whole) == len(grown) == len(events)
    for trial in range(120):
        picked = rng.integers(0, len(events), int(rng.choice([1, 1, 3, 40])))
        rows = events.iloc[picked].reset_index(drop=True)
        if trial % 3 == 0:  # a new event: later than every held one, an unseen id, its entities' past to read
            rows = rows.assign(ts=rows.ts + pd.Timedelta(days=int(rng.integers(0, 5))))
        days = float(rng.choice([0.5, 7, 30, 60]))
        before = None if trial % 4 == 0 else int(rng.integers(0, len(events) + 1))
        expected = _reference(events, rows, days, before)
        for history in (whole, grown):
            got = history.window(rows, days, before=before)
            pd.testing.assert_frame_equal(got, expected, check_index_type=True)
            assert list(got.dtypes) == list(events.dtypes)


def test_an_empty_window_has_the_columns_and_dtypes():
    events = _events(np.random.default_rng(3), 50, text_ids=True)
    history = History.of(events, time="ts", keys=KEYS)
    stranger = events.iloc[[0]].assign(customer_id="nobody", terminal_id=np.nan)
    for got in (history.window(stranger, 30), history.window(events.iloc[[0]], 0),
                history.window(events.iloc[[5]], 30, before=0)):
        assert got.empty and list(got.columns) == list(events.columns)
        assert list(got.dtypes) == list(events.dtypes)


def test_a_key_of_another_type_matches_what_equal_values_match():
    """An integer id sent for a float key finds the same events as the float (as the binary search did); text for
    a numeric key finds none, never an error."""
    events = _events(np.random.default_rng(5), 300, text_ids=False)
    history = History.of(events, time="ts", keys=KEYS)
    row = events.iloc[[299]].reset_index(drop=True)
    as_int = row.assign(terminal_id=pd.array([int(row.terminal_id.fillna(3).iloc[0])], dtype="int64"),
                        customer_id=-1)
    as_float = as_int.assign(terminal_id=as_int.terminal_id.astype(float))
    pd.testing.assert_frame_equal(history.window(as_int, 60), history.window(as_float, 60))
    assert len(history.window(as_int, 60))
    as_text = as_int.assign(terminal_id=pd.array(["3"], dtype="str"), customer_id=pd.array(["5"], dtype="str"))
    assert history.window(as_text, 60).empty


def test_an_entity_with_many_served_events_reads_all_of_them_in_order():
    """One customer's events arriving one at a time, far more than the per-entity list holds before it joins the
    entity's array: the window is still every one of them, in the order held."""
    rng = np.random.default_rng(9)
    events = _events(rng, 400, text_ids=False).assign(customer_id=7)
    history = History.of(events.iloc[:10], time="ts", keys=KEYS)
    for i in range(10, len(events)):
        history.extend(events.iloc[[i]])
        if i % 37 == 0:
            row = events.iloc[[i]]
            pd.testing.assert_frame_equal(history.window(row, 90), _reference(events.iloc[:i + 1], row, 90, None))
    row = events.iloc[[0]].assign(ts=events.ts.max())
    pd.testing.assert_frame_equal(history.window(row, 365), _reference(events, row, 365, None))
