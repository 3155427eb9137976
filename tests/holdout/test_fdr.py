"""The holdout test stream: LORD++ levels, the selection-corrected estimate, and the lord gate's replay."""
from __future__ import annotations

import numpy as np
import pytest

from holdout import fdr
from holdout.gate import lord, replay


def test_gamma_sums_to_one_and_decreases():
    terms = np.array([fdr.gamma(j) for j in range(1, 200_001)])
    assert np.all(np.diff(terms) < 0)
    # The tail past 200,000 terms of j^-1.6 is about 200000^-0.6 / 0.6 / zeta(1.6): small but not zero.
    assert 0.99 < terms.sum() < 1.0
    assert fdr.gamma(0) == 0.0


def test_lord_levels_spend_at_most_the_wealth_and_earn_it_back():
    alpha = 0.05
    # With no discovery, the levels of a whole run add up to at most W0 = alpha / 2.
    levels = [fdr.lord_level(t, [], alpha=alpha) for t in range(1, 2001)]
    assert sum(levels) <= alpha / 2 and levels[0] == pytest.approx(alpha / 2 * fdr.gamma(1))
    assert levels == sorted(levels, reverse=True)
    # A discovery at test 5 lifts the next test's level far above where the run had decayed to.
    after = fdr.lord_level(6, [5], alpha=alpha)
    assert after > 10 * fdr.lord_level(6, [], alpha=alpha)
    assert after == pytest.approx(alpha / 2 * fdr.gamma(6) + alpha / 2 * fdr.gamma(1))
    # Later discoveries earn the full alpha.
    assert fdr.lord_level(8, [5, 7], alpha=alpha) == pytest.approx(
        alpha / 2 * (fdr.gamma(8) + fdr.gamma(3)) + alpha * fdr.gamma(1))
    with pytest.raises(ValueError, match="before test"):
        fdr.lord_level(3, [3], alpha=alpha)
    with pytest.raises(ValueError, match="false-discovery rate"):
        fdr.lord_level(1, [], alpha=0.0)


def test_lord_controls_the_false_discovery_rate_on_a_null_heavy_stream():
    """200 runs of 200 independent tests, 5 % of them real (z mean 3): the share of false passes stays under 5 %."""
    rng = np.random.default_rng(0)
    fdps, true_passes = [], 0
    for _ in range(200):
        real = rng.random(200) < 0.05
        z = rng.normal(np.where(real, 3.0, 0.0))
        passes: list[int] = []
        false = 0
        for t in range(1, 201):
            if z[t - 1] >= fdr.critical_z(fdr.lord_level(t, passes, alpha=0.05)):
                passes.append(t)
                false += not real[t - 1]
        true_passes += len(passes) - false
        fdps.append(false / max(len(passes), 1))
    assert np.mean(fdps) <= 0.05
    assert true_passes / 200 > 1  # and it still finds real effects (about 1.4 of the 10 per run)


def test_selected_estimate_is_near_median_unbiased_and_covers():
    """Given selection z >= c, the hybrid estimate's median is near theta and its 90 % interval covers it at
    about the nominal rate; the raw z is far too high for a small theta."""
    rng = np.random.default_rng(1)
    c = fdr.critical_z(0.01)
    for theta in (1.0, 2.5, 4.0):
        z = rng.normal(theta, 1.0, 20_000)
        z = z[z >= c][:400]
        est = np.array([fdr.selected_estimate(v, c) for v in z])
        assert abs(np.median(est[:, 0]) - theta) < 0.35, theta
        assert 0.85 <= np.mean((est[:, 1] <= theta) & (theta <= est[:, 2])) <= 0.97, theta
        assert np.all(est[:, 1] <= est[:, 0]) and np.all(est[:, 0] <= est[:, 2])
    assert np.median(z) - 1.0 > 1.0  # the winner's curse the estimate removes
    # Just past the bar: the estimate is far below the raw z; far past it, nearly z itself.
    assert fdr.selected_estimate(c + 0.01, c)[0] < 0.5
    assert fdr.selected_estimate(c + 4.0, c)[0] == pytest.approx(c + 4.0, abs=0.05)
    with pytest.raises(ValueError, match="did not clear"):
        fdr.selected_estimate(c - 0.1, c)


def test_lord_gate_answers_only_a_pass_and_replays_exactly():
    common = dict(se=0.02, discoveries=[2], fdr=0.05, exponent=fdr.GAMMA_EXPONENT, to_beat=0.1, budget_left=10)
    passed = lord(gain=0.08, test=3, **common)
    assert passed.passed and passed.budget_left == 9
    assert passed.estimate < passed.gain and passed.lower < passed.estimate < passed.upper
    assert passed.answer == pytest.approx(0.1 + passed.estimate)
    failed = lord(gain=0.01, test=3, **common)
    assert not failed.passed and failed.answer is None and failed.estimate is None
    for answer in (passed, failed):
        entry = {**answer.to_dict(), "query": 3, "seed": 0}
        assert replay(entry, seed=0, query=3).to_dict() == answer.to_dict()
    forged = {**passed.to_dict(), "level": 0.5}
    assert replay(forged, seed=0, query=3).to_dict()["level"] != 0.5
    # No spread at all: the gain is past any bar (every changed row helps) and is reported as measured.
    flat = lord(gain=0.05, test=1, **{**common, "se": 0.0, "discoveries": []})
    assert flat.passed and flat.estimate == flat.lower == flat.gain == 0.05


def test_the_audit_holds_every_holdout_test_to_the_ledgers_stream(tmp_path):
    """Each recorded test must be the next of its seal's stream and name exactly the earlier passes: a forged
    entry that claims a pass it never had (a higher level) is refused even though it replays on its own."""
    from holdout.audit import _gate_replay
    from holdout.ledger import Kind, Ledger

    def write(path, discoveries_of_third):
        ledger = Ledger(path)
        ledger.append(Kind.SEAL, {"manifest_sha256": "x"})
        common = dict(se=0.02, fdr=0.05, exponent=fdr.GAMMA_EXPONENT, to_beat=0.0)
        tests = [(0.09, []), (0.01, [1]), (0.05, discoveries_of_third)]
        left = 100
        for t, (gain, passes) in enumerate(tests, start=1):
            answer = lord(gain=gain, test=t, discoveries=passes, budget_left=left, **common)
            left = answer.budget_left
            ledger.append(Kind.GATE, {**answer.to_dict(), "query": t, "seed": 0})
        return ledger.entries()

    honest = write(tmp_path / "honest.duckdb", [1])
    assert [e.data["passed"] for e in honest if e.kind == Kind.GATE] == [True, False, False]
    assert _gate_replay(honest).passed
    forged = write(tmp_path / "forged.duckdb", [1, 2])  # test 2 failed; claiming it passed raises test 3's level
    check = _gate_replay(forged)
    assert not check.passed and "does not follow the ledger's stream" in check.detail
