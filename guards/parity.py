"""Parity: a decision does not depend on what else shares the call.

Offline, dev is decided as one batch; a shadow trial decides batches of `shadow.batch` events; `ratchet serve`
usually decides one event per request, with its entities' earlier events from the workspace's history. A seeded
sample of dev events is decided the way serve decides them (one at a time, each with the history it would have had)
and compared with the batch decisions: any difference means the verdict describes a policy production would not
run (a threshold on the batch's own scores, windows over the call's rows instead of the history, a lookback longer
than the policy declares). Look-ahead says the future is not used; parity says the past is the same everywhere.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from guards._result import GuardName, GuardResult
from guards.lookahead import _differs


def check_parity(ids: Sequence[object], batch: np.ndarray, alone: np.ndarray, *, atol: float = 1e-9) -> GuardResult:
    """Pass when each sampled event's decision alone (`alone`) equals its decision in the batch (`batch`)."""
    batch, alone = np.asarray(batch), np.asarray(alone)
    if batch.shape != alone.shape or batch.ndim != 1 or len(ids) != len(batch):
        return GuardResult(GuardName.PARITY, False,
                           f"cannot compare: {alone.shape} decisions one at a time vs {batch.shape} "
                           f"in the batch for {len(ids)} events", {"events": len(ids)})
    diff = _differs(alone, batch, atol)
    figures: dict[str, float | int | str] = {"events": int(len(ids)), "differing": int(diff.sum()), "atol": atol}
    if not diff.any():
        return GuardResult(GuardName.PARITY, True,
                           f"all {len(ids)} sampled dev events get the same decision one at a time "
                           "(with their history) as in the batch", figures)
    i = int(np.argmax(diff))
    one, many = (v.item() if hasattr(v, "item") else v for v in (alone[i], batch[i]))
    figures.update({"first_event": str(ids[i]), "alone_value": repr(one), "batch_value": repr(many)})
    return GuardResult(GuardName.PARITY, False,
                       f"{int(diff.sum())} of {len(ids)} sampled dev events are decided differently "
                       f"one at a time than in the batch (first: event {ids[i]}: {one!r} alone vs {many!r} in the "
                       "batch): decide() depends on the other rows of the call, not only on the event and its "
                       "history; read earlier events from `history` (HISTORY_DAYS) instead", figures)
