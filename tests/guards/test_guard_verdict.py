"""Verdict: kept only when every guard passed; failures are named with their details."""
from __future__ import annotations

import json

import pytest

from guards._result import GuardName, GuardResult
from guards.verdict import Verdict, decide

OK = GuardResult(GuardName.STATIC, True, "static scan: no findings in 40 lines", {"findings": 0})
SIG = GuardResult(GuardName.SIGNIFICANCE, True, "gained +0.02 per row", {"lower": 0.01})
BAD_SIG = GuardResult(GuardName.SIGNIFICANCE, False, "gain +0.001 is not significant", {"lower": -0.01})
BAD_RAIL = GuardResult(GuardName.GUARDRAIL, False, "guardrail alert_rate: candidate 0.05 is 0.02 worse than the "
                       "champion", {"alert_rate.candidate": 0.05})


def test_all_passed_is_kept():
    verdict = decide([OK, SIG])
    assert verdict.kept and verdict.failed_guards == () and verdict.reasons == ()
    assert verdict.results == (OK, SIG) and "kept" in verdict.summary


def test_any_failure_is_reverted_with_reasons():
    verdict = decide([OK, BAD_SIG, BAD_RAIL])
    assert not verdict.kept
    assert verdict.failed_guards == (GuardName.SIGNIFICANCE, GuardName.GUARDRAIL)
    assert verdict.reasons == (f"significance: {BAD_SIG.detail}", f"guardrail: {BAD_RAIL.detail}")
    assert verdict.failures == (BAD_SIG, BAD_RAIL)
    assert verdict.summary.startswith("reverted: significance: gain")


def test_no_results_is_not_kept():
    verdict = decide([])
    assert not verdict.kept and "no guard results" in verdict.reasons[0]


def test_repeated_guard_is_named_once():
    other = GuardResult(GuardName.CONTAMINATION, False, "canary in prompt")
    verdict = decide([other, GuardResult(GuardName.CONTAMINATION, False, "canary in trace")])
    assert verdict.failed_guards == (GuardName.CONTAMINATION,) and len(verdict.reasons) == 2


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


def test_a_name_given_as_text_is_held_as_its_member():
    """A stored record's name is text: it comes back as the GuardName member, equal to that text."""
    result = GuardResult.from_dict({"guard": "holdout_gate", "passed": False, "detail": "short"})
    assert result.name is GuardName.HOLDOUT_GATE and result.name == "holdout_gate"
    assert GuardResult("static", True, "ok").name is GuardName.STATIC  # type: ignore[arg-type]
    assert decide([result]).failed_guards == (GuardName.HOLDOUT_GATE,)


@pytest.mark.parametrize("name", ["statik", "Static", "STATIC", "", None])
def test_an_unknown_guard_name_fails_loudly(name):
    with pytest.raises(ValueError, match=f"unknown guard name {name!r}") as raised:
        GuardResult(name, True, "")  # type: ignore[arg-type]
    assert all(str(g) in str(raised.value) for g in GuardName)  # the valid names are listed
    with pytest.raises(ValueError, match="unknown guard name"):
        GuardResult.from_dict({"guard": name, "passed": True, "detail": ""})


def test_members_serialise_as_the_text_they_replaced():
    """Ledger payloads, record.json and `--json` hold the names as plain text, byte for byte as before the enum."""
    data = decide([OK, BAD_RAIL]).to_dict()
    assert isinstance(data["failed_guards"][0], GuardName) and isinstance(data["results"][0]["guard"], GuardName)
    plain = {**data, "failed_guards": ["guardrail"],
             "results": [{**data["results"][0], "guard": "static"}, {**data["results"][1], "guard": "guardrail"}]}
    for options in ({}, {"indent": 2, "default": str},
                    {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": True, "default": str}):
        assert json.dumps(data, **options) == json.dumps(plain, **options)
    assert json.dumps({GuardName.HOLDOUT_GATE: GuardName.DRIFT}) == '{"holdout_gate": "drift"}'
    assert f"{GuardName.REFIT:<7}|{GuardName.REFIT}" == "refit  |refit"
