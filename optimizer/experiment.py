"""One experiment: integrity -> evaluate -> judge -> gate -> (refits) -> verdict -> record.

The scorer runs here, in the parent; the candidate only ever sees rows without labels, in a sandbox. Every
experiment, kept, reverted or crashed, leaves an immutable record, a ledger entry and an MLflow run. The stages
themselves live in optimizer/stages/.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from guards import GuardResult, Verdict
from holdout.hashing import sha256_bytes
from holdout.ledger import Kind, per_entry
from optimizer import __version__
from optimizer.context import Context, PolicyState, chain_problems, decisions_sha256
from optimizer.errors import IntegrityError
from optimizer.diffs import unified_diff
from optimizer.stages import Evaluation, PolicyRunner, evaluate, gate, judge, record, refit_spread, scores


class ExperimentStatus(StrEnum):
    """What became of a candidate (stored as its text)."""

    KEPT = "kept"  # every guard and the gate passed; committed as the new champion
    WOULD_KEEP = "would_keep"  # the same, judged without committing (`ratchet try` without --keep)
    REVERTED = "reverted"  # a guard or the gate refused it
    CRASHED = "crashed"  # it could not be evaluated: static scan, sandbox, output contract, or an interrupted keep


CRASH_GUARDS = ("static", "sandbox", "output", "record")  # a failure of one of these is a crash, not a verdict


@dataclass(frozen=True)
class ExperimentRecord:
    """Immutable once written and validated like Optuna's FrozenTrial: the status must agree with the verdict.
    Corrections are new records."""

    experiment: str
    number: int
    proposer: str
    hypothesis: str
    status: ExperimentStatus
    verdict: Verdict
    parent_commit: str
    commit: str | None
    policy_sha256: str
    diff: str
    dev_metrics: Mapping[str, float]
    gate: dict[str, Any] | None
    fit: dict[str, Any]
    seconds: dict[str, float]
    ledger_seq: int | None = None
    proposal: dict[str, Any] = field(default_factory=dict)  # what the proposer reported (e.g. tokens, cost)
    decisions_sha256: dict[str, str] = field(default_factory=dict)  # per row set, for `ratchet audit --replay`
    scorer: dict[str, str] = field(default_factory=dict)  # what judged it: ratchet version, the sources' digest

    def __post_init__(self) -> None:
        status = ExperimentStatus(self.status)
        object.__setattr__(self, "status", status)
        if not isinstance(self.verdict, Verdict):
            raise TypeError(f"{self.experiment}: verdict must be a guards.Verdict, got {type(self.verdict).__name__}")
        passed = self.verdict.kept
        if passed != (status in (ExperimentStatus.KEPT, ExperimentStatus.WOULD_KEEP)):
            raise ValueError(f"{self.experiment}: status {status} contradicts the verdict ({self.verdict.summary})")
        crashed = any(r.name in CRASH_GUARDS for r in self.verdict.failures)
        if not passed and crashed != (status is ExperimentStatus.CRASHED):
            raise ValueError(f"{self.experiment}: status {status} but failed guards {self.verdict.failed_guards}")
        if passed and not (self.gate and self.verdict.result("holdout_gate")):
            raise ValueError(f"{self.experiment}: a candidate is kept only on a holdout gate answer")

    @property
    def kept(self) -> bool:
        return self.status is ExperimentStatus.KEPT

    def to_payload(self) -> dict[str, Any]:
        """The ledger's form of the record (the diff is in the record folder; the sequence number is the entry's)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("diff", "ledger_seq")}
        out.update(status=str(self.status), kept=self.kept, dev_metrics=dict(self.dev_metrics),
                   reasons=[r.to_dict() for r in out.pop("verdict").results])
        return out

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], *, diff: str = "") -> "ExperimentRecord":
        """A record read back from its ledger entry (or record.json)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"verdict", "diff"}
        return cls(**{k: v for k, v in data.items() if k in names}, verdict=Verdict.from_dicts(data["reasons"]),
                   diff=diff)

    def verdict_json(self) -> dict[str, Any]:
        """The stable verdict format printed by `ratchet try --json`."""
        return {"experiment": self.experiment, "kept": self.kept,
                "metrics": {"dev": dict(self.dev_metrics), "holdout_gate": self.gate or {}},
                "reasons": [{"guard": r.name, "passed": r.passed, "detail": r.detail} for r in self.verdict.results]}


@per_entry
def _judged(entry: Any) -> bool:
    """Whether an experiment's ledger entry holds a significance result (a look at dev)."""
    return Verdict.from_dicts(entry.data.get("reasons", ())).result("significance") is not None


def baseline_state(ctx: Context, sandbox: PolicyRunner, source: str, commit: str) -> tuple[PolicyState, Any]:
    """Evaluate the starting champion; its dev metrics become the harm guardrails' reference."""
    from optimizer.errors import RatchetError

    evaluation = evaluate(ctx, sandbox, source)
    if not evaluation.passed:
        failed = evaluation.results[-1]
        raise RatchetError(f"{ctx.ws.policy}: the starting policy itself fails guard '{failed.name}': "
                           f"{failed.detail}. Fix it before running the loop.")
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
    done = [e for e in entries if e.kind == Kind.EXPERIMENT]
    number = len(done) + 1
    parent, old = ws.head(), ws.champion_source()
    # program.md is the person's direction file: editing it between experiments is allowed.
    foreign = [f for f in ws.changed_files() if f not in ("policy.py", "program.md")]
    integrity = ctx.verify(entries) + [f"{f} differs from the last kept commit (only policy.py may change)" for f in foreign]
    results = [GuardResult("integrity", not integrity, "; ".join(integrity) or
                           "holdout, seal, scorer, splits, config and cached states verified; only policy.py differs")]
    evaluation = judgement = outcome = None
    if not integrity and source == old:
        results.append(GuardResult("change", False, "the candidate is identical to the champion's policy.py: "
                                   "nothing to judge, nothing to keep"))
    elif not integrity:
        champion, baseline = ctx.champion(), ctx.baseline()
        assert champion is not None and baseline is not None, "the loop evaluates the baseline first"
        ws.stage(source)
        evaluation = evaluated if evaluated is not None else evaluate(ctx, sandbox, source)
        results += evaluation.results
        if evaluation.passed:
            looks = 1 + sum(map(_judged, done))
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
            results.append(GuardResult("refit", False, f"the candidate's training noise cannot be measured, so it "
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
        experiment=f"exp-{number:04d}", number=number, proposer=proposer, hypothesis=hypothesis, status=status,
        verdict=verdict, parent_commit=parent, commit=None, policy_sha256=sha256_bytes(source.encode()),
        diff=unified_diff(old, source), dev_metrics=dev_metrics, gate=outcome.answer if outcome else None,
        fit=dict(evaluation.fit) if evaluation else {}, seconds={k: round(v, 4) for k, v in timings.items()},
        proposal=dict(proposal or {}), decisions_sha256=decisions_sha256(values) if values is not None else {},
        scorer={"version": __version__, "sources_sha256": str(ctx.in_force(entries).digest)},
    )
    state = None
    if rec.kept:
        reported = ctx.reference().reported + float(outcome.answer["answer"])
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
