"""Segments: a gain on average may not hide a segment the candidate clearly hurt."""
from __future__ import annotations

import numpy as np
import pytest

from guards import GuardName
from guards.segments import check_segments

N = 6_000


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    champ = rng.normal(0.0, 2.0, N)
    band = rng.choice(np.array(["low", "mid", "high"]), N, p=[0.5, 0.35, 0.15])
    tenure = np.where(rng.random(N) < 0.3, "new", "established")
    tiny = np.where(np.arange(N) < 50, "rare", "common")  # 50 rows: below min_rows, never tested
    return rng, champ, {"amount_band": band, "customer_tenure": tenure, "tiny": tiny}


def test_uniform_gain_passes():
    rng, champ, segs = data()
    cand = champ + 0.2 + rng.normal(0, 0.5, N)
    result = check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.0, seed=1, metric="net_savings")
    assert result.passed, result.detail
    assert result.name is GuardName.SEGMENT
    assert result.figures["amount_band=high.n"] == int((segs["amount_band"] == "high").sum())
    assert "tiny=rare.n" not in result.figures and result.figures["segments_skipped"] == 1


def test_noise_only_change_passes():
    rng, champ, segs = data(1)
    cand = champ + rng.normal(0, 0.5, N)  # zero-mean noise in every segment
    assert check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.0, seed=1).passed


def test_hidden_segment_loss_fails_and_is_named():
    rng, champ, segs = data(2)
    high = segs["amount_band"] == "high"
    cand = champ + 0.4 + rng.normal(0, 0.5, N)
    cand[high] = champ[high] - 1.2 + rng.normal(0, 0.5, high.sum())  # the average still rises
    assert (cand - champ).mean() > 0
    result = check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.1, seed=1, metric="net_savings")
    assert not result.passed
    assert "segment amount_band=high: net_savings per row fell by" in result.detail
    assert "amount_band=low" not in result.detail
    assert result.figures["amount_band=high.mean_diff"] == pytest.approx(-1.2, abs=0.1)
    assert result.figures["amount_band=high.upper"] < -0.1


def test_loss_within_tolerance_passes():
    rng, champ, segs = data(3)
    high = segs["amount_band"] == "high"
    cand = champ.copy()
    cand[high] -= 0.05
    assert check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.1, seed=1).passed
    assert not check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.0, seed=1).passed


def test_small_segments_are_not_judged():
    rng, champ, segs = data(4)
    rare = segs["tiny"] == "rare"
    cand = champ.copy()
    cand[rare] -= 10.0  # 50 rows: diluted below the tolerance in every large segment
    assert check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.5, seed=1).passed
    caught = check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.5, seed=1, min_rows=40)
    assert not caught.passed and "tiny=rare" in caught.detail


def test_lower_is_better_direction():
    rng, champ, segs = data(5)
    new = segs["customer_tenure"] == "new"
    cand = champ.copy()
    cand[new] += 1.0  # higher cost for new customers
    worse = check_segments(cand, champ, segs, higher_is_better=False, tolerance=0.1, seed=1, metric="cost")
    assert not worse.passed and "segment customer_tenure=new: cost per row rose by" in worse.detail
    assert check_segments(cand, champ, segs, higher_is_better=True, tolerance=0.1, seed=1).passed


def test_mismatched_inputs_fail_closed():
    _, champ, segs = data()
    assert not check_segments(champ[:-1], champ, segs, higher_is_better=True, tolerance=0, seed=0).passed
    bad = {"amount_band": segs["amount_band"][:-1]}
    result = check_segments(champ, champ, bad, higher_is_better=True, tolerance=0, seed=0)
    assert not result.passed and "amount_band" in result.detail
