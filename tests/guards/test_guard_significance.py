"""Paired bootstrap: noise and seed-only changes are not gains; real gains are; more looks, harder."""
from __future__ import annotations

import math

import numpy as np
import pytest

from guards import GuardName
from guards.significance import adjusted_alpha, paired_bootstrap

N = 20_000


def fraud_like(rng: np.random.Generator, n: int = N) -> np.ndarray:
    """Per-row net savings: mostly 0, a few blocked frauds (+amount), some false declines (-5)."""
    out = np.zeros(n)
    fraud = rng.random(n) < 0.02
    out[fraud] = rng.gamma(2.0, 60.0, fraud.sum())
    out[~fraud & (rng.random(n) < 0.03)] = -5.0
    return out


def shifted(mean_shift: float, z: float, n: int = 5_000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Champion noise plus a candidate whose paired gain has exactly t-statistic `z` / mean `mean_shift`."""
    rng = np.random.default_rng(seed)
    champ = rng.normal(0.0, 1.0, n)
    noise = rng.normal(0.0, 1.0, n)
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    sd = mean_shift * math.sqrt(n) / z
    return champ + mean_shift + sd * noise, champ


def test_identical_policies_are_not_significant():
    champ = fraud_like(np.random.default_rng(0))
    result = paired_bootstrap(champ.copy(), champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=1)
    assert result.name is GuardName.SIGNIFICANCE and not result.passed
    assert result.figures["mean_diff"] == 0.0 and result.figures["n"] == N


def test_seed_only_change_is_not_significant():
    rng = np.random.default_rng(1)
    champ = fraud_like(rng)
    cand = champ.copy()
    flipped = rng.choice(N, 300, replace=False)  # a reseeded model flips a few borderline rows either way
    cand[flipped] = champ[flipped] + rng.choice([-5.0, 5.0], 300)
    result = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=7)
    assert not result.passed, result.detail
    assert "not significant" in result.detail
    assert result.figures["lower"] <= 0.0 <= result.figures["upper"]


def test_clear_improvement_is_significant():
    rng = np.random.default_rng(2)
    champ = fraud_like(rng)
    cand = champ.copy()
    caught = (champ == 0) & (rng.random(N) < 0.05)  # the candidate blocks frauds the champion missed
    cand[caught] += rng.gamma(2.0, 20.0, caught.sum())
    result = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=7)
    assert result.passed, result.detail
    assert result.figures["lower"] > 0 and result.figures["p_value"] < 0.05
    assert "gained" in result.detail


def test_min_effect_is_a_bar_to_clear():
    cand, champ = shifted(0.1, 8.0)
    assert paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=0).passed
    assert not paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.1, confidence=0.95, seed=0).passed


def test_lower_is_better_flips_the_sign():
    cand, champ = shifted(-0.1, 8.0)  # candidate lower: a gain when lower is better
    assert paired_bootstrap(cand, champ, higher_is_better=False, min_effect=0.0, confidence=0.95, seed=0).passed
    assert not paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=0).passed


@pytest.mark.parametrize("rule", ["spending", "bonferroni"])
def test_more_looks_make_it_harder(rule: str):
    cand, champ = shifted(0.05, 3.0)  # z = 3: clear at the first look, not after many
    first = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=0,
                             looks=1, alpha_spending=rule)
    late = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=0,
                            looks=200, alpha_spending=rule)
    assert first.passed, first.detail
    assert not late.passed, late.detail
    assert late.figures["confidence_used"] > first.figures["confidence_used"]


def test_spending_sums_to_alpha_and_is_default():
    total = sum(adjusted_alpha(0.95, k) for k in range(1, 100_000))
    assert total <= 0.05 and total > 0.0499
    assert adjusted_alpha(0.95, 4, "bonferroni") == pytest.approx(0.0125)
    cand, champ = shifted(0.05, 3.0)
    result = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=0, looks=2)
    assert result.figures["alpha_spending"] == "spending"
    assert result.figures["confidence_used"] == pytest.approx(1 - 0.05 * 6 / (math.pi**2 * 4))


def test_deterministic_under_seed():
    cand, champ = shifted(0.02, 2.0)
    a = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=5)
    b = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=5)
    assert a == b


def test_bootstrap_is_chunked_for_large_inputs():
    rng = np.random.default_rng(0)
    champ = rng.normal(size=60_000)
    result = paired_bootstrap(champ + 0.5, champ, higher_is_better=True, min_effect=0.0, confidence=0.95,
                              seed=0, n_boot=2000)
    assert result.passed and result.figures["n_boot"] == 2000


def test_unpaired_or_broken_inputs_fail_closed():
    a = np.zeros(10)
    assert not paired_bootstrap(a, np.zeros(9), higher_is_better=True, min_effect=0, confidence=0.95, seed=0).passed
    b = a.copy()
    b[3] = np.nan
    broken = paired_bootstrap(b, a, higher_is_better=True, min_effect=0, confidence=0.95, seed=0)
    assert not broken.passed and "NaN" in broken.detail
    with pytest.raises(ValueError):
        paired_bootstrap(a, a, higher_is_better=True, min_effect=0, confidence=0.95, seed=0, alpha_spending="x")


def test_refit_noise_widens_the_bound():
    """Rows alone say a gain is real; two fits of one policy differing by more than the gain say it is not."""
    rng = np.random.default_rng(3)
    champ = rng.normal(0.0, 1.0, 5000)
    cand = champ + 0.05 + rng.normal(0.0, 0.2, 5000)
    rows_only = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=1)
    with_refits = paired_bootstrap(cand, champ, higher_is_better=True, min_effect=0.0, confidence=0.95, seed=1,
                                   model_sd=0.05)
    assert rows_only.passed and not with_refits.passed
    assert with_refits.figures["lower"] < rows_only.figures["lower"] and with_refits.figures["model_sd"] == 0.05
    assert "refit noise 0.05" in with_refits.detail


def test_the_three_bootstrap_draws_agree_in_distribution(monkeypatch):
    """Rows resampled one by one, only the nonzero rows drawn, or the counts per distinct value drawn: the same
    resample means (two-sample KS, and the moments a bootstrap's bounds come from)."""
    from scipy import stats

    import guards._bootstrap as b

    rng = np.random.default_rng(7)
    # A fraud-like paired difference: mostly 0, a decline cost of +-5, a few fraud amounts.
    values = np.where(rng.random(20_000) < 0.3, rng.choice([-5.0, 5.0], 20_000), 0.0)
    values[rng.choice(20_000, 40, replace=False)] = rng.uniform(20, 900, 40)
    levels, counts = np.unique(values, return_counts=True)
    draws = {"dense": b._dense(values, 3000, np.random.default_rng(1)),
             "sparse": b._sparse(values, 3000, np.random.default_rng(2)),
             "grouped": b._grouped(levels, counts, 3000, np.random.default_rng(3))}
    expected_sd = values.std() / np.sqrt(len(values))
    for name, means in draws.items():
        assert means.mean() == pytest.approx(values.mean(), abs=4 * expected_sd / np.sqrt(3000)), name
        assert means.std() == pytest.approx(expected_sd, rel=0.08), name
    assert stats.ks_2samp(draws["grouped"], draws["dense"]).pvalue > 0.001
    assert stats.ks_2samp(draws["grouped"], draws["sparse"]).pvalue > 0.001
    taken = []
    monkeypatch.setattr(b, "_grouped", lambda *a: taken.append("grouped") or np.zeros(a[2]))
    b.bootstrap_means(values, 10, np.random.default_rng(0))
    assert taken == ["grouped"]  # 42 distinct values among 6,000 nonzero rows


def test_the_p_value_is_the_deciding_tests_and_agrees_with_the_verdict():
    """Heavy-tailed differences (a few frauds worth hundreds): whatever bound decides, p <= alpha exactly when the
    gain passes, and the figures name that test; refit noise widens both."""
    rng = np.random.default_rng(3)
    for k in range(40):
        diff = np.zeros(20_000)
        rows = rng.choice(len(diff), size=40, replace=False)
        diff[rows] = rng.choice([-5.0, 5.0], size=40) + rng.pareto(1.5, size=40) * rng.choice([0, 60], size=40)
        for model_sd in (0.0, 0.002):
            r = paired_bootstrap(diff, np.zeros_like(diff), higher_is_better=True, min_effect=0.0, confidence=0.95,
                                 seed=k, alpha_spending="screen", model_sd=model_sd)
            assert (r.figures["p_value"] <= 0.05) == r.passed, (k, r.figures)
            assert r.figures["test"].startswith("paired ") and ("refit" in r.figures["test"]) == (model_sd > 0)
            assert ("dev screen" in r.detail) and f"p {r.figures['p_value']:.2g}" in r.detail
