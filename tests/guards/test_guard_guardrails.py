"""Guardrails by kind: a capacity is an absolute ceiling, a harm is held to the original baseline (tolerance)
and to the champion (a relative margin per step), a fairness limit bounds a gap between groups."""
from __future__ import annotations

import pytest

from domains.contract import GuardrailSpec
from domains.fraud.adapter import FraudDomain
from guards.guardrails import check_guardrails

FDR = GuardrailSpec("false_decline_rate", higher_is_better=False, kind="harm", tolerance=0.005, margin=0.5)
ALERTS = GuardrailSpec("alert_rate", higher_is_better=False, kind="capacity", limit=0.03)
GAP = GuardrailSpec("false_decline_gap", higher_is_better=False, kind="fairness", limit=0.01, required=False)
RECALL = GuardrailSpec("fraud_recall", higher_is_better=True, kind="harm", tolerance=0.05, margin=0.1)


def test_fraud_defaults_are_these_kinds():
    kinds = {s.metric: s.kind for s in FraudDomain.guardrails}
    assert kinds == {"false_decline_rate": "harm", "alert_rate": "capacity", "false_decline_gap": "fairness"}


def test_a_model_replacing_a_champion_that_alerts_on_nothing_passes():
    """The champion blocks nothing: 0 alerts, 0 false declines. An honest model alerting on 0.67 % at 92 %
    precision raises both from zero; neither is a capacity or harm problem."""
    nothing = {"alert_rate": 0.0, "false_decline_rate": 0.0, "false_decline_gap": 0.0}
    model = {"alert_rate": 0.0067, "false_decline_rate": 0.0067 * 0.08, "false_decline_gap": 0.0003}
    result = check_guardrails(model, nothing, nothing, [FDR, ALERTS, GAP])
    assert result.passed, result.detail
    assert result.figures["false_decline_rate.step_allowance"] == pytest.approx(0.0025)  # 0.5 x the tolerance


def test_flagging_everything_breaks_the_capacity():
    base = {"alert_rate": 0.01}
    result = check_guardrails({"alert_rate": 1.0}, base, base, [ALERTS])
    assert not result.passed
    assert "guardrail alert_rate (capacity" in result.detail and "breaks the limit (must be at most 0.03)" in result.detail


def test_capacity_ignores_the_champion_and_baseline():
    result = check_guardrails({"alert_rate": 0.029}, {"alert_rate": 0.0}, {"alert_rate": 0.0}, [ALERTS])
    assert result.passed, result.detail
    assert "alert_rate.margin" not in result.figures


def test_trading_false_declines_for_savings_fails_on_the_tolerance():
    base = champ = {"false_decline_rate": 0.002}
    result = check_guardrails({"false_decline_rate": 0.012}, champ, base, [FDR])
    assert not result.passed
    assert "worse than the original baseline 0.002, beyond the tolerance 0.005" in result.detail


def test_one_big_step_fails_on_the_relative_margin():
    """Champion 0.02 (above the tolerance): one step may add at most 50 % of it, i.e. 0.01."""
    base = champ = {"false_decline_rate": 0.02}
    relative = GuardrailSpec("false_decline_rate", higher_is_better=False, kind="harm", margin=0.5)
    assert check_guardrails({"false_decline_rate": 0.029}, champ, base, [relative]).passed
    result = check_guardrails({"false_decline_rate": 0.031}, champ, base, [relative])
    assert not result.passed
    assert "worse than the champion 0.02, beyond the margin 0.5 (relative: at most 0.01 in one step)" in result.detail


def test_improvement_is_never_a_failure():
    base = champ = {"false_decline_rate": 0.020, "fraud_recall": 0.6}
    cand = {"false_decline_rate": 0.001, "fraud_recall": 0.9}
    assert check_guardrails(cand, champ, base, [FDR, RECALL]).passed


def test_direction_respects_higher_is_better():
    base = champ = {"fraud_recall": 0.60}
    assert not check_guardrails({"fraud_recall": 0.50}, champ, base, [RECALL]).passed
    lower_better = GuardrailSpec("fraud_recall", higher_is_better=False, kind="harm", tolerance=0.05, margin=0.1)
    assert check_guardrails({"fraud_recall": 0.50}, champ, base, [lower_better]).passed


