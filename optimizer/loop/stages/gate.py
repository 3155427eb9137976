"""Gate: one holdout query for a candidate that passed every dev guard (Thresholdout with a Ladder step).

The answer is a ledger entry, with its draws, before anyone acts on it; only the gate's answer of the holdout
leaves this stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guards import GuardName, GuardResult
from holdout import gate as holdout_gate
from holdout import queries
from optimizer.base.faults import fault
from optimizer.loop.stages.judge import Judgement
from optimizer.loop.stages.scoring import state_scores

if TYPE_CHECKING:
    from optimizer.records.context import Context


@dataclass(frozen=True)
class GateOutcome:
    """The recorded answer (with what it must beat) and the guard result it implies."""

    answer: dict[str, Any]
    result: GuardResult


def gate(ctx: Context, judgement: Judgement, champion: Any, entries: list) -> GateOutcome:
    """Ask the holdout about the candidate's gain over the seal's reference and hold it to the champion's."""
    dev, hold = judgement.dev, judgement.holdout
    # Gains are measured against the seal's reference policy, so the answer kept with a champion is its
    # gated gain (no sum of per-step answers whose errors would add up).
    reference = ctx.reference()
    assert reference is not None, "the gate runs after the baseline, which is the first reference"
    ref_dev, ref_hold = state_scores(ctx, reference, "reference")
    champ_dev, champ_hold = state_scores(ctx, champion, "champion")
    higher = ctx.domain.higher_is_better
    if ctx.config.gate.kind == "lord":
        se = holdout_gate.gain_se(dev.contributions, champ_dev.contributions, hold.contributions,
                                  champ_hold.contributions)
        answer = ask_lord(ctx, gain=holdout_gate.gain(hold.value, champ_hold.value, higher_is_better=higher),
                          se=se, to_beat=champion.reported - reference.reported, entries=entries)
        answer = {**answer, "step": 0.0, "reference": reference.experiment, "champion": champion.experiment}
        return GateOutcome(answer, lord_result(answer))
    # T and noise scale with the holdout gain's error, not with that of h - t: a dev gain made noisy (or lucky)
    # by selection would widen T until the gate answered with it.
    se = holdout_gate.gain_se(dev.contributions, ref_dev.contributions, hold.contributions, ref_hold.contributions)
    answer = ask_gate(ctx, dev_gain=holdout_gate.gain(dev.value, ref_dev.value, higher_is_better=higher),
                      holdout_gain=holdout_gate.gain(hold.value, ref_hold.value, higher_is_better=higher), se=se,
                      entries=entries)
    # The Ladder step: standard errors of the holdout gain over the champion, the policy it would replace.
    step = ctx.config.gate.step_se * holdout_gate.gain_se(dev.contributions, champ_dev.contributions,
                                                          hold.contributions, champ_hold.contributions)
    answer = {**answer, "to_beat": champion.reported - reference.reported, "step": step,
              "reference": reference.experiment}
    result = gate_result(answer, ctx.config.gate.tolerance)
    assert result is not None
    return GateOutcome(answer, result)


def _spend(ctx: Context, record: dict, entries: list) -> dict:
    """Write one holdout answer to the ledger before anyone acts on it."""
    from holdout.ledger import Kind

    experiment = queries.experiment_id(queries.next_number(entries))  # as run_experiment numbers it
    record = {**record, "seed": ctx.config.seed, "seal": ctx.manifest_sha256, "experiment": experiment}
    ctx.ledger.append(Kind.GATE, record)
    fault("gate:answered")  # the query is spent; the experiment is not recorded yet
    return record


def lord_stream(ctx: Context, entries: list | None = None) -> tuple[int, list[int], int]:
    """(the next test's number, the numbers of the tests that passed, the answers left) under the current seal."""
    g = ctx.config.gate
    tests = [e.data for e in ctx.gates(entries) if e.data.get("kind") == "lord"]
    left = tests[-1]["budget_left"] if tests else g.budget
    return len(tests) + 1, [t["test"] for t in tests if t["passed"]], left


