"""Look-ahead: decisions before the cut must not change when later rows are given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from guards import GuardName
from guards.lookahead import check_point_in_time, cut_rows


def rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"customer_id": rng.integers(0, 20, n), "amount": rng.gamma(2.0, 30.0, n)})


def honest_decide(frame: pd.DataFrame) -> np.ndarray:
    """Point in time: each row compared with the customer's earlier spending only."""
    past_mean = frame.groupby("customer_id")["amount"].transform(lambda s: s.shift().expanding().mean())
    return (frame["amount"] / past_mean.fillna(frame["amount"])).clip(0, 5).to_numpy() / 5


def peeking_decide(frame: pd.DataFrame) -> np.ndarray:
    """Looks ahead: ranks each amount within ALL rows given, later ones included."""
    return frame["amount"].rank(pct=True).to_numpy()


def run(decide) -> tuple[np.ndarray, np.ndarray]:
    frame = rows()
    cut = cut_rows(len(frame))
    return decide(frame.iloc[:cut].reset_index(drop=True)), decide(frame)[:cut]


def test_point_in_time_policy_passes():
    result = check_point_in_time(*run(honest_decide))
    assert result.passed, result.detail
    assert result.name is GuardName.LOOKAHEAD and result.figures["differing"] == 0 and result.figures["rows"] == 200


def test_peeking_policy_fails_with_first_index_and_values():
    alone, full = run(peeking_decide)
    result = check_point_in_time(alone, full)
    assert not result.passed
    i = result.figures["first_index"]
    assert alone[i] != full[i] and not np.any(np.abs(alone[:i] - full[:i]) > 1e-9)
    assert f"first at row {i}" in result.detail and repr(float(alone[i])) in result.detail
    assert result.figures["differing"] > 100


def test_float_noise_within_atol_passes_and_beyond_fails():
    a = np.linspace(0, 1, 50)
    assert check_point_in_time(a, a + 1e-12).passed
    assert not check_point_in_time(a, a + 1e-6).passed
    assert check_point_in_time(a, a + 1e-6, atol=1e-5).passed


def test_nan_equals_nan_but_not_a_number():
    a = np.array([0.1, np.nan, 0.3])
    assert check_point_in_time(a, a.copy()).passed
    assert not check_point_in_time(a, np.array([0.1, 0.2, 0.3])).passed


def test_strings_compare_exactly():
    teams = np.array(["fraud_ops", "billing", "billing"], dtype=object)
    assert check_point_in_time(teams, teams.copy()).passed
    changed = np.array(["fraud_ops", "billing", "Billing"], dtype=object)
    result = check_point_in_time(teams, changed)
    assert not result.passed and "first at row 2: 'billing'" in result.detail and "'Billing'" in result.detail


def test_length_mismatch_fails_closed():
    result = check_point_in_time(np.zeros(5), np.zeros(4))
    assert not result.passed and "(5,)" in result.detail


def test_cut_rows():
    assert cut_rows(400) == 200
    assert cut_rows(2) == 1
    assert cut_rows(10, 0.99) == 9 and cut_rows(10, 0.01) == 1
    with pytest.raises(ValueError):
        cut_rows(1)
    with pytest.raises(ValueError):
        cut_rows(10, 1.0)
