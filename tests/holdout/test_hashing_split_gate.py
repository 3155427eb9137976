import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdout import gate
from holdout.hashing import content_hash, hashes_in, row_hashes
from holdout.split import split_by_time
from optimizer.base.errors import RatchetError


def _frame(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tx_id": np.arange(n), "ts": pd.date_range("2025-01-01", periods=n, freq="h"),
        "amount": rng.gamma(2, 30, n).round(2), "is_fraud": (rng.random(n) < 0.02).astype("int8"),
    })


def test_content_hash_is_order_independent_but_content_sensitive():
    f = _frame()
    assert content_hash(f) == content_hash(f.sample(frac=1, random_state=1))
    g = f.copy()
    g.loc[2500, "amount"] += 0.01  # a change deep in the file (MLflow's digest would miss it)
    assert content_hash(g) != content_hash(f)
    assert content_hash(f.astype({"amount": "float32"})) != content_hash(f)  # schema counts


def test_row_hashes_deterministic():
    f = _frame()
    assert np.array_equal(row_hashes(f), row_hashes(f.copy()))


def test_split_is_ordered_with_gap():
    f = _frame()
    s = split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=2)
    assert s.train.ts.max() + pd.Timedelta(days=2) < s.dev.ts.min()
    assert s.dev.ts.max() + pd.Timedelta(days=2) < s.holdout.ts.min()
    assert len(s.train) == 1800


def test_split_refuses_tiny_parts():
    with pytest.raises(RatchetError, match="split has only"):
        split_by_time(_frame(300), time="ts", train=0.6, dev=0.2, gap_days=0)


def test_thresholdout_answers_dev_when_close_and_spends_on_disagreement():
    close = gate.thresholdout(dev_gain=0.10, holdout_gain=0.101, threshold=0.05, sigma=0.001, gamma=0.0,
                              budget_left=5, seed=1, query=1)
    assert not close.overflow and close.answer == 0.10 and close.budget_left == 5
    far = gate.thresholdout(dev_gain=0.10, holdout_gain=-0.2, threshold=0.05, sigma=0.001, gamma=0.0,
                            budget_left=5, seed=1, query=2)
    assert far.overflow and far.budget_left == 4 and abs(far.answer + 0.2) < 0.05 and far.answer != -0.2


def test_thresholdout_replay_is_exact():
    ans = gate.thresholdout(dev_gain=0.3, holdout_gain=0.0, threshold=0.05, sigma=0.01, gamma=0.002,
                            budget_left=3, seed=7, query=4)
    again = gate.replay(ans.to_dict(), seed=7, query=4)
    assert again == ans


def test_gain_se_pools_the_paired_differences_of_both_samples():
    """Only rows where two policies differ carry noise; the per-row variance is pooled over dev and holdout
    (the same pair on two samples) and scaled to the holdout's size."""
    rng = np.random.default_rng(0)
    dev_b, hold_b = rng.normal(size=3000), rng.normal(size=4000)
    assert gate.gain_se(dev_b, dev_b, hold_b, hold_b) == 0.0
    dev_a, hold_a = dev_b.copy(), hold_b.copy()
    dev_a[:30] += 50.0  # a heavy tail on dev only: 1 % of rows differ by a lot
    hold_a[:4] += 5.0
    d_dev, d_hold = dev_a - dev_b, hold_a - hold_b
    pooled = (len(d_dev) * d_dev.var() + len(d_hold) * d_hold.var()) / (len(d_dev) + len(d_hold))
    se = gate.gain_se(dev_a, dev_b, hold_a, hold_b)
    assert se == pytest.approx(np.sqrt(pooled / 4000))
    assert d_hold.std() / np.sqrt(4000) < se < d_dev.std() / np.sqrt(4000)
    assert gate.gain_se(dev_a, dev_b, np.array([]), np.array([])) == 0.0


def test_a_gain_is_an_improvement_whichever_way_the_metric_points():
    """One sign for the gate, its replay and a shadow trial: a higher value gains where higher is better, a lower
    one where lower is; bit for bit what `sign * (value - over)` gave, on one figure or per row."""
    assert gate.gain(0.75, 0.5, higher_is_better=True) == 0.25
    assert gate.gain(0.75, 0.5, higher_is_better=False) == -0.25  # a cost that rose lost
    assert gate.gain(0.1, 0.3, higher_is_better=False) == -1.0 * (0.1 - 0.3) > 0
    assert isinstance(gate.gain(np.float64(2.0), 1.0, higher_is_better=True), float)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50), rng.normal(size=50)
    for higher, sign in ((True, 1.0), (False, -1.0)):
        per_row = gate.gain(a, b, higher_is_better=higher)
        assert per_row.shape == (50,) and np.array_equal(per_row, sign * (a - b))


def test_ladder_round():
    assert gate.ladder_round(0.1234, 0.01) == pytest.approx(0.12)
    assert gate.ladder_round(0.5, 0.0) == 0.5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40)), st.lists(st.integers(0, 40)), st.booleans())
def test_hashes_in_answers_as_np_isin(values: list[int], pool: list[int], wide: bool):
    shift = np.uint64(2**63) if wide else np.uint64(0)  # hashes use the whole uint64 range
    a = np.array(values, dtype=np.uint64) + shift
    b = np.array(pool, dtype=np.uint64) + shift
    assert np.array_equal(hashes_in(a, b), np.isin(a, b))


@settings(max_examples=40, deadline=None)
@given(st.integers(300, 2000), st.integers(0, 2**16), st.sampled_from([0.0, 0.5, 3.0]), st.booleans())
def test_split_takes_the_rows_the_time_rules_define(n, seed, gap_days, shuffled):
    """train: up to the train quantile's time; dev: after it plus the gap, up to the dev quantile's; holdout:
    after that plus the gap. Times repeat (ties at the cuts) and the rows may come in any order."""
    rng = np.random.default_rng(seed)
    f = _frame(n, seed)
    f["ts"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24, n)), unit="min")
    if shuffled:
        f = f.sample(frac=1, random_state=seed)
    try:
        s = split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=gap_days)
    except RatchetError:
        return  # a part below 100 rows: refused, tested above
    ordered = f.sort_values("ts", kind="stable").reset_index(drop=True)
    ts, gap = ordered.ts, pd.Timedelta(days=gap_days)
    train_end, dev_end = ts.iloc[int(n * 0.6) - 1], ts.iloc[int(n * 0.8) - 1]
    for part, rows in ((s.train, ts <= train_end), (s.dev, (ts > train_end + gap) & (ts <= dev_end)),
                       (s.holdout, ts > dev_end + gap)):
        pd.testing.assert_frame_equal(part, ordered[rows].reset_index(drop=True))


def test_split_of_ordered_rows_shares_their_memory():
    f = _frame(20_000)
    s = split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=1)
    assert np.shares_memory(s.train["amount"].to_numpy(), f["amount"].to_numpy())
    assert np.shares_memory(s.holdout["amount"].to_numpy(), f["amount"].to_numpy())
    s.holdout.loc[0, "amount"] = -1.0  # copy-on-write: the caller's frame is untouched
    assert f["amount"].min() > 0


def test_split_refuses_missing_times():
    f = _frame()
    f.loc[10, "ts"] = pd.NaT
    with pytest.raises(RatchetError, match="1 missing times"):
        split_by_time(f, time="ts", train=0.6, dev=0.2, gap_days=1)
