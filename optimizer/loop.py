"""The loop: propose -> experiment -> keep or revert -> observe, until the budget is spent.

Ctrl-C stops after cleaning up the running experiment; the workspace is left at its last kept
commit and a later `ratchet run` resumes (the ledger numbers experiments, the study persists).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from guards import Verdict
from holdout.evidence import bind_state
from holdout.ledger import Kind
from holdout.records import Tag
from optimizer.context import Context, PolicyState, load_context
from optimizer.errors import RatchetError
from optimizer.experiment import ExperimentRecord, baseline_state, run_experiment
from optimizer.faults import fault
from optimizer.proposers import ProposalContext, Proposer
from optimizer.runner import exclusive
from optimizer.stages import refit_spread


@dataclass(frozen=True)
class Started:
    """The loop began: the sandbox's active isolation layers and the proposer chosen (and why)."""

    layers: tuple[str, ...]
    proposer: str
    why: str


@dataclass(frozen=True)
class BaselineReady:
    champion: PolicyState


@dataclass(frozen=True)
class Proposed:
    index: int
    hypothesis: str


@dataclass(frozen=True)
class Recorded:
    record: ExperimentRecord


LoopEvent = Started | BaselineReady | Proposed | Recorded  # what `run_loop` tells its `on_event` as it goes


@dataclass
class LoopSummary:
    records: list[ExperimentRecord] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: str = ""

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.records)


def open_tracker(ctx: Context):
    from optimizer.tracking import Tracker

    seal = [e for e in ctx.ledger.entries() if e.kind in (Kind.SEAL, Kind.RESEAL)][-1].data
    tracker = Tracker(seal["mlflow"]["experiment"])
    tracker.end_stale_runs()  # a killed run's loop and experiment runs stay RUNNING otherwise
    return tracker


def ensure_baseline(ctx: Context, sandbox: Any, tracker: Any = None) -> PolicyState:
    """The first time a workspace runs, its starting policy is evaluated and becomes the champion."""
    state = ctx.baseline()
    if state is not None:
        champion = ctx.champion()
        if champion is not None and champion.seal != ctx.manifest_sha256:
            refresh_champion(ctx, sandbox, champion)
        return state
    source = ctx.ws.champion_source()
    state, run = baseline_state(ctx, sandbox, source, ctx.ws.head())
    spread, problem = refit_spread(ctx, sandbox, source)
    if problem:
        raise RatchetError(f"{ctx.ws.policy}: the starting policy fails a refit, so its training noise cannot be "
                           f"measured: {problem}. Fix it, or set decision.refits to 0 in the config at init.")
    state = dataclasses.replace(state, refit_sd=spread)
    # Written first, then bound: a stop in between leaves unbound files that the next load removes.
    state.save(ctx.baseline_dir)
    state.save(ctx.champion_dir)
    fault("baseline:saved")
    ctx.ledger.append(Kind.BASELINE, {"commit": state.commit, "dev_metrics": state.dev_metrics, "refit_sd": state.refit_sd,
                                   "fit": dict(run.fit), "seconds": dict(run.timings), "decisions_sha256": state.decisions_sha256(),
                                   "evidence": {**bind_state(ctx.ws.root, "baseline"),
                                                **bind_state(ctx.ws.root, "champion")}})
    fault("baseline:recorded")
    if tracker is not None:
        nested = tracker.mlflow.active_run() is not None
        with tracker.run("baseline", nested=nested, tags={Tag.KIND: "baseline", Tag.COMMIT: state.commit}) as active:
            tracker.mlflow.log_metrics({f"dev_{k}": v for k, v in state.dev_metrics.items()})
            tracker.mlflow.log_text(source, "policy.py")
            from optimizer.registry import register  # the baseline is version 1 of the workspace's model

            register(tracker, ctx, experiment="baseline", commit=state.commit, source=source, model=run.model,
                     run_id=active.info.run_id)
    return state


def refresh_champion(ctx: Context, sandbox: Any, champion: PolicyState) -> None:
    """After a reseal the champion decides once on the new holdout rows (dev decisions are unchanged) and
    becomes the gate's reference: the new holdout has seen no other policy."""
    fresh, _ = baseline_state(ctx, sandbox, ctx.ws.champion_source(), champion.commit)
    refreshed = dataclasses.replace(champion, holdout=fresh.holdout, seal=ctx.manifest_sha256)
    refreshed.save(ctx.champion_dir)
    refreshed.save(ctx.reference_dir)
    ctx.ledger.append(Kind.CHAMPION_REFRESH, {"experiment": champion.experiment, "seal": ctx.manifest_sha256,
                                           "decisions_sha256": refreshed.decisions_sha256(),
                                           "evidence": {**bind_state(ctx.ws.root, "champion"),
                                                        **bind_state(ctx.ws.root, "reference")}})


