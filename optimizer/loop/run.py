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
from holdout import queries
from holdout.entries import Baseline, ChampionRefresh
from holdout.evidence import bind_state
from holdout.ledger import Kind, per_entry
from holdout.records import Tag
from optimizer.base.errors import RatchetError
from optimizer.base.faults import fault
from optimizer.loop.experiment import ExperimentRecord, baseline_state, run_experiment
from optimizer.loop.power import bar as power_bar
from optimizer.loop.session import open_session
from optimizer.loop.stages import refit_spread
from optimizer.proposers import ProposalContext, Proposer
from optimizer.records.context import Context
from optimizer.records.policy_state import PolicyState
from optimizer.tracking import recorder


@dataclass(frozen=True)
class Started:
    """The loop began: the sandbox's active isolation layers and the proposer chosen (and why)."""

    layers: tuple[str, ...]
    proposer: str
    why: str


@dataclass(frozen=True)
class BaselineReady:
    champion: PolicyState
    bar: Any = None  # optimizer.loop.power.Bar: how large a gain the next candidate needs


@dataclass(frozen=True)
class Proposed:
    index: int
    hypothesis: str


@dataclass(frozen=True)
class Recorded:
    record: ExperimentRecord
    bar: Any = None  # optimizer.loop.power.Bar after this record


@dataclass(frozen=True)
class TrackingChanged:
    """MLflow stopped answering (`down` says why) or answers again (`down` is None) during the run."""

    uri: str
    down: str | None




@dataclass
class LoopSummary:
    records: list[ExperimentRecord] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: str = ""
    untracked: tuple[str, ...] = ()  # recorded while MLflow was down and not written there yet (`ratchet sync`)

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.records)


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
    ctx.ledger.append(Kind.BASELINE, Baseline(
        commit=state.commit, dev_metrics=state.dev_metrics, refit_sd=state.refit_sd, fit=dict(run.fit),
        seconds=dict(run.timings), decisions_sha256=state.decisions_sha256(),
        evidence={**bind_state(ctx.ws.root, "baseline"), **bind_state(ctx.ws.root, "champion")}).to_payload())
    fault("baseline:recorded")
    if tracker is not None:
        def write() -> None:
            nested = tracker.mlflow.active_run() is not None
            with tracker.run("baseline", nested=nested, tags={Tag.KIND: "baseline", Tag.COMMIT: state.commit}) as active:
                tracker.mlflow.log_metrics({f"dev_{k}": v for k, v in state.dev_metrics.items()})
                tracker.mlflow.log_text(source, "policy.py")
                from optimizer.tracking.registry import register  # the baseline is version 1 of the workspace's model

                register(tracker, ctx, experiment="baseline", commit=state.commit, source=source, model=run.model,
                         run_id=active.info.run_id)

        tracker.attempt("baseline", write)  # missed: `ratchet sync` writes it from the ledger
    return state


def refresh_champion(ctx: Context, sandbox: Any, champion: PolicyState) -> None:
    """After a reseal the champion decides once on the new holdout rows (dev decisions are unchanged) and
    becomes the gate's reference: the new holdout has seen no other policy."""
    fresh, _ = baseline_state(ctx, sandbox, ctx.ws.champion_source(), champion.commit)
    refreshed = dataclasses.replace(champion, holdout=fresh.holdout, seal=ctx.manifest_sha256)
    refreshed.save(ctx.champion_dir)
    refreshed.save(ctx.reference_dir)
    ctx.ledger.append(Kind.CHAMPION_REFRESH, ChampionRefresh(
        experiment=champion.experiment, seal=ctx.manifest_sha256, decisions_sha256=refreshed.decisions_sha256(),
        evidence={**bind_state(ctx.ws.root, "champion"), **bind_state(ctx.ws.root, "reference")}).to_payload())


@per_entry
def _seen(entry: Any) -> dict:
    """What a proposer sees of one experiment."""
    d = entry.data
    return {**{k: d.get(k) for k in ("experiment", "hypothesis", "status", "dev_metrics", "reasons")},
            "failed_guards": list(Verdict.from_dicts(d.get("reasons") or ()).failed_guards)}


