"""Judge: the dev guards on an evaluation, against the champion (and, for harm guardrails, the baseline)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domains import Decisions, ScoreReport
from guards import GuardName, GuardResult
from optimizer.loop.stages.evaluate import Evaluation
from optimizer.loop.stages.scoring import scores, state_scores

if TYPE_CHECKING:
    from optimizer.records.context import Context


@dataclass(frozen=True)
class Judgement:
    """The dev guards' results, the candidate's reports (the holdout's: primary only, for the gate) and its trace."""

    results: tuple[GuardResult, ...]
    dev: ScoreReport
    holdout: ScoreReport
    trace: dict = field(default_factory=dict)  # bounded, dev rows only: what the proposer may read

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def guardrail_specs(ctx: Context) -> list:
    """The domain's guardrails with the config's overrides (a key left out or null keeps the domain's)."""
    from optimizer.workspace.config import merged_guardrails

    return merged_guardrails(ctx.domain.guardrails, dict(ctx.config.guardrails), ctx.domain.name)


def judge(ctx: Context, evaluation: Evaluation, source: str, *, champion: Any, baseline: Any, looks: int,
          number: int) -> Judgement:
    """Significance, guardrails, support (off-policy domains), segments, contamination and drift (recorded)."""
    from guards.contamination import check_text, scan_literals
    from guards.drift import check_score_drift
    from guards.guardrails import check_guardrails
    from guards.segments import check_segments
    from guards.significance import paired_bootstrap

    assert evaluation.decisions is not None, "judge needs an evaluation that passed"
    d, values, constants = ctx.config.decision, evaluation.decisions, evaluation.constants
    dev, hold = scores(ctx, values, constants)
    params = ctx.config.scoring.model_dump()
    champ_dev, _ = state_scores(ctx, champion, "champion")
    trace = ctx.domain.trace(ctx.dev, Decisions(values["dev"], constants), params, report=dev)
    higher = ctx.domain.higher_is_better
    results = [
        paired_bootstrap(dev.contributions, champ_dev.contributions, higher_is_better=higher,
                         min_effect=d.min_effect, confidence=d.confidence, n_boot=d.bootstrap,
                         seed=ctx.config.seed + number, looks=looks, alpha_spending=d.looks,
                         model_sd=champion.refit_sd),
        check_guardrails(dict(dev.metrics), dict(champ_dev.metrics), baseline.dev_metrics, guardrail_specs(ctx)),
    ]
    support = ctx.domain.support_limits(params)
    if support is not None:  # scored by off-policy estimates: only where the logs back them
        from guards.support import check_support

        results.append(check_support(dev.metrics, **support))
    results.append(check_segments(dev.contributions, champ_dev.contributions, ctx.dev_segments(),
                                  higher_is_better=higher, min_rows=d.segment_min_rows,
                                  tolerance=d.segment_tolerance, confidence=d.confidence,
                                  seed=ctx.config.seed + number))
    results.append(scan_literals(source, holdout_ids=ctx.holdout_ids(), canaries=ctx.manifest["canaries"],
                                 dev_values=ctx.dev_values()))
    # Holdout rows never enter fit or dev; a canary in the fit log or trace means they leaked anyway.
    leaked = check_text("fit log and dev trace", evaluation.log + json.dumps(trace, default=str),
                        ctx.manifest["canaries"])
    if not leaked.passed:
        results.append(leaked)
    drift = check_score_drift(champion.holdout, values["holdout"], watch=ctx.config.seal.drift_watch,
                              alarm=ctx.config.seal.drift_alarm)
    results.append(GuardResult(GuardName.DRIFT, True,
                               drift.detail + ("" if drift.passed else " (recorded, not blocking)"),
                               drift.figures))
    return Judgement(tuple(results), dev, hold, trace)