def ask_lord(ctx: Context, *, gain: float, se: float, to_beat: float, entries: list) -> dict:
    """One test of the holdout stream at LORD++'s level (holdout/fdr.py), recorded before anyone acts on it."""
    from holdout.fdr import GAMMA_EXPONENT

    g = ctx.config.gate
    test, discoveries, left = lord_stream(ctx, entries)
    if left <= 0:
        return {"kind": "lord", "exhausted": True, "answer": None, "budget_left": 0}
    answer = holdout_gate.lord(gain=gain, se=se, test=test, discoveries=discoveries, fdr=g.fdr,
                               exponent=GAMMA_EXPONENT, to_beat=to_beat, budget_left=left)
    from holdout.ledger import Kind

    query = sum(e.kind == Kind.GATE for e in entries) + 1
    return _spend(ctx, {**answer.to_dict(), "query": query}, entries)


def ask_gate(ctx: Context, *, dev_gain: float, holdout_gain: float, se: float, entries: list) -> dict:
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
    return _spend(ctx, {**answer.to_dict(), "se": se, "query": query}, entries)


def lord_result(answer: dict) -> GuardResult:
    """Keep only when the holdout test passed at its level; a refusal says how large a gain would have passed."""
    if answer.get("exhausted"):
        return GuardResult(GuardName.HOLDOUT_GATE, False, "the holdout gate's budget of tests is spent: reseal with "
                           "`ratchet reseal`", {"budget_left": 0})
    a = answer
    stream = (f"test {a['test']} of the holdout stream, level {a['level']:.3g} (LORD++ at false-discovery rate "
              f"{a['fdr']:g}, {len(a['discoveries'])} earlier pass{'es' if len(a['discoveries']) != 1 else ''})")
    figures = {"test": "holdout z-test, LORD++ level", "test_number": a["test"], "level": a["level"],
               "critical_z": a["critical_z"], "passed": a["passed"], "budget_left": a["budget_left"],
               "needed_gain": a["critical_z"] * a["se"]}
    if a["passed"]:  # a refusal's p-value would reveal its holdout gain: only the ledger holds it, for the audit
        figures.update(p_value=a["p_value"], estimate=a["estimate"], lower=a["lower"], upper=a["upper"],
                       answer=a["answer"])
        return GuardResult(GuardName.HOLDOUT_GATE, True, "the holdout confirms a gain over the champion at p "
                           f"{a['p_value']:.2g} "
                           f"({stream}); corrected for that selection it is {a['estimate']:+.4g} per row (90 % "
                           f"interval {a['lower']:+.4g} to {a['upper']:+.4g}); tests left {a['budget_left']}", figures)
    # The raw holdout gain of a refused candidate is not revealed: only that it fell short of the bar.
    return GuardResult(GuardName.HOLDOUT_GATE, False,
                       f"the holdout does not confirm the gain: {stream} needs a gain of about "
                       f"{a['critical_z'] * a['se']:+.4g} per row over the champion ({a['critical_z']:.2f} standard "
                       f"errors) and the candidate's fell short; tests left {a['budget_left']}", figures)


def gate_result(answer: dict | None, tolerance: float) -> GuardResult | None:
    """Keep only when the gate's answer for the candidate beats the answer kept with the champion (None: not asked)."""
    if answer is None:
        return None
    if answer.get("kind") == "lord":
        return lord_result(answer)
    if answer.get("exhausted"):
        return GuardResult(GuardName.HOLDOUT_GATE, False,
                           "the holdout gate's budget is spent: reseal with `ratchet reseal`",
                           {"budget_left": 0})
    ladder = answer["kind"] != "not_worse"
    step = answer.get("step", 0.0) if ladder else 0.0
    to_beat = answer["to_beat"] + (step if ladder else -tolerance)
    ok = answer["answer"] > to_beat
    how = "noisy holdout gain" if answer["overflow"] else "dev gain (holdout agrees)"
    need = f" + step {step:.4f}" if ladder else ""
    return GuardResult(GuardName.HOLDOUT_GATE, ok,
                       f"gate answered {how} {answer['answer']:+.4f} over {answer['reference']}; "
                       f"to replace the champion it must exceed {answer['to_beat']:+.4f}{need}; "
                       f"budget left {answer['budget_left']}",
                       {"answer": answer["answer"], "to_beat": answer["to_beat"], "step": step,
                        "overflow": answer["overflow"], "budget_left": answer["budget_left"]})