def history(entries: list, limit: int = 50) -> list[dict]:
    """Earlier experiments as proposers may see them: dev metrics, verdicts, reasons (no holdout)."""
    return [dict(_seen(e)) for e in [e for e in entries if e.kind == Kind.EXPERIMENT][-limit:]]


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
        from optimizer.loop.stages import static_check
        from optimizer.proposers._anthropic import AnthropicProposer

        def check(source: str) -> str | None:
            result = static_check(ctx, source)
            return None if result.passed else f"static scan: {result.detail}"

        entries = ctx.ledger.entries()
        return AnthropicProposer(
            config=ctx.config.agent, experiments=ctx.ws.experiments, primary=ctx.domain.primary, check=check,
            canaries=list(ctx.manifest["canaries"]), holdout_ids=ctx.holdout_ids(),
            spent=queries.spent_usd(entries, Kind.AGENT_USAGE),
            record=ctx.ledger.append)
    if name == "optuna":
        return OptunaProposer(ctx.ws.study, seed=ctx.config.seed, primary=ctx.domain.primary,
                              direction="maximize" if ctx.domain.higher_is_better else "minimize")
    if name == "patches":
        if patches is None:
            raise RatchetError("--proposer patches needs --patches FOLDER (candidate policy files).")
        return PatchesProposer(patches)
    raise RatchetError(f"unknown proposer {name!r}; available: optuna, patches, anthropic.")


def _gate_spent(ctx: Context, path: Path, entries: list | None = None) -> str:
    """Why no candidate may be judged now (the gate's budget is spent), or ""."""
    gates = queries.gates(ctx.ledger.entries() if entries is None else entries)
    if ctx.config.gate.kind in ("thresholdout", "lord") and gates and gates[-1].budget_left <= 0:
        return (f"the holdout gate's budget ({ctx.config.gate.budget}) is spent; run `ratchet reseal {path}` to "
                "seal a fresh holdout")
    return ""


@dataclass(frozen=True)
class Dropped:
    """A candidate of a round that was not judged: its change does not apply to the champion kept before it."""

    hypothesis: str
    why: str


LoopEvent = Started | BaselineReady | Proposed | Recorded | Dropped


def run_loop(path: Path, *, experiments: int, budget: float | None = None, total_time: float | None = None,
             proposer: str | None = "optuna", patches: Path | None = None, parallel: int = 1,
             executor: str = "local", scheduler: str | None = None,
             on_event: Callable[[LoopEvent], None] = lambda event: None) -> LoopSummary:
    """Propose, experiment, keep or revert until `experiments` are recorded, the time or the holdout budget is spent,
    or the proposer runs out. With `parallel` K > 1 (or a Dask executor) each round proposes K candidates on the
    same champion and evaluates them at once; judge, gate and record still run here, one at a time, in proposal
    order, so the verdicts do not depend on which evaluation finished first."""
    if parallel < 1:
        raise RatchetError(f"--parallel must be at least 1, got {parallel}.")
    rounds = parallel > 1 or executor != "local"
    with open_session(path, budget=budget, rounds=rounds) as session:
        ctx, tracker = session.ctx, session.tracker
        deadline = time.monotonic() + total_time if total_time else None
        summary = LoopSummary()
        proposer, why = choose_proposer(proposer)
        prop = make_proposer(ctx, proposer, patches)
        pool = None
        try:
            with session.sandbox() as sandbox, \
                    tracker.run("loop", tags={Tag.KIND: "loop", Tag.PROPOSER: prop.name}) as loop_run, \
                    recorder.behind(tracker, loop_run, ctx.manifest_sha256, ctx.ws.root):
                on_event(Started(tuple(sandbox.layers), prop.name, why))
                ensure_baseline(ctx, sandbox, tracker)
                champion = ctx.champion()
                assert champion is not None, "ensure_baseline leaves the baseline as the champion"
                on_event(BaselineReady(champion, power_bar(ctx, champion=champion)))
                if rounds:
                    from optimizer.loop.executors import make_executor

                    pool = make_executor(executor, sandbox=sandbox, parallel=parallel, scheduler=scheduler,
                                         memory_mb=ctx.config.sandbox.memory_mb)
                _search(ctx, sandbox, prop, tracker, pool, summary, path, experiments, deadline, on_event)
        except KeyboardInterrupt:
            from optimizer.records.recovery import reconcile

            reconcile(ctx, reason="interrupted")  # a keep the interrupt cut short is completed or rolled back
            summary.interrupted = True
            summary.stop_reason = "interrupted; the workspace is at its last kept commit"
        finally:
            if pool is not None:
                pool.close()
            prop.close()
            ctx.ws.revert()
            summary.untracked = tuple(tracker.missed)
    return summary


