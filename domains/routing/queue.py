"""A discrete-event simulation of the support queues over the evaluated ticket stream.

Each team works its queue first come, first served with a fixed number of agents. A ticket routed
to the right team waits and is handled. A misrouted ticket waits in the wrong queue, costs that
team a triage, then reaches the right queue after a reassignment delay and waits again: that is
what a routing mistake costs, for the ticket and for everyone queued behind it.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QueueResult:
    resolution_hours: np.ndarray  # per ticket: arrival to resolution
    busy_hours: dict[str, float]  # per team: agent-hours worked (handling and triage)
    span_hours: float  # first arrival to last completion


def simulate(arrival_hours: np.ndarray, routed: np.ndarray, resolver: np.ndarray, handling_hours: np.ndarray,
             agents: dict[str, int], *, triage_hours: float, reassign_hours: float) -> QueueResult:
    """Tickets in `arrival_hours` order need not be sorted; `routed` and `resolver` are team names."""
    free = {team: [0.0] * n for team, n in agents.items()}  # each agent's next free time (a heap per team)
    busy = {team: 0.0 for team in agents}
    done = np.zeros(len(arrival_hours))
    # (time the ticket joins a queue, tie-break, ticket, team, final stage?)
    events = [(float(t), i, i, str(routed[i]), routed[i] == resolver[i]) for i, t in enumerate(arrival_hours)]
    heapq.heapify(events)
    seq = len(events)
    while events:
        t, _, i, team, final = heapq.heappop(events)
        start = max(t, heapq.heappop(free[team]))
        work = handling_hours[i] if final else triage_hours
        heapq.heappush(free[team], start + work)
        busy[team] += work
        if final:
            done[i] = start + work
        else:
            heapq.heappush(events, (start + work + reassign_hours, seq, i, str(resolver[i]), True))
            seq += 1
    first = float(np.min(arrival_hours)) if len(arrival_hours) else 0.0
    span = float(done.max() - first) if len(done) else 0.0
    return QueueResult(done - arrival_hours, busy, span)
