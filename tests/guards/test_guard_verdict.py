"""Verdict: kept only when every guard passed; failures are named with their details."""
from __future__ import annotations

import json

import pytest

from guards._result import GuardResult
from guards.verdict import Verdict, decide

OK = GuardResult("static", True, "static scan: no findings in 40 lines", {"findings": 0})
SIG = GuardResult("significance", True, "gained +0.02 per row", {"lower": 0.01})
BAD_SIG = GuardResult("significance", False, "gain +0.001 is not significant", {"lower": -0.01})
BAD_RAIL = GuardResult("guardrail", False, "guardrail alert_rate: candidate 0.05 is 0.02 worse than the champion",
                       {"alert_rate.candidate": 0.05})


def test_all_passed_is_kept():
    verdict = decide([OK, SIG])
    assert verdict.kept and verdict.failed_guards == () and verdict.reasons == ()
    assert verdict.results == (OK, SIG) and "kept" in verdict.summary


def test_any_failure_is_reverted_with_reasons():
    verdict = decide([OK, BAD_SIG, BAD_RAIL])
    assert not verdict.kept
    assert verdict.failed_guards == ("significance", "guardrail")
    assert verdict.reasons == (f"significance: {BAD_SIG.detail}", f"guardrail: {BAD_RAIL.detail}")
    assert verdict.failures == (BAD_SIG, BAD_RAIL)
    assert verdict.summary.startswith("reverted: significance: gain")


def test_no_results_is_not_kept():
    verdict = decide([])
    assert not verdict.kept and "no guard results" in verdict.reasons[0]


def test_repeated_guard_is_named_once():
    other = GuardResult("contamination", False, "canary in prompt")
    verdict = decide([other, GuardResult("contamination", False, "canary in trace")])
    assert verdict.failed_guards == ("contamination",) and len(verdict.reasons) == 2


def test_verdict_is_frozen_and_consistent():
    verdict = decide(iter([OK]))
    with pytest.raises(AttributeError):
        verdict.kept = False  # type: ignore[misc]
    with pytest.raises(ValueError):
        Verdict((OK, BAD_SIG), kept=True)
    assert Verdict((OK,), kept=True).kept
    with pytest.raises(TypeError):
        Verdict(({"guard": "static", "passed": True},))  # type: ignore[arg-type]


def test_to_dict_is_json_able():
    data = decide([OK, BAD_RAIL]).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["kept"] is False and data["failed_guards"] == ["guardrail"]
    assert data["results"][1] == {"guard": "guardrail", "passed": False, "detail": BAD_RAIL.detail,
                                  "figures": {"alert_rate.candidate": 0.05}}
