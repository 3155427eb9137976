"""How a trial's policies decide its events: fitted on train, in time-ordered batches, each batch reading the
history serve would give it (the workspace's events, the holdout's, the trial's earlier ones), so the batch size
changes no decision."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from domains.history import History, lookback
from optimizer.errors import RatchetError
from optimizer.history import EventStore, sealed_events
from optimizer.refs import PolicyRef


def past_of(ctx, store: EventStore, valid: pd.DataFrame) -> tuple[History, int]:
    """The workspace's history and the holdout's events, followed by the trial's events (those already held, from
    an earlier trial or serve, only once, in the trial's place), and where the trial's events start in it."""
    ids = valid[store.id].astype(str)
    held = pd.concat([store.events(), sealed_events(ctx, store)], ignore_index=True)
    held = held[~held[store.id].astype(str).isin(ids)]
    events = pd.concat([held, valid[store.columns]], ignore_index=True)
    return History.of(events, time=store.time, keys=store.keys), len(held)


def decide_all(ctx, sandbox, ref: PolicyRef, events: pd.DataFrame, role: str, progress, past: History,
                offset: int):
    """Fit `ref` on train and decide `events` in time-ordered batches: (decisions, constants), latency per event.
    Each batch reads the history serve would give it (`past` up to the batch), so its size changes no decision."""
    budget = ctx.config.sandbox.budget_s
    fitted = sandbox.fit(ref.source, ctx.domain.policy_view(ctx.train, with_label=True), budget_s=budget)
    if fitted.status != "ok":
        raise RatchetError(f"the {role} ({ref.ref}) failed to fit in the sandbox: {fitted.status}: {fitted.error}")
    size = ctx.config.shadow.batch
    days = lookback(ref.source)
    values, latency, constants = [], [], {}
    for start in range(0, len(events), size):
        rows = events.iloc[start:start + size].reset_index(drop=True)
        history = {"events": past.window(rows, days, before=offset + start)} if days > 0 else None
        t0 = time.perf_counter()
        out = sandbox.decide(ref.source, fitted.model, {"events": rows}, budget_s=budget, constants=ctx.domain.constants,
                             history=history)
        ms = (time.perf_counter() - t0) * 1000 / len(rows)
        if out.status != "ok":
            raise RatchetError(f"the {role} ({ref.ref}) failed to decide events {start + 1}-{start + len(rows)}: "
                               f"{out.status}: {out.error}")
        from domains import Decisions

        problem = ctx.domain.check_decisions(Decisions(out.decisions["events"], out.constants), rows,
                                             ctx.config.scoring.model_dump())
        if problem:
            raise RatchetError(f"the {role} ({ref.ref}) broke the output contract on events: {problem}")
        values.append(out.decisions["events"])
        latency.append(np.full(len(rows), ms))
        constants = dict(out.constants)
        progress(f"{role}: {min(start + size, len(events)):,} of {len(events):,} events decided")
    return (np.concatenate(values), constants), np.concatenate(latency)