def _search(ctx: Context, sandbox: Any, prop: Proposer, tracker: Any, pool: Any, summary: LoopSummary, path: Path,
            experiments: int, deadline: float | None, on_event: Callable) -> None:
    """Round after round until `experiments` are recorded or a stop reason is found (it is in `summary`)."""
    carried: list = []  # candidates rebased after a keep, evaluated again in the next round
    while len(summary.records) < experiments:
        if deadline and time.monotonic() >= deadline:
            summary.stop_reason = "time budget spent"
            break
        entries = ctx.ledger.entries()  # one read a round: the gate's state and the proposers' history
        if spent := _gate_spent(ctx, path, entries):
            summary.stop_reason = spent
            break
        base = ctx.ws.champion_source()
        context = ProposalContext(base, ctx.ws.program.read_text(), history(entries))
        want = min(pool.workers if pool else 1, experiments - len(summary.records))
        batch = carried + prop.propose_batch(context, want - len(carried)) if want > len(carried) else carried
        carried = []
        if not batch:
            summary.stop_reason = getattr(prop, "stop_reason", "") or "the proposer has no more candidates"
            break
        for candidate in batch:
            on_event(Proposed(len(summary.records) + batch.index(candidate), candidate.hypothesis))
        evaluations = pool.evaluate_many(ctx, [c.source for c in batch]) if pool else [None]
        carried, stop = _judge_round(ctx, sandbox, prop, tracker, batch, evaluations, base, summary, path,
                                     on_event)
        if stop:
            summary.stop_reason = stop
            break
    else:
        summary.stop_reason = (f"{experiments} experiments done" if experiments else
                               "the baseline is evaluated (--experiments 0: nothing else was run)")
    for candidate in carried:
        prop.drop(candidate, "the run ended before it was judged again")


def _judge_round(ctx: Context, sandbox: Any, prop: Proposer, tracker: Any, batch: list, evaluations: list,
                 base: str, summary: LoopSummary, path: Path, on_event: Callable) -> tuple[list, str]:
    """Judge, gate and record a round's candidates in proposal order. After a keep, the rest are rebased on the new
    champion: unchanged ones are judged on their evaluation (it does not depend on the champion), changed ones go
    to the next round, ones whose change does not apply are dropped. Returns (carried, why the loop stops)."""
    carried: list = []
    kept = False
    for i, (candidate, evaluation) in enumerate(zip(batch, evaluations)):
        if kept:
            rebased = prop.rebase(candidate, base, ctx.ws.champion_source())
            if rebased is None:
                why = "its change does not apply to the champion kept earlier in its round"
                prop.drop(candidate, why)
                on_event(Dropped(candidate.hypothesis, why))
                continue
            if rebased.source != candidate.source:
                carried.append(rebased)
                continue
        if i and (spent := _gate_spent(ctx, path)):  # the loop checked before the round's first
            for rest in batch[i:]:
                prop.drop(rest, spent)
            return carried, spent
        was = tracker.down
        record = run_experiment(ctx, sandbox, candidate.source, proposer=prop.name, hypothesis=candidate.hypothesis,
                                tracker=tracker, parent_run=True, proposal=dict(candidate.meta), evaluated=evaluation)
        prop.observe(candidate, record)
        summary.records.append(record)
        if tracker.down != was:
            on_event(TrackingChanged(tracker.uri, tracker.down))
        on_event(Recorded(record, power_bar(ctx, champion=ctx.champion())))
        kept = kept or record.kept
    return carried, ""
