"""The confidence sequence holds at every look: read after each of 20 batches, an interval whose mean is exactly 0
excludes 0 far less often than its level allows, where the fixed-sample bound read as often errs several times as
often; and its width shrinks as observations come in, so a real difference is found."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from guards.anytime import radius, sequence, tuned_rho


def _peeks(rng, trials=300, n=4000, looks=20, alpha=0.05, shift=0.0):
    """How often (sequence, fixed-sample) a one-sided bound cleared 0 at some look, on heavy-tailed (t, 3 df)
    observations with mean `shift`."""
    ends = np.linspace(n / looks, n, looks).astype(int)
    rho, z = tuned_rho(n, alpha), stats.norm.ppf(1 - alpha)
    hits = {"sequence": 0, "fixed": 0}
    for _ in range(trials):
        x = rng.standard_t(3, size=n) + shift
        s, q = np.cumsum(x)[ends - 1], np.cumsum(x * x)[ends - 1]
        mean = s / ends
        sd = np.sqrt((q - ends * mean**2) / (ends - 1))
        cs = np.array([radius(int(k), float(v), alpha, rho) for k, v in zip(ends, sd)])
        hits["sequence"] += bool((mean - cs > 0).any())
        hits["fixed"] += bool((mean - z * sd / np.sqrt(ends) > 0).any())
    return {k: v / trials for k, v in hits.items()}


def test_reading_after_every_batch_keeps_the_sequence_within_its_level_and_not_the_fixed_bound():
    rates = _peeks(np.random.default_rng(7))
    assert rates["sequence"] <= 0.05
    assert rates["fixed"] > 0.12 and rates["fixed"] > 3 * max(rates["sequence"], 0.01)


def test_a_real_difference_is_found_and_the_interval_narrows():
    rates = _peeks(np.random.default_rng(8), trials=100, shift=0.15)
    assert rates["sequence"] > 0.8
    rng = np.random.default_rng(9)
    x = rng.normal(0.0, 1.0, 20_000)
    widths = [sequence(x[:n], alpha=0.05, tuned_for=20_000) for n in (1000, 5000, 20_000)]
    assert widths[0].upper - widths[0].lower > widths[1].upper - widths[1].lower > widths[2].upper - widths[2].lower
    assert all(w.lower < 0 < w.upper for w in widths)
    # The price of looking at will: tuned for 20,000, the sequence there is about 1.55 times as wide as the fixed
    # 95 % two-sided interval (the normal mixture's known cost), not several times.
    fixed = stats.norm.ppf(0.975) * x.std(ddof=1) / math.sqrt(x.size)
    assert 1.3 * fixed < (widths[2].upper - widths[2].lower) / 2 < 1.8 * fixed


def test_degenerate_inputs_give_no_bound_or_the_exact_mean():
    assert sequence(np.array([]), alpha=0.05, tuned_for=100).lower == -math.inf
    assert sequence(np.array([3.0]), alpha=0.05, tuned_for=100).upper == math.inf
    zero = sequence(np.zeros(500), alpha=0.05, tuned_for=100)
    assert zero.lower == zero.upper == 0.0
    with pytest.raises(ValueError):
        tuned_rho(100, 1.5)