def test_ratchet_of_small_steps_fails_at_the_tolerance():
    """Steps of 0.002 each (allowed per step: 0.5 x max(champion, 0.005) >= 0.0025): the tolerance 0.005 vs the
    original baseline stops the third."""
    base = {"false_decline_rate": 0.001}
    champ = dict(base)
    outcomes = []
    for _ in range(6):
        cand = {"false_decline_rate": champ["false_decline_rate"] + 0.002}
        result = check_guardrails(cand, champ, base, [FDR])
        outcomes.append(result.passed)
        if result.passed:
            champ = cand  # the loop keeps it and it becomes the champion
        else:
            assert "original baseline 0.001" in result.detail and "tolerance 0.005" in result.detail
            assert "margin" not in result.detail  # each step alone was within the margin
    assert outcomes == [True, True, False, False, False, False]


def test_exactly_at_the_limit_is_allowed():
    base = champ = {"false_decline_rate": 0.02}
    edge = GuardrailSpec("false_decline_rate", higher_is_better=False, kind="harm", tolerance=0.003, margin=1.0)
    assert check_guardrails({"false_decline_rate": 0.023}, champ, base, [edge]).passed
    assert check_guardrails({"alert_rate": 0.03}, {"alert_rate": 0.0}, {"alert_rate": 0.0}, [ALERTS]).passed


def test_missing_or_nan_metric_fails_closed():
    base = champ = {"false_decline_rate": 0.02}
    missing = check_guardrails({}, champ, base, [FDR])
    assert not missing.passed and "no value for the candidate" in missing.detail
    nan = check_guardrails({"false_decline_rate": float("nan")}, champ, base, [FDR])
    assert not nan.passed and "non-finite" in nan.detail


def test_a_metric_the_data_cannot_support_is_skipped_with_a_note_but_not_when_only_one_side_has_it():
    none = check_guardrails({"alert_rate": 0.01}, {"alert_rate": 0.01}, {"alert_rate": 0.01}, [ALERTS, GAP])
    assert none.passed and "not measured on this data: false_decline_gap" in none.detail
    some = check_guardrails({"alert_rate": 0.01}, {"alert_rate": 0.01, "false_decline_gap": 0.0},
                            {"alert_rate": 0.01, "false_decline_gap": 0.0}, [ALERTS, GAP])
    assert not some.passed and "false_decline_gap: no value for the candidate" in some.detail


def test_fairness_gap_is_bounded_whatever_the_baseline_did():
    ref = {"false_decline_gap": 0.05}  # a baseline already past the limit does not license a candidate past it
    result = check_guardrails({"false_decline_gap": 0.02}, ref, ref, [GAP])
    assert not result.passed and "false_decline_gap (fairness" in result.detail


CONVERSION = GuardrailSpec("conversion_ratio", higher_is_better=True, kind="harm", limit=0.8)
PRICE_GAP = GuardrailSpec("price_gap_protected", higher_is_better=False, kind="fairness", limit=0.05)


@pytest.mark.parametrize("spec, value, ok", [
    (CONVERSION, 0.81, True), (CONVERSION, 0.8, True), (CONVERSION, 0.79, False),
    (PRICE_GAP, 0.0, True), (PRICE_GAP, 0.05, True), (PRICE_GAP, 0.051, False),
])
def test_absolute_limit_holds_whatever_the_baseline_did(spec, value, ok):
    m = spec.metric
    ref = {m: value}  # champion and baseline equal the candidate: tolerance and margin cannot fail
    result = check_guardrails({m: value}, ref, ref, [spec])
    assert result.passed is ok, result.detail
    assert result.figures[f"{m}.limit"] == spec.limit
    if not ok:
        assert f"guardrail {m}" in result.detail and "breaks the limit" in result.detail


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "capacity"}, "needs a limit"),
    ({"kind": "capacity", "limit": 0.1, "margin": 0.1}, "margin applies to harm guardrails only"),
    ({"kind": "fairness", "limit": 0.1, "tolerance": 0.1}, "tolerance applies to harm guardrails only"),
    ({"kind": "harm"}, "needs a tolerance, a margin or a limit"),
    ({"kind": "harm", "margin": -0.1}, "margin must be >= 0"),
    ({"kind": "risk", "limit": 1.0}, "kind must be one of capacity, harm, fairness"),
])
def test_a_spec_that_does_not_fit_its_kind_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuardrailSpec("m", higher_is_better=False, **kwargs)
