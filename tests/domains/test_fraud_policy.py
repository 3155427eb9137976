"""The fraud baseline policy: output contract, point-in-time features, fallbacks, determinism."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from domains.fraud import policy
from guards.static import scan

POLICY_FILE = Path(policy.__file__)


def decide(model, rows, history=None):
    """The policy's decide as the sandbox calls it; no history unless given (an empty frame of the rows' columns)."""
    return policy.decide(model, rows, rows.iloc[:0] if history is None else history)
DAY = pd.Timedelta(days=1)


def synthetic(seed: int = 0, n_customers: int = 60, days: int = 40) -> pd.DataFrame:
    """A small card stream: customers with their own usual amount; a theft is ~6x that amount."""
    rng = np.random.default_rng(seed)
    usual = rng.uniform(10, 80, n_customers)
    per_customer = rng.integers(20, 60, n_customers)
    customer = np.repeat(np.arange(n_customers), per_customer)
    n = len(customer)
    # Distinct seconds keep the time order free of ties, so any row order has one meaning.
    seconds = rng.choice(days * 86_400, size=n, replace=False)
    fraud = rng.random(n) < 0.05
    amount = np.abs(rng.normal(usual[customer], usual[customer] / 4)) + 0.5
    amount[fraud] *= 6
    frame = pd.DataFrame({
        "tx_id": np.arange(n, dtype=np.int64),
        "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(seconds, unit="s"),
        "customer_id": customer.astype(np.int64),
        "terminal_id": rng.integers(0, 40, n).astype(np.int64),
        "amount": np.round(amount, 2),
        "is_fraud": fraud.astype(np.int8),
    })
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame["tx_id"] = np.arange(n, dtype=np.int64)
    return frame


def split(frame: pd.DataFrame, share: float = 0.6) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    cut = int(len(frame) * share)
    train, rest = frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)
    return train, rest.drop(columns="is_fraud"), rest["is_fraud"].to_numpy()


@pytest.fixture(scope="module")
def fitted():
    train, rows, labels = split(synthetic())
    return policy.fit(train), rows, labels


def test_scores_are_probabilities_one_per_row(fitted):
    model, rows, labels = fitted
    scores = decide(model, rows)
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
    assert scores.shape == (len(rows),)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    # Not a constant: the model has learned the ~6x thefts.
    assert roc_auc_score(labels, scores) > 0.9


def test_threshold_is_a_probability():
    assert isinstance(policy.THRESHOLD, float) and 0.0 < policy.THRESHOLD < 1.0


def test_scores_follow_the_order_of_rows(fitted):
    model, rows, _ = fitted
    scores = decide(model, rows)
    perm = np.random.default_rng(1).permutation(len(rows))
    shuffled = rows.iloc[perm].reset_index(drop=True)
    np.testing.assert_array_equal(decide(model, shuffled), scores[perm])


def test_prefix_decisions_equal_full_decisions(fitted):
    model, rows, _ = fitted
    full = decide(model, rows)
    for cut in (1, 17, len(rows) // 2, len(rows) - 1):
        np.testing.assert_array_equal(decide(model, rows.iloc[:cut]), full[:cut], err_msg=f"prefix {cut}")


def test_prefix_check_catches_a_whole_frame_statistic(fitted, monkeypatch):
    model, rows, _ = fitted
    honest = policy.features

    def leaky(frame, levels=None):
        # Centring on the frame's mean lets later rows move earlier features: look-ahead.
        out = honest(frame, levels)
        out["amount"] = out["amount"] - out["amount"].mean()
        return out

    monkeypatch.setattr(policy, "features", leaky)
    half = len(rows) // 2
    assert not np.array_equal(decide(model, rows.iloc[:half]), decide(model, rows)[:half])


def test_windows_count_own_and_earlier_rows_only():
    t0 = pd.Timestamp("2025-03-01")
    rows = pd.DataFrame({
        "tx_id": [0, 1, 2, 3, 4],
        "ts": [t0, t0 + 0.5 * DAY, t0 + 2 * DAY, t0 + 8.5 * DAY, t0 + 8.5 * DAY],
        "customer_id": [7, 7, 7, 7, 9],
        "terminal_id": [1, 2, 1, 1, 1],
        "amount": [10.0, 30.0, 20.0, 100.0, 5.0],
    })
    X = policy.features(rows)
    assert X["customer_n_1d"].tolist() == [1, 2, 1, 1, 1]
    assert X["customer_n_7d"].tolist() == [1, 2, 3, 2, 1]
    assert X["customer_n_30d"].tolist() == [1, 2, 3, 4, 1]
    np.testing.assert_allclose(X["customer_mean_7d"], [10, 20, 20, 60, 5])
    # Usual amount before row 3 is mean(10, 30, 20) = 20; a first transaction has none.
    np.testing.assert_allclose(X["amount_vs_usual"], [np.nan, 3.0, 1.0, 5.0, np.nan])
    # Terminal 1 at 8.5 days has two rows at one instant: the first cannot see the second.
    assert X["terminal_n_7d"].tolist() == [1, 1, 2, 2, 3]
    assert X["terminal_n_1d"].tolist() == [1, 1, 1, 1, 2]


def test_later_rows_do_not_change_earlier_windows():
    frame = synthetic(seed=3).drop(columns="is_fraud")
    half = len(frame) // 2
    pd.testing.assert_frame_equal(policy.features(frame.iloc[:half]), policy.features(frame).iloc[:half])


@pytest.mark.parametrize("dropped", [["customer_id"], ["terminal_id"], ["customer_id", "terminal_id"]])
def test_works_without_entity_columns(dropped):
    train, rows, _ = split(synthetic(seed=4))
    model = policy.fit(train.drop(columns=dropped))
    scores = decide(model, rows.drop(columns=dropped))
    assert scores.shape == (len(rows),) and ((scores >= 0) & (scores <= 1)).all()
    # A model fitted with the ids still decides rows that lack them (imported data).
    full = policy.fit(train)
    assert decide(full, rows.drop(columns=dropped)).shape == (len(rows),)


def test_extra_numeric_columns_become_features():
    frame = synthetic(seed=5).drop(columns=["customer_id", "terminal_id"])
    rng = np.random.default_rng(5)
    for i in range(1, 6):
        frame[f"V{i}"] = rng.normal(size=len(frame))
    # Only V3 carries the signal, as a PCA feature of a real export might.
    frame["V3"] += 4.0 * frame["is_fraud"]
    frame["amount"] = np.round(rng.uniform(1, 100, len(frame)), 2)
    train, rows, labels = split(frame)
    model = policy.fit(train)
    assert {f"V{i}" for i in range(1, 6)} <= set(model.feature_names_in_)
    assert "tx_id" not in set(model.feature_names_in_)
    assert roc_auc_score(labels, decide(model, rows)) > 0.9


def test_same_seed_gives_identical_scores():
    train, rows, _ = split(synthetic(seed=6))
    first = decide(policy.fit(train), rows)
    second = decide(policy.fit(train.copy()), rows.copy())
    np.testing.assert_array_equal(first, second)


def test_fit_and_decide_are_quiet():
    train, rows, _ = split(synthetic(seed=7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decide(policy.fit(train), rows)


def test_history_then_rows_decide_as_one_batch(fitted):
    """Earlier events given as history and the later rows decided alone: the decisions the rows get within the
    whole batch, one at a time too (what the parity guard checks in the sandbox)."""
    model, rows, _ = fitted
    full = decide(model, rows)
    for cut in (1, len(rows) // 3, len(rows) - 1):
        np.testing.assert_array_equal(decide(model, rows.iloc[cut:], history=rows.iloc[:cut]), full[cut:])
    for i in (len(rows) // 2, len(rows) - 1):
        np.testing.assert_array_equal(decide(model, rows.iloc[i:i + 1], history=rows.iloc[:i]), full[i:i + 1])
    assert not np.array_equal(decide(model, rows.iloc[-50:]), full[-50:])  # without its history a row differs


def test_empty_rows_give_no_scores(fitted):
    model, rows, _ = fitted
    assert decide(model, rows.iloc[:0]).shape == (0,)


def test_policy_passes_the_static_scan():
    result = scan(POLICY_FILE.read_text(), allowed_imports=("numpy", "pandas", "xgboost", "math"))
    assert result.passed, result.detail
    assert policy.DEVICE == "auto" and policy.SEED == 0


def test_baseline_on_generated_data():
    data = pytest.importorskip("domains.fraud.data")
    frame = data.generate(0, 100_000).drop(columns="fraud_scenario")
    n = len(frame)
    train = frame.iloc[: int(0.6 * n)]
    held = frame.iloc[int(0.75 * n):]
    scores = decide(policy.fit(train), held.drop(columns="is_fraud"))
    labels = held["is_fraud"].to_numpy()
    blocked = scores >= policy.THRESHOLD
    # Compromised-terminal fraud (about half) is invisible without labels, so AUC stays well below 1.
    assert roc_auc_score(labels, scores) > 0.7
    assert 0.003 <= blocked.mean() <= 0.02, f"alert rate {blocked.mean():.4f}"
    assert labels[blocked].mean() > 0.4, "precision at THRESHOLD"


class _Built(Exception):
    """Raised by a stand-in classifier once it has seen its arguments, so nothing trains."""


@pytest.mark.parametrize(("device", "expected"), [("auto", "cpu"), ("cpu", "cpu"), ("cuda", "cuda")])
def test_device_is_passed_through(monkeypatch, device, expected):
    seen = {}

    def stand_in(**params):
        seen.update(params)
        raise _Built

    monkeypatch.setattr(policy, "DEVICE", device)
    monkeypatch.setattr(policy.xgboost, "XGBClassifier", stand_in)
    with pytest.raises(_Built):
        policy.fit(split(synthetic(seed=8))[0])
    # An unresolved "auto" (no sandbox) must still train, on the CPU; a resolved device is kept.
    assert seen["device"] == expected
    assert seen["tree_method"] == "hist" and seen["n_jobs"] == 2 and seen["random_state"] == policy.SEED


def test_text_columns_are_categories_learned_at_fit():
    """A channel that carries the signal is used; a level never seen in train, or a rare one, counts as
    missing instead of crashing decide."""
    frame = synthetic(seed=8)
    fraud = frame["is_fraud"].to_numpy() == 1
    rng = np.random.default_rng(8)
    online = rng.random(len(frame)) < np.where(fraud, 0.95, 0.05)
    frame["channel"] = pd.array(np.where(online, "online", "card_present"), dtype="string")
    train, rows, labels = split(frame)
    model = policy.fit(train)
    assert model.text_levels_["channel"] == sorted(model.text_levels_["channel"], key=lambda v: (
        -int((train["channel"] == v).sum()), v))
    assert roc_auc_score(labels, decide(model, rows)) > 0.9
    unseen = rows.assign(channel=pd.array(["kiosk"] * len(rows), dtype="string"))
    scores = decide(model, unseen)
    assert scores.shape == (len(rows),) and np.isfinite(scores).all()
