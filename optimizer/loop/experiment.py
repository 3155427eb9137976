"""One experiment: integrity -> evaluate -> judge -> gate -> (refits) -> verdict -> record.

The scorer runs here, in the parent; the candidate only ever sees rows without labels, in a sandbox. Every
experiment, kept, reverted or crashed, leaves an immutable record, a ledger entry and an MLflow run. The stages
themselves live in optimizer/loop/stages/.
"""
from __future__ import annotations

import time
from typing import Any

from guards import GuardName, GuardResult, Verdict
from holdout import queries
from holdout.hashing import sha256_bytes
from holdout.ledger import Kind, per_entry
from optimizer import __version__
from optimizer.base.diffs import unified_diff
from optimizer.base.errors import IntegrityError
from optimizer.loop.stages import Evaluation, PolicyRunner, evaluate, gate, judge, record, refit_spread, scores
from optimizer.records.context import Context, chain_problems
from optimizer.records.experiment_record import CRASH_GUARDS, ExperimentRecord, ExperimentStatus
from optimizer.records.policy_state import PolicyState, decisions_sha256


@per_entry
def _judged(entry: Any) -> bool:
    """Whether an experiment's ledger entry holds a significance result (a look at dev)."""
    return Verdict.from_dicts(entry.data.get("reasons", ())).result(GuardName.SIGNIFICANCE) is not None


def baseline_state(ctx: Context, sandbox: PolicyRunner, source: str, commit: str) -> tuple[PolicyState, Any]:
    """Evaluate the starting champion; its dev metrics become the harm guardrails' reference."""
    from optimizer.base.errors import RatchetError

    evaluation = evaluate(ctx, sandbox, source)
    if not evaluation.passed:
        failed = evaluation.results[-1]
        raise RatchetError(f"{ctx.ws.policy}: the starting policy itself fails guard '{failed.name}': "
                           f"{failed.detail}. Fix it before running the loop.")
    assert evaluation.decisions is not None, "a passed evaluation has its decisions"
    dev, _ = scores(ctx, evaluation.decisions, evaluation.constants)
    state = PolicyState("baseline", commit, evaluation.decisions["dev"], evaluation.decisions["holdout"],
                        dict(evaluation.constants), dict(dev.metrics), 0.0, ctx.manifest_sha256)
    return state, evaluation


def run_experiment(ctx: Context, sandbox: PolicyRunner, source: str, *, proposer: str, hypothesis: str,
                   keep: bool = True, tracker: Any = None, parent_run: bool = False,
                   proposal: dict[str, Any] | None = None, evaluated: Evaluation | None = None) -> ExperimentRecord:
    """The whole pipeline for one candidate. `keep=False` judges without committing (ratchet try). `evaluated`:
    the candidate's evaluation made elsewhere (an executor running many at once); the rest runs here, in order."""
    started = time.perf_counter()
    ws = ctx.ws
    entries = ctx.ledger.entries()  # one read: numbering, looks and the gate's state
    broken = chain_problems(ctx.ledger, entries, ws.root)
    if broken:  # not a verdict to record: nothing is appended to a chain that no longer proves anything
        raise IntegrityError(broken[0])
    number = queries.next_number(entries)
    parent, old = ws.head(), ws.champion_source()
    # program.md is the person's direction file: editing it between experiments is allowed.
    foreign = [f for f in ws.changed_files() if f not in ("policy.py", "program.md")]
    integrity = ctx.verify(entries) + [f"{f} differs from the last kept commit (only policy.py may change)" for f in foreign]
    results = [GuardResult(GuardName.INTEGRITY, not integrity, "; ".join(integrity) or
                           "holdout, seal, scorer, splits, config and cached states verified; only policy.py differs")]
    evaluation = judgement = outcome = None
    if not integrity and source == old:
        results.append(GuardResult(GuardName.CHANGE, False, "the candidate is identical to the champion's policy.py: "
                                   "nothing to judge, nothing to keep"))
    elif not integrity:
        champion, baseline = ctx.champion(), ctx.baseline()
        assert champion is not None and baseline is not None, "the loop evaluates the baseline first"
        ws.stage(source)
        evaluation = evaluated if evaluated is not None else evaluate(ctx, sandbox, source)
        results += evaluation.results
        if evaluation.passed:
            looks = 1 + sum(_judged(e) for e in entries if e.kind == Kind.EXPERIMENT)
            judgement = judge(ctx, evaluation, source, champion=champion, baseline=baseline, looks=looks,
                              number=number)
            results += judgement.results
            if judgement.passed:  # the holdout is asked only once every other guard passed
                outcome = gate(ctx, judgement, champion, entries)
                results.append(outcome.result)
    timings = dict(evaluation.timings) if evaluation else {}
    spread = 0.0
    if keep and outcome is not None and Verdict(tuple(results)).kept:
        t0 = time.perf_counter()
        spread, problem = refit_spread(ctx, sandbox, source)  # the next candidates are judged against this champion
        timings["refit"] = time.perf_counter() - t0
        if problem:
            results.append(GuardResult(GuardName.REFIT, False,
                                       f"the candidate's training noise cannot be measured, so it "
                                       f"cannot be the champion later candidates are judged against: {problem}"))
    verdict = Verdict(tuple(results))
    if verdict.kept:
        status = ExperimentStatus.KEPT if keep else ExperimentStatus.WOULD_KEEP
    else:
        crashed = any(r.name in CRASH_GUARDS for r in verdict.failures)
        status = ExperimentStatus.CRASHED if crashed else ExperimentStatus.REVERTED
    timings["total"] = time.perf_counter() - started + (timings.get("evaluate", 0.0) if evaluated else 0.0)
    dev_metrics = {k: float(v) for k, v in judgement.dev.metrics.items()} if judgement else {}
    values = evaluation.decisions if evaluation else None
    rec = ExperimentRecord(
        experiment=queries.experiment_id(number), number=number, proposer=proposer, hypothesis=hypothesis, status=status,
        verdict=verdict, parent_commit=parent, commit=None, policy_sha256=sha256_bytes(source.encode()),
        diff=unified_diff(old, source), dev_metrics=dev_metrics, gate=outcome.answer if outcome else None,
        fit=dict(evaluation.fit) if evaluation else {}, seconds={k: round(v, 4) for k, v in timings.items()},
        proposal=dict(proposal or {}), decisions_sha256=decisions_sha256(values) if values is not None else {},
        scorer={"version": __version__, "sources_sha256": str(ctx.in_force(entries).digest)},
    )
    state = None
    if rec.kept:  # every guard passed: the candidate was evaluated, judged and gated (after the baseline)
        assert outcome is not None and evaluation is not None and values is not None, "a keep passed the gate"
        reference = ctx.reference()
        assert reference is not None and champion is not None, "the loop evaluates the baseline first"
        reported = reference.reported + float(outcome.answer["answer"])
        a = outcome.answer
        # A lord gate's keep carries its selection-corrected interval; the totals' ends add up step by step.
        lower, upper = ((champion.reported_lower + a["lower"], champion.reported_upper + a["upper"])
                        if a.get("kind") == "lord" else (reported, reported))
        state = PolicyState(rec.experiment, "", values["dev"], values["holdout"], dict(evaluation.constants),
                            dev_metrics, reported, ctx.manifest_sha256, spread, lower, upper)
    elif not integrity:
        ws.revert()
    return record(ctx, rec, source, evaluation=evaluation, judgement=judgement, tracker=tracker, nested=parent_run,
                  state=state)
