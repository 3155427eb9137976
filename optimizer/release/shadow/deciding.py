"""How a trial's policies decide its events: fitted on train, in time-ordered batches, each batch reading the
history serve would give it (the workspace's events, the holdout's, the trial's earlier ones), so the batch size
changes no decision.

Latency is measured as production calls the policy, never as a batch's time shared by its rows (a 500-event call
divided by 500 hides a policy that takes 160 ms per event). After the batches, `shadow.latency_sample` events spread
over the trial are decided again one per call in a warm decide worker, as `ratchet serve` decides a request, each
with the history serve would give it; each call's wall time is that event's latency. Those single calls must also
decide exactly as the batch did (parity): a verdict on decisions production would not make describes nothing.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from domains.history import History, lookback
from guards.parity import check_parity
from optimizer.base.errors import RatchetError
from optimizer.records.refs import PolicyRef
from optimizer.workspace.history import EventStore, sealed_events


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
    """Fit `ref` on train and decide `events` in time-ordered batches: ((decisions, constants), latency).

    `latency` holds one figure per event, in ms: the wall time of a single-event call (as serve calls the policy)
    for the `shadow.latency_sample` sampled events, NaN for the others (decided only within a batch, whose time
    says nothing about one event's). RatchetError when a single call decides differently from the batch."""
    budget = ctx.config.sandbox.budget_s
    fitted = sandbox.fit(ref.source, ctx.domain.policy_view(ctx.train, with_label=True), budget_s=budget)
    if not fitted.ok:
        raise RatchetError(f"the {role} ({ref.ref}) failed to fit in the sandbox: {fitted.status}: {fitted.error}")
    values, constants = _batches(ctx, sandbox, ref, fitted.model, events, role, progress, past, offset)
    latency = np.full(len(events), np.nan)
    picked = latency_sample(len(events), ctx.config.shadow.latency_sample, ctx.config.seed)
    if len(picked):
        progress(f"{role}: {len(picked):,} events decided one per call, as serve calls it (latency)")
        alone, latency[picked] = _singles(ctx, sandbox, ref, fitted.model, events, picked, past, offset, role)
        _check_parity(ctx, ref, role, events, picked, values[picked], alone)
    return (values, constants), latency


def _batches(ctx, sandbox, ref: PolicyRef, model, events: pd.DataFrame, role: str, progress, past: History,
             offset: int) -> tuple[np.ndarray, dict]:
    """The events decided in time-ordered batches of `shadow.batch`, each held to the output contract."""
    from domains import Decisions

    budget, size, days = ctx.config.sandbox.budget_s, ctx.config.shadow.batch, lookback(ref.source)
    values, constants = [], {}
    for start in range(0, len(events), size):
        rows = events.iloc[start:start + size].reset_index(drop=True)
        history = {"events": past.window(rows, days, before=offset + start)} if days > 0 else None
        out = sandbox.decide(ref.source, model, {"events": rows}, budget_s=budget, constants=ctx.domain.constants,
                             history=history)
        if not out.ok:
            raise RatchetError(f"the {role} ({ref.ref}) failed to decide events {start + 1}-{start + len(rows)}: "
                               f"{out.status}: {out.error}")
        problem = ctx.domain.check_decisions(Decisions(out.decisions["events"], out.constants), rows,
                                             ctx.config.scoring.model_dump())
        if problem:
            raise RatchetError(f"the {role} ({ref.ref}) broke the output contract on events: {problem}")
        values.append(out.decisions["events"])
        constants = dict(out.constants)
        progress(f"{role}: {min(start + size, len(events)):,} of {len(events):,} events decided")
    return np.concatenate(values), constants


def latency_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Up to `size` of `n` event positions, one drawn (seeded) in each of `size` equal stretches of the trial, so
    the sample covers its start, middle and end (history grows over a trial) and is the same for the same config."""
    size = min(int(size), int(n))
    if size <= 0:
        return np.zeros(0, dtype=int)
    edges = np.linspace(0, n, size + 1)
    drawn = edges[:-1] + np.random.default_rng(seed).random(size) * np.diff(edges)
    return np.unique(np.clip(np.floor(drawn).astype(int), 0, n - 1))


def _singles(ctx, sandbox, ref: PolicyRef, model, events: pd.DataFrame, picked: np.ndarray, past: History,
             offset: int, role: str) -> tuple[np.ndarray, np.ndarray]:
    """The picked events decided one per call, as serve decides a request: in a warm decide worker (a fresh child
    per call when the sandbox relays a language model, as serve does then), each with the history serve would
    give it. Returns (decisions, ms per call); the first event is decided once untimed, so the worker is warm."""
    budget, constants, days = ctx.config.sandbox.budget_s, ctx.domain.constants, lookback(ref.source)
    worker = sandbox.worker(ref.source, model, budget_s=budget) if sandbox.broker is None else None
    try:
        def call(i: int):
            row = events.iloc[i:i + 1].reset_index(drop=True)
            history = past.window(row, days, before=offset + i) if days > 0 else None
            t0 = time.perf_counter()
            if worker is not None:
                out = worker.decide(row, budget_s=budget, constants=constants, history=history)
            else:
                out = sandbox.decide(ref.source, model, {"rows": row}, budget_s=budget, constants=constants,
                                     history=None if history is None else {"rows": history})
            ms = (time.perf_counter() - t0) * 1000
            if not out.ok:
                raise RatchetError(f"the {role} ({ref.ref}) failed to decide event {i + 1} alone (as serve calls "
                                   f"it): {out.status}: {out.error}")
            return out.decisions["rows"][0], ms

        call(int(picked[0]))  # warm-up: serve's worker has answered requests before
        timed = [call(int(i)) for i in picked]
    finally:
        if worker is not None:
            worker.close()
    return np.asarray([v for v, _ in timed]), np.asarray([ms for _, ms in timed], dtype=float)


def _check_parity(ctx, ref: PolicyRef, role: str, events: pd.DataFrame, picked: np.ndarray, batch: np.ndarray,
                  alone: np.ndarray) -> None:
    """RatchetError naming the policy and the first event a single call decided differently from its batch."""
    ids = events[ctx.domain.columns.id].iloc[picked].astype(str).tolist()
    result = check_parity(ids, np.asarray(batch), alone)
    if not result.passed:
        f = result.figures
        raise RatchetError(f"the {role} ({ref.ref}) decides event {f.get('first_event')} differently alone "
                           f"({f.get('alone_value')}, as serve calls it) than in its batch ({f.get('batch_value')}), "
                           f"{f.get('differing')} of {len(ids)} sampled events: the trial would not describe "
                           "production; read earlier events from `history` (HISTORY_DAYS), not from the call's rows")
