"""Scoring decisions in the parent: the only place labels meet a policy's output."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from domains import Decisions, ScoreReport

if TYPE_CHECKING:
    from optimizer.records.context import Context


def scores(ctx: Context, values: Mapping[str, np.ndarray],
           constants: Mapping[str, Any]) -> tuple[ScoreReport, ScoreReport]:
    """(dev report, holdout report) of decisions on dev and on the holdout (canaries included, then dropped)."""
    params = ctx.config.scoring.model_dump()
    dev = ctx.domain.score(ctx.dev, Decisions(values["dev"], constants), params)
    # Only the primary value of the holdout is ever used (by the gate): no ranking or segment detail.
    hold = ctx.domain.score(ctx.holdout, Decisions(values["holdout"][~ctx.canary_mask], constants), params,
                            detail=False)
    return dev, hold


def state_scores(ctx: Context, state: Any, role: str) -> tuple[ScoreReport, ScoreReport]:
    """A stored policy's dev and holdout reports, computed once per policy, role and seal."""
    return ctx.memo(f"{role}_reports", (state.experiment, state.seal),
                    lambda: scores(ctx, {"dev": state.dev, "holdout": state.holdout}, state.constants))
