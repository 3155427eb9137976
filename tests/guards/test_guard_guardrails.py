"""Guardrails: margin vs the champion per step, floor vs the original baseline across steps."""
from __future__ import annotations

import pytest

from domains.contract import GuardrailSpec
from guards.guardrails import check_guardrails

FDR = GuardrailSpec("false_decline_rate", higher_is_better=False, floor=0.01, margin=0.003)
RECALL = GuardrailSpec("fraud_recall", higher_is_better=True, floor=0.05, margin=0.02)


def test_within_margin_and_floor_passes():
    base = {"false_decline_rate": 0.020, "fraud_recall": 0.60}
    champ = {"false_decline_rate": 0.021, "fraud_recall": 0.61}
    cand = {"false_decline_rate": 0.023, "fraud_recall": 0.60}
    result = check_guardrails(cand, champ, base, [FDR, RECALL])
    assert result.passed, result.detail
    assert result.name == "guardrail"
    assert result.figures["false_decline_rate.worse_vs_champion"] == pytest.approx(0.002)


def test_one_big_step_back_fails_on_margin():
    base = champ = {"false_decline_rate": 0.020}
    result = check_guardrails({"false_decline_rate": 0.025}, champ, base, [FDR])
    assert not result.passed
    assert "false_decline_rate" in result.detail and "champion 0.02" in result.detail
    assert "margin 0.003" in result.detail and "0.025" in result.detail


def test_improvement_is_never_a_failure():
    base = champ = {"false_decline_rate": 0.020, "fraud_recall": 0.6}
    cand = {"false_decline_rate": 0.001, "fraud_recall": 0.9}
    assert check_guardrails(cand, champ, base, [FDR, RECALL]).passed


def test_direction_respects_higher_is_better():
    base = champ = {"fraud_recall": 0.60}
    assert not check_guardrails({"fraud_recall": 0.57}, champ, base, [RECALL]).passed
    lower_better = GuardrailSpec("fraud_recall", higher_is_better=False, floor=0.05, margin=0.02)
    assert check_guardrails({"fraud_recall": 0.57}, champ, base, [lower_better]).passed


def test_ratchet_of_small_steps_fails_at_the_floor():
    """Ten steps, each 0.002 worse than the champion (margin 0.003): the floor 0.01 stops step 6."""
    base = {"false_decline_rate": 0.020}
    champ = dict(base)
    outcomes = []
    for step in range(1, 11):
        cand = {"false_decline_rate": champ["false_decline_rate"] + 0.002}
        result = check_guardrails(cand, champ, base, [FDR])
        outcomes.append(result.passed)
        if result.passed:
            champ = cand  # the loop keeps it and it becomes the champion
        else:
            assert "original baseline 0.02" in result.detail and "floor 0.01" in result.detail
            assert "margin" not in result.detail  # each step alone was within the margin
    assert outcomes[:5] == [True] * 5
    assert not any(outcomes[5:])


def test_exactly_at_the_limit_is_allowed():
    base = champ = {"false_decline_rate": 0.02}
    edge = GuardrailSpec("false_decline_rate", higher_is_better=False, floor=0.003, margin=0.003)
    assert check_guardrails({"false_decline_rate": 0.023}, champ, base, [edge]).passed


def test_missing_or_nan_metric_fails_closed():
    base = champ = {"false_decline_rate": 0.02}
    missing = check_guardrails({}, champ, base, [FDR])
    assert not missing.passed and "no value for the candidate" in missing.detail
    nan = check_guardrails({"false_decline_rate": float("nan")}, champ, base, [FDR])
    assert not nan.passed and "non-finite" in nan.detail


CONVERSION = GuardrailSpec("conversion_ratio", higher_is_better=True, floor=None, margin=None, limit=0.8)
GAP = GuardrailSpec("price_gap_protected", higher_is_better=False, floor=None, margin=None, limit=0.05)


@pytest.mark.parametrize("spec, value, ok", [
    (CONVERSION, 0.81, True), (CONVERSION, 0.8, True), (CONVERSION, 0.79, False),
    (GAP, 0.0, True), (GAP, 0.05, True), (GAP, 0.051, False),
])
def test_absolute_limit_holds_whatever_the_baseline_did(spec, value, ok):
    """A limit is a business rule: a baseline already past it does not license a candidate past it."""
    m = spec.metric
    ref = {m: value}  # champion and baseline equal the candidate: floor and margin cannot fail
    result = check_guardrails({m: value}, ref, ref, [spec])
    assert result.passed is ok, result.detail
    assert result.figures[f"{m}.limit"] == spec.limit
    if not ok:
        assert f"guardrail {m}" in result.detail and "breaks the limit" in result.detail


def test_none_floor_and_margin_are_not_checked():
    result = check_guardrails({"conversion_ratio": 0.9}, {"conversion_ratio": 2.0}, {"conversion_ratio": 3.0},
                              [CONVERSION])
    assert result.passed, result.detail
    assert "conversion_ratio.floor" not in result.figures
