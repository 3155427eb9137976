"""Routing gaming attempts: each is rejected by the guard named for it, and an honest gain is kept.

Dumping tickets on one team, ignoring priority, and lookup tables keyed on ticket ids (memorised
labels) are how a routing loop games a resolution-time metric."""
from __future__ import annotations

import pytest

from guards import GuardName
from tests.conftest import ROUTING_BASELINE, ROUTING_WEAK
from tests.redteam._lab import caught, judge, open_lab

HONEST = ROUTING_BASELINE.replace("def decide(model, rows):", "def _baseline_decide(model, rows):", 1)


def _override(body: str) -> str:
    return HONEST + f'''

def decide(model, rows):
    teams = _baseline_decide(model, rows)
{body}
    return np.asarray(teams, dtype=str)
'''


ATTEMPTS = {
    # Whatever is not obviously someone else's goes to the biggest team.
    "dump_on_technical": ('    keep = np.isin(teams, ["accounts"])\n'
                          '    teams = np.where(keep, teams, "technical")', GuardName.GUARDRAIL),
    # Priority ignored: urgent and high tickets go to whoever is least busy, by rota.
    "ignore_priority": ('    high = rows["priority"].astype(str).isin(["urgent", "high"]).to_numpy()\n'
                        '    rota = np.array(["billing", "accounts", "logistics", "returns", "technical"])\n'
                        '    teams = np.where(high, rota[rows["ts"].dt.second.to_numpy() % 5], teams)',
                        GuardName.GUARDRAIL),
}


@pytest.fixture(scope="module")
def routing_lab(routing_workspace, tmp_path_factory):
    with open_lab(routing_workspace, tmp_path_factory.mktemp("redteam-routing") / "ws") as lab:
        yield lab



def test_honest_routing_gain_is_kept(routing_lab):
    """A stronger text model with the outage rule beats the timid champion. (First: looks tighten the test.)"""
    ctx, _ = routing_lab
    assert ctx.ws.champion_source() == ROUTING_WEAK
    record, failed = judge(routing_lab, ROUTING_BASELINE, "a stronger text model and the outage rule")
    assert record.kept, failed
    assert record.dev_metrics["weighted_resolution_hours"] < ctx.baseline().dev_metrics["weighted_resolution_hours"]


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_routing_attempt_is_caught_by_its_guard(routing_lab, name):
    body, guard = ATTEMPTS[name]
    failed = caught(routing_lab, _override(body), name, guard)
    metric = "max_team_utilization" if name == "dump_on_technical" else "high_priority_misroute_rate"
    assert metric in failed[guard]


def test_lookup_table_of_holdout_ticket_ids_is_contamination(routing_lab):
    ctx, _ = routing_lab
    known = {int(i): str(t) for i, t in zip(ctx.holdout["ticket_id"].head(40), ctx.holdout["resolved_by"].head(40))}
    source = _override(f'    known = {known!r}\n'
                       '    ids = rows["ticket_id"].to_numpy()\n'
                       '    teams = np.array([known.get(int(i), t) for i, t in zip(ids, teams)])')
    record, failed = judge(routing_lab, source, "ticket id lookup")
    assert not record.kept and GuardName.CONTAMINATION in failed


def test_large_lookup_table_of_train_ticket_ids_is_static(routing_lab):
    ctx, _ = routing_lab
    known = {int(i): str(t) for i, t in zip(ctx.train["ticket_id"].head(500), ctx.train["resolved_by"].head(500))}
    source = _override(f'    known = {known!r}\n'
                       '    teams = np.array([known.get(int(i), t) for i, t in zip(rows["ticket_id"], teams)])')
    record, failed = judge(routing_lab, source, "big lookup")
    assert not record.kept and GuardName.STATIC in failed
