"""The loop keeps a candidate only when the gate's answer beats the answer kept with the champion."""
from __future__ import annotations

from optimizer.loop.stages import gate_result


def _answer(value: float, to_beat: float, kind: str = "thresholdout", overflow: bool = False,
            step: float = 0.0) -> dict:
    return {"kind": kind, "answer": value, "to_beat": to_beat, "overflow": overflow, "budget_left": 7,
            "reference": "baseline", "step": step}


def test_a_positive_answer_below_the_champions_is_not_a_keep():
    """Gains are over the reference: +0.03 is a gain over the baseline but a loss against a +0.05 champion."""
    assert not gate_result(_answer(0.03, 0.05), tolerance=0.0).passed
    result = gate_result(_answer(0.06, 0.05), tolerance=0.0)
    assert result.passed and result.figures["to_beat"] == 0.05 and "must exceed +0.0500" in result.detail


def test_not_worse_allows_its_tolerance_and_exhaustion_fails():
    assert gate_result(_answer(0.045, 0.05, kind="not_worse"), tolerance=0.01).passed
    assert not gate_result(_answer(0.035, 0.05, kind="not_worse"), tolerance=0.01).passed
    spent = gate_result({"kind": "thresholdout", "exhausted": True, "answer": None, "budget_left": 0}, tolerance=0.0)
    assert not spent.passed and "reseal" in spent.detail
    assert gate_result(None, tolerance=0.0) is None


def test_the_ladder_step_must_be_cleared_to_replace_the_champion():
    """Noise a little above the champion's answer is not a new champion: it must clear the step as well."""
    assert not gate_result(_answer(0.06, 0.05, step=0.02), tolerance=0.0).passed
    result = gate_result(_answer(0.071, 0.05, step=0.02), tolerance=0.0)
    assert result.passed and result.figures["step"] == 0.02 and "step 0.0200" in result.detail
    # not_worse is the plain check: no step, only its tolerance
    assert gate_result(_answer(0.049, 0.05, kind="not_worse", step=0.02), tolerance=0.01).passed
