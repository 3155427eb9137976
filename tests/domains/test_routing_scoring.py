"""The routing scorer: the queue simulation by hand, the primary and guardrail metrics, the output contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains import Decisions, get_domain
from domains.routing.adapter import RoutingScoring
from domains.routing.data import generate
from domains.routing.queue import simulate
from optimizer.base.errors import RatchetError

PARAMS = RoutingScoring().model_dump()


def test_queue_by_hand():
    """Two teams, one agent each. Ticket 0 (1 h of work) and ticket 1 (1 h) both belong to A; ticket 1 is
    misrouted to B: B triages it for 0.5 h, it reaches A 0.25 h later and waits for ticket 0 to finish."""
    result = simulate(np.array([0.0, 0.0]), np.array(["A", "B"]), np.array(["A", "A"]), np.array([1.0, 1.0]),
                      {"A": 1, "B": 1}, triage_hours=0.5, reassign_hours=0.25)
    # ticket 0: 0 -> 1. ticket 1: triage 0 -> 0.5, joins A at 0.75, A free at 1.0, done 2.0.
    assert result.resolution_hours.tolist() == [1.0, 2.0]
    assert result.busy_hours == {"A": 2.0, "B": 0.5} and result.span_hours == 2.0
    right = simulate(np.array([0.0, 0.0]), np.array(["A", "A"]), np.array(["A", "A"]), np.array([1.0, 1.0]),
                     {"A": 1, "B": 1}, triage_hours=0.5, reassign_hours=0.25)
    assert right.resolution_hours.tolist() == [1.0, 2.0]  # same here: the queue, not the misroute, is the wait
    two_agents = simulate(np.array([0.0, 0.0]), np.array(["A", "A"]), np.array(["A", "A"]), np.array([1.0, 1.0]),
                          {"A": 2}, triage_hours=0.5, reassign_hours=0.25)
    assert two_agents.resolution_hours.tolist() == [1.0, 1.0]


@pytest.fixture(scope="module")
def tickets() -> pd.DataFrame:
    return generate(0, 6000)


def _score(tickets, routed, **params):
    return get_domain("routing").score(tickets, Decisions(np.asarray(routed, dtype=str)), {**PARAMS, **params})


def test_misroutes_cost_time_and_dumping_breaks_utilization(tickets):
    truth = tickets["resolved_by"].astype(str).to_numpy()
    perfect = _score(tickets, truth).metrics
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(truth)) < 0.3, rng.choice(list(PARAMS["teams"]), len(truth)), truth)
    worse = _score(tickets, noisy).metrics
    dumped = _score(tickets, np.full(len(truth), "technical")).metrics
    assert perfect["first_team_resolution_rate"] == 1.0 and perfect["high_priority_misroute_rate"] == 0.0
    assert perfect["weighted_resolution_hours"] < worse["weighted_resolution_hours"] < dumped["weighted_resolution_hours"]
    assert perfect["max_team_utilization"] < 0.9 < dumped["max_team_utilization"]
    report = _score(tickets, noisy)
    assert report.value == pytest.approx(report.contributions.mean())
    assert set(report.segments) == {"priority", "channel", "tier"}


def test_urgent_weighs_most(tickets):
    truth = tickets["resolved_by"].astype(str).to_numpy()
    a = _score(tickets, truth)
    b = _score(tickets, truth, priority_weight={"urgent": 8.0, "high": 2.0, "normal": 1.0, "low": 0.5},
               sla_hours=PARAMS["sla_hours"])
    urgent = (tickets["priority"] == "urgent").to_numpy()
    assert np.allclose(b.contributions[urgent], 2 * a.contributions[urgent])
    assert np.allclose(b.contributions[~urgent], a.contributions[~urgent])


def test_output_contract_names_the_problem(tickets):
    domain = get_domain("routing")
    ok = np.asarray(tickets["resolved_by"], dtype=str)
    assert domain.check_decisions(Decisions(ok), tickets, PARAMS) is None
    bad = ok.copy()
    bad[4] = "sales"
    assert "1 names that are not teams (row 4: 'sales')" in domain.check_decisions(Decisions(bad), tickets, PARAMS)
    assert "expected team names" in domain.check_decisions(Decisions(np.zeros(len(ok))), tickets, PARAMS)
    assert "for 6000 rows" in domain.check_decisions(Decisions(ok[:-1]), tickets, PARAMS)


def test_a_team_missing_from_the_config_is_refused(tickets):
    teams = {k: v for k, v in PARAMS["teams"].items() if k != "returns"}
    with pytest.raises(RatchetError, match="scoring.teams has no entry for team.*returns"):
        get_domain("routing").prepared(tickets, {**PARAMS, "teams": teams})


def test_outcome_columns_are_hidden(tickets):
    domain = get_domain("routing")
    decide_view = domain.policy_view(tickets, with_label=False)
    fit_view = domain.policy_view(tickets, with_label=True)
    for hidden in ("resolved_by", "handling_minutes", "issue_type"):
        assert hidden not in decide_view.columns
    assert "resolved_by" in fit_view.columns and "handling_minutes" not in fit_view.columns


def test_routing_passes_the_domain_conformance_suite():
    from domains import check_domain

    check_domain(get_domain("routing"), size=2000)


def test_history_without_priority_still_scores_and_routes(tickets):
    """Only time, team and handling time are required of an imported history."""
    import importlib.util

    domain = get_domain("routing")
    bare = tickets.drop(columns=["priority", "channel", "tier", "product"])
    report = _score(bare, np.asarray(bare["resolved_by"], dtype=str))
    assert report.metrics["high_priority_misroute_rate"] == 0.0 and np.isfinite(report.value)
    assert set(report.segments) == set()
    spec = importlib.util.spec_from_file_location("routing_policy", domain.baseline_policy)
    policy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(policy)
    model = policy.fit(domain.policy_view(bare, with_label=True))
    teams = policy.decide(model, domain.policy_view(bare, with_label=False))
    assert len(teams) == len(bare) and set(teams) <= set(PARAMS["teams"])
