"""Drift: PSI bands and KS on numeric and categorical data; the score-drift guard."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from guards import GuardName
from guards.drift import band, check_score_drift, drift_report, ks, psi


def test_psi_same_distribution_is_small():
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=20_000), rng.normal(size=20_000)) < 0.01


def test_psi_shift_is_large():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20_000)
    assert 0.1 < psi(ref, rng.normal(0.4, 1.0, 20_000)) < 0.25
    assert psi(ref, rng.normal(1.5, 1.0, 20_000)) > 0.25


def test_psi_empty_bins_are_finite():
    ref = np.linspace(0, 1, 1000)
    value = psi(ref, np.full(500, 10.0))  # everything lands in the top bin
    assert np.isfinite(value) and value > 1.0


def test_psi_ties_and_spikes():
    ref = np.r_[np.zeros(900), np.linspace(0, 1, 100)]  # 90% zeros: quantile edges collapse
    assert psi(ref, ref.copy()) == pytest.approx(0.0)
    assert psi(ref, np.linspace(0, 1, 1000)) > 0.25
    top = np.r_[np.linspace(0, 1, 100), np.ones(900)]  # a spike at the maximum
    assert psi(top, top.copy()) == pytest.approx(0.0)
    assert psi(top, np.linspace(0, 1, 1000)) > 0.25


def test_psi_categorical_shares():
    ref = np.array(["a"] * 500 + ["b"] * 500, dtype=object)
    assert psi(ref, ref.copy()) == pytest.approx(0.0)
    assert psi(ref, np.array(["a"] * 900 + ["b"] * 100, dtype=object)) > 0.25
    assert psi(ref, np.array(["a"] * 500 + ["c"] * 500, dtype=object)) > 0.25  # a new category


def test_psi_missing_values_form_a_bin():
    ref = np.arange(1000.0)
    cur = ref.copy()
    cur[:400] = np.nan
    assert psi(ref, cur) > 0.25


def test_ks():
    rng = np.random.default_rng(2)
    stat, p = ks(rng.normal(size=2000), rng.normal(size=2000))
    assert p > 0.01 and stat < 0.1
    stat, p = ks(rng.normal(size=2000), rng.normal(1.0, 1.0, 2000))
    assert p < 1e-10 and stat > 0.3
    with pytest.raises(ValueError):
        ks(np.array(["a"], dtype=object), np.array(["b"], dtype=object))


def test_band_edges():
    assert band(0.05) == "stable" and band(0.1) == "watch" and band(0.25) == "watch"
    assert band(0.2501) == "alarm" and band(float("nan")) == "alarm"


def test_drift_report_per_column():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"amount": rng.gamma(2, 30, 5000), "hour": rng.integers(0, 24, 5000),
                        "channel": rng.choice(["web", "pos"], 5000)})
    cur = pd.DataFrame({"amount": rng.gamma(2, 60, 5000), "hour": rng.integers(0, 24, 5000),
                        "channel": rng.choice(["web", "pos"], 5000)})
    report = drift_report(ref, cur, ["amount", "hour", "channel"])
    assert report["amount"]["verdict"] == "alarm" and report["amount"]["ks_pvalue"] < 1e-6
    assert report["hour"]["verdict"] == "stable"
    assert report["channel"]["verdict"] == "stable" and report["channel"]["ks"] is None
    with pytest.raises(ValueError, match="'missing'"):
        drift_report(ref, cur, ["missing"])


def test_score_drift_guard_passes_stable_and_notes_watch():
    rng = np.random.default_rng(4)
    champ = rng.beta(2, 8, 10_000)
    stable = check_score_drift(champ, np.clip(champ + rng.normal(0, 0.005, 10_000), 0, 1))
    assert stable.passed and stable.name is GuardName.DRIFT and stable.figures["verdict"] == "stable"
    watch = check_score_drift(champ, rng.beta(2.6, 8, 10_000))
    assert watch.figures["verdict"] == "watch", watch.figures
    assert watch.passed and "watch" in watch.detail


def test_score_drift_guard_fails_on_alarm():
    rng = np.random.default_rng(5)
    result = check_score_drift(rng.beta(2, 8, 10_000), rng.beta(8, 2, 10_000))
    assert not result.passed and "PSI" in result.detail and "alarm level 0.25" in result.detail


def test_score_drift_on_team_names():
    rng = np.random.default_rng(6)
    champ = rng.choice(np.array(["a", "b", "c"], dtype=object), 3000)
    assert check_score_drift(champ, rng.choice(np.array(["a", "b", "c"], dtype=object), 3000)).passed
    assert not check_score_drift(champ, np.full(3000, "a", dtype=object)).passed


def test_datetimes_compare_in_seconds_across_units():
    ns = pd.Series(pd.date_range("2024-01-01", periods=2000, freq="h")).astype("datetime64[ns]")
    us = ns.astype("datetime64[us]")
    assert psi(ns, us) == pytest.approx(0.0)
    with_nat = us.copy()
    with_nat.iloc[:800] = pd.NaT
    assert psi(ns, with_nat) > 0.25  # missing times form their own bin, not a huge negative number
    later = pd.Series(pd.date_range("2024-06-01", periods=2000, freq="h"))
    assert band(psi(ns, later)) == "alarm"


def test_ks_on_large_samples_matches_scipy():
    """From an effective 10,000 rows the p-value is the limiting distribution's: same statistic as scipy, p-value
    within a few per cent; below that scipy's own."""
    from scipy import stats

    from guards.drift import ks

    rng = np.random.default_rng(4)
    for shift in (0.0, 0.005, 0.02):
        ref, cur = rng.random(30_000), rng.random(25_000) + shift
        expected = stats.ks_2samp(ref, cur)
        statistic, pvalue = ks(ref, cur)
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert pvalue == pytest.approx(expected.pvalue, rel=0.05, abs=1e-12)
    small = rng.random(500), rng.random(400) + 0.05
    assert ks(*small) == pytest.approx(tuple(stats.ks_2samp(*small)))


def test_score_drift_reuses_a_reference_only_while_its_content_is_the_same():
    """The champion's side is kept between experiments by content, never by identity: the same figures as computing
    both sides afresh, and an array changed in place is a new reference."""
    rng = np.random.default_rng(5)
    champion = np.round(rng.random(20_000), 2)
    champion[:3000] = 0.0  # a spike of its own
    for candidate in (champion ** 1.3, rng.random(20_000), np.where(rng.random(20_000) < 0.1, np.nan, champion)):
        result = check_score_drift(champion, candidate)
        assert result.figures["psi"] == psi(champion, candidate)
        assert (result.figures["ks"], result.figures["ks_pvalue"]) == ks(champion, candidate)
    before = check_score_drift(champion, champion).figures["psi"]
    champion[:10_000] = 1.0  # the same object, other decisions
    fresh = rng.random(20_000)
    after = check_score_drift(champion, fresh)
    assert before == 0.0 and after.figures["psi"] == psi(champion, fresh)
    assert (after.figures["ks"], after.figures["ks_pvalue"]) == ks(champion, fresh)
