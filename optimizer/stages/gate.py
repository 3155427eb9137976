"""Gate: one holdout query for a candidate that passed every dev guard (Thresholdout with a Ladder step).

The answer is a ledger entry, with its draws, before anyone acts on it; only the gate's answer of the holdout
leaves this stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guards import GuardResult
from holdout import gate as holdout_gate
from optimizer.faults import fault
from optimizer.stages.judge import Judgement
from optimizer.stages.scoring import state_scores


@dataclass(frozen=True)
class GateOutcome:
    """The recorded answer (with what it must beat) and the guard result it implies."""

    answer: dict[str, Any]
    result: GuardResult


def gate(ctx: Any, judgement: Judgement, champion: Any, entries: list) -> GateOutcome:
    """Ask the holdout about the candidate's gain over the seal's reference and hold it to the champion's."""
    dev, hold = judgement.dev, judgement.holdout
    # Gains are measured against the seal's reference policy, so the answer kept with a champion is its
    # gated gain (no sum of per-step answers whose errors would add up).
    reference = ctx.reference()
    ref_dev, ref_hold = state_scores(ctx, reference, "reference")
    champ_dev, champ_hold = state_scores(ctx, champion, "champion")
    sign = 1.0 if ctx.domain.higher_is_better else -1.0  # a gain is an improvement either way
    # T and noise scale with the holdout gain's error, not with that of h - t: a dev gain made noisy (or lucky)
    # by selection would widen T until the gate answered with it.
    se = holdout_gate.gain_se(dev.contributions, ref_dev.contributions, hold.contributions, ref_hold.contributions)
    answer = ask_gate(ctx, dev_gain=sign * (dev.value - ref_dev.value),
                      holdout_gain=sign * (hold.value - ref_hold.value), se=se, entries=entries)
    # The Ladder step: standard errors of the holdout gain over the champion, the policy it would replace.
    step = ctx.config.gate.step_se * holdout_gate.gain_se(dev.contributions, champ_dev.contributions,
                                                          hold.contributions, champ_hold.contributions)
    answer = {**answer, "to_beat": champion.reported - reference.reported, "step": step,
              "reference": reference.experiment}
    result = gate_result(answer, ctx.config.gate.tolerance)
    assert result is not None
    return GateOutcome(answer, result)


def ask_gate(ctx: Any, *, dev_gain: float, holdout_gain: float, se: float, entries: list) -> dict:
    """One holdout query, recorded in the ledger with its draws before anyone acts on it. Threshold and noise
    are the config's multiples of `se`, this query's standard error of the holdout gain."""
    from holdout.ledger import Kind

    g = ctx.config.gate
    previous = ctx.gates(entries)
    query = sum(e.kind == Kind.GATE for e in entries) + 1
    budget = previous[-1].data["budget_left"] if previous else g.budget
    threshold, sigma = g.threshold_se * se, g.sigma_se * se
    if previous and previous[-1].data["sigma"] > 0:
        # gamma persists until an overflow; a Laplace draw rescaled to this query's noise scale is one at it.
        gamma = previous[-1].data["next_gamma"] * sigma / previous[-1].data["sigma"]
    else:
        gamma = holdout_gate.draw_gamma(ctx.config.seed, 0, sigma)
    if g.kind == "not_worse":
        answer = holdout_gate.not_worse(dev_gain=dev_gain, holdout_gain=holdout_gain, tolerance=g.tolerance,
                                        budget_left=budget)
    elif budget <= 0:
        return {"kind": g.kind, "exhausted": True, "answer": None, "budget_left": 0}
    else:
        answer = holdout_gate.thresholdout(dev_gain=dev_gain, holdout_gain=holdout_gain, threshold=threshold,
                                           sigma=sigma, gamma=gamma, budget_left=budget, seed=ctx.config.seed,
                                           query=query)
    experiment = f"exp-{sum(e.kind == Kind.EXPERIMENT for e in entries) + 1:04d}"  # as run_experiment numbers it
    record = {**answer.to_dict(), "se": se, "query": query, "seed": ctx.config.seed, "seal": ctx.manifest_sha256,
              "experiment": experiment}
    ctx.ledger.append(Kind.GATE, record)
    fault("gate:answered")  # the query is spent; the experiment is not recorded yet
    return record


def gate_result(answer: dict | None, tolerance: float) -> GuardResult | None:
    """Keep only when the gate's answer for the candidate beats the answer kept with the champion (None: not asked)."""
    if answer is None:
        return None
    if answer.get("exhausted"):
        return GuardResult("holdout_gate", False, "the holdout gate's budget is spent: reseal with `ratchet reseal`",
                           {"budget_left": 0})
    ladder = answer["kind"] != "not_worse"
    step = answer.get("step", 0.0) if ladder else 0.0
    to_beat = answer["to_beat"] + (step if ladder else -tolerance)
    ok = answer["answer"] > to_beat
    how = "noisy holdout gain" if answer["overflow"] else "dev gain (holdout agrees)"
    need = f" + step {step:.4f}" if ladder else ""
    return GuardResult("holdout_gate", ok, f"gate answered {how} {answer['answer']:+.4f} over {answer['reference']}; "
                       f"to replace the champion it must exceed {answer['to_beat']:+.4f}{need}; "
                       f"budget left {answer['budget_left']}",
                       {"answer": answer["answer"], "to_beat": answer["to_beat"], "step": step,
                        "overflow": answer["overflow"], "budget_left": answer["budget_left"]})
