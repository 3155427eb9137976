"""The pricing scorer: off-policy estimates against the generator's true expected profit, the
output contract, the guardrail metrics and the support figures."""
from __future__ import annotations

import numpy as np
import pytest

from domains import Decisions, get_domain
from domains.pricing import data
from domains.pricing.adapter import PricingScoring
from holdout.split import split_by_time
from optimizer.base.errors import RatchetError

PARAMS = PricingScoring().model_dump()


def _scorer_and_eval(seed: int, rows: int = 20_000):
    frame = data.generate(seed, rows)
    parts = split_by_time(frame, time="ts", train=0.6, dev=0.2, gap_days=1.0)
    return get_domain("pricing").prepared(parts.train, PARAMS), parts.dev


def _segment_prices(rows, caps=(("bargain", 1.0), ("regular", 1.1), ("premium", 1.2))):
    mult = rows["segment"].astype(str).map(dict(caps)).to_numpy(dtype=float)
    return np.round(rows["ref_price"].to_numpy() * mult, 2)


POLICIES = {
    "reference": lambda rows: rows["ref_price"].to_numpy().round(2),
    "ten_percent_up": lambda rows: np.round(rows["ref_price"].to_numpy() * 1.1, 2),
    "by_segment": _segment_prices,
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_confidence_interval_covers_the_true_profit_in_most_seeds(policy):
    """The generator knows the hidden demand model, so each policy's true expected profit on the scored
    rows is known; the doubly robust 95 % interval must cover it in most of ten seeds."""
    covered, errors = 0, []
    for seed in range(10):
        scorer, rows = _scorer_and_eval(seed)
        prices = POLICIES[policy](rows)
        report = scorer.score(rows, Decisions(prices), PARAMS)
        truth = float(data.true_profit(rows, prices).mean())
        m = report.metrics
        covered += m["profit_ci_low"] <= truth <= m["profit_ci_high"]
        errors.append(m["profit"] - truth)
    assert covered >= 8, f"{policy}: interval covered the truth in {covered}/10 seeds"
    assert abs(np.mean(errors)) < 0.3, f"{policy}: mean error {np.mean(errors):+.3f} per offer"


def test_estimators_agree_and_contributions_average_to_the_primary():
    scorer, rows = _scorer_and_eval(0)
    report = scorer.score(rows, Decisions(_segment_prices(rows)), PARAMS)
    m = report.metrics
    assert report.value == pytest.approx(report.contributions.mean())
    assert m["profit"] == m["profit_dr"]
    assert abs(m["profit_snips"] - m["profit_dr"]) < 1.0 and abs(m["profit_ips"] - m["profit_dr"]) < 1.5
    snips = scorer.score(rows, Decisions(_segment_prices(rows)), {**PARAMS, "estimator": "snips"})
    assert snips.value == pytest.approx(m["profit_snips"])
    assert set(report.segments) == {"segment", "channel"} and report.segments["segment"]["premium"]["n"] > 0


def test_rarely_logged_prices_have_thin_support():
    scorer, rows = _scorer_and_eval(1)
    usual = scorer.score(rows, Decisions(POLICIES["reference"](rows)), PARAMS).metrics
    rare = scorer.score(rows, Decisions(np.round(rows["ref_price"].to_numpy() * 1.4, 2)), PARAMS).metrics
    assert usual["ess_share"] > 0.2 and usual["supported_share"] == 1.0
    assert rare["ess_share"] < PARAMS["min_ess_share"] and rare["supported_share"] == 0.0
    assert rare["extreme_price_share"] == 0.0  # 40 % from the reference: inside the 45 % bound
    assert rare["profit_ci_high"] - rare["profit_ci_low"] > 3 * (usual["profit_ci_high"] - usual["profit_ci_low"])


def test_guardrail_metrics():
    scorer, rows = _scorer_and_eval(2)
    ref = rows["ref_price"].to_numpy()
    south = (rows["region"] == "south").to_numpy()
    unfair = scorer.score(rows, Decisions(np.round(np.where(south, ref * 1.3, ref * 0.9), 2)), PARAMS).metrics
    fair = scorer.score(rows, Decisions(np.round(ref * 1.1, 2)), PARAMS).metrics
    assert fair["price_gap_protected"] < 1e-4  # cent rounding only
    assert unfair["price_gap_protected"] > 0.05
    extreme = scorer.score(rows, Decisions(np.round(ref * 1.5, 2)), PARAMS).metrics
    assert extreme["extreme_price_share"] == 1.0 and fair["extreme_price_share"] == 0.0
    assert extreme["conversion_ratio"] < 0.6 < fair["conversion_ratio"]


def test_output_contract_names_the_problem():
    domain = get_domain("pricing")
    rows = domain.policy_view(data.generate(0, 500), with_label=False)
    ref = rows["ref_price"].to_numpy()
    ok = np.round(ref * 1.1, 2)
    assert domain.check_decisions(Decisions(ok), rows, PARAMS) is None
    off = ok.copy()
    off[7] = ref[7] * 1.05
    assert "1 prices off the allowed grid (row 7" in domain.check_decisions(Decisions(off), rows, PARAMS)
    assert "NaN/inf" in domain.check_decisions(Decisions(np.where(np.arange(len(ok)) == 3, np.nan, ok)), rows, PARAMS)
    assert "for 500 rows" in domain.check_decisions(Decisions(ok[:-1]), rows, PARAMS)
    assert "type <U" in domain.check_decisions(Decisions(ok.astype(str)), rows, PARAMS)


def test_logged_action_and_protected_attribute_are_hidden_at_decision_time():
    domain = get_domain("pricing")
    frame = data.generate(0, 500)
    decide_view = domain.policy_view(frame, with_label=False)
    fit_view = domain.policy_view(frame, with_label=True)
    for hidden in ("offered_price", "propensity", "converted", "protected_group"):
        assert hidden not in decide_view.columns
    assert {"offered_price", "propensity", "converted"} <= set(fit_view.columns)
    assert "protected_group" not in fit_view.columns


def test_scoring_without_the_outcome_model_is_refused():
    rows = data.generate(0, 500)
    with pytest.raises(RatchetError, match="outcome model"):
        get_domain("pricing").score(rows, Decisions(rows["ref_price"].to_numpy()), PARAMS)


def test_generator_is_seeded_and_logs_the_propensity_of_the_offered_price():
    a, b = data.generate(3, 3000), data.generate(3, 3000)
    assert a.equals(b) and not a.equals(data.generate(4, 3000))
    probs = data.logging_propensities(a)
    assert np.allclose(probs.sum(axis=1), 1.0)
    idx = np.rint((a["offered_price"] / a["ref_price"]).to_numpy() * 10).astype(int) - 8
    assert np.allclose(a["propensity"].to_numpy(), probs[np.arange(len(a)), idx])
    assert 0.4 < a["converted"].mean() < 0.7