def history(entries: list, limit: int = 50) -> list[dict]:
    """Earlier experiments as proposers may see them: dev metrics, verdicts, reasons (no holdout)."""
    out = []
    for e in [e for e in entries if e.kind == Kind.EXPERIMENT][-limit:]:
        d = e.data
        out.append({**{k: d.get(k) for k in ("experiment", "hypothesis", "status", "dev_metrics", "reasons")},
                    "failed_guards": list(Verdict.from_dicts(d.get("reasons") or ()).failed_guards)})
    return out


def choose_proposer(name: str | None) -> tuple[str, str]:
    """The proposer to use and why: with none named, the meta-agent when an API key is present."""
    if name is not None:
        return name, "chosen with --proposer"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic", "ANTHROPIC_API_KEY is set"
    return "optuna", "no ANTHROPIC_API_KEY; set one to use the meta-agent"


def make_proposer(ctx: Context, name: str, patches: Path | None) -> Proposer:
    from optimizer.proposers import OptunaProposer, PatchesProposer

    if name == "anthropic":
        from optimizer.stages import static_check
        from optimizer.proposers._anthropic import AnthropicProposer

        def check(source: str) -> str | None:
            result = static_check(ctx, source)
            return None if result.passed else f"static scan: {result.detail}"

        entries = ctx.ledger.entries()
        return AnthropicProposer(
            config=ctx.config.agent, experiments=ctx.ws.experiments, primary=ctx.domain.primary, check=check,
            canaries=list(ctx.manifest["canaries"]), holdout_ids=ctx.holdout_ids(),
            spent=sum(float(e.data.get("cost_usd", 0.0)) for e in entries if e.kind == Kind.AGENT_USAGE),
            record=ctx.ledger.append)
    if name == "optuna":
        return OptunaProposer(ctx.ws.study, seed=ctx.config.seed, primary=ctx.domain.primary,
                              direction="maximize" if ctx.domain.higher_is_better else "minimize")
    if name == "patches":
        if patches is None:
            raise RatchetError("--proposer patches needs --patches FOLDER (candidate policy files).")
        return PatchesProposer(patches)
    raise RatchetError(f"unknown proposer {name!r}; available: optuna, patches, anthropic.")


@exclusive
def run_loop(path: Path, *, experiments: int, budget: float | None = None, total_time: float | None = None,
             proposer: str | None = "optuna", patches: Path | None = None,
             on_event: Callable[[LoopEvent], None] = lambda event: None) -> LoopSummary:
    from optimizer.sandbox import Sandbox
    from optimizer.task_agent import open_broker

    ctx = load_context(path)
    broker = open_broker(ctx)  # refuses a task-agent workspace without an API key, before any sandbox work
    if budget is not None:
        ctx.config = ctx.config.model_copy(update={"sandbox": ctx.config.sandbox.model_copy(update={"budget_s": budget})})
    deadline = time.monotonic() + total_time if total_time else None
    summary = LoopSummary()
    tracker = open_tracker(ctx)
    proposer, why = choose_proposer(proposer)
    prop = make_proposer(ctx, proposer, patches)
    ctx.ws.revert()  # whatever an earlier crash left in policy.py is not part of the champion
    try:
        with Sandbox(memory_mb=ctx.config.sandbox.memory_mb, broker=broker) as sandbox, \
                tracker.run("loop", tags={Tag.KIND: "loop", Tag.PROPOSER: prop.name}):
            on_event(Started(tuple(sandbox.layers), prop.name, why))
            ensure_baseline(ctx, sandbox, tracker)
            on_event(BaselineReady(ctx.champion()))
            for i in range(experiments):
                if deadline and time.monotonic() >= deadline:
                    summary.stop_reason = "time budget spent"
                    break
                entries = ctx.ledger.entries()
                gates = ctx.gates(entries)
                if ctx.config.gate.kind == "thresholdout" and gates and gates[-1].data["budget_left"] <= 0:
                    summary.stop_reason = (f"the holdout gate's budget ({ctx.config.gate.budget}) is spent; run "
                                           f"`ratchet reseal {path}` to seal a fresh holdout")
                    break
                candidate = prop.propose(ProposalContext(ctx.ws.champion_source(), ctx.ws.program.read_text(),
                                                         history(entries)))
                if candidate is None:
                    summary.stop_reason = getattr(prop, "stop_reason", "") or "the proposer has no more candidates"
                    break
                on_event(Proposed(i, candidate.hypothesis))
                record = run_experiment(ctx, sandbox, candidate.source, proposer=prop.name,
                                        hypothesis=candidate.hypothesis, tracker=tracker, parent_run=True,
                                        proposal=dict(candidate.meta))
                prop.observe(candidate, record)
                summary.records.append(record)
                on_event(Recorded(record))
            else:
                summary.stop_reason = f"{experiments} experiments done"
    except KeyboardInterrupt:
        from optimizer.keep import reconcile

        reconcile(ctx, reason="interrupted")  # a keep the interrupt cut short is completed or rolled back
        summary.interrupted = True
        summary.stop_reason = "interrupted; the workspace is at its last kept commit"
    finally:
        prop.close()
        ctx.ws.revert()
    return summary
