"""One experiment: stage -> static -> sandbox fit/decide -> score -> guards -> gate -> keep/revert -> record.

The scorer runs here, in the parent; the candidate only ever sees rows without labels, in a
sandbox. Every experiment, kept, reverted or crashed, leaves an immutable record, a ledger entry
and an MLflow run.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from domains import Decisions, ScoreReport
from guards import GuardResult
from holdout import gate as holdout_gate
from holdout.hashing import sha256_bytes
from optimizer.context import Context, PolicyState, decisions_sha256
from optimizer.proposers._tunables import diff as unified_diff

# Look-ahead is checked at several cuts: each exposes the rows whose "future" crosses it.
PREFIX_CUTS = (0.3, 0.6)


@dataclass(frozen=True)
class ExperimentRecord:
    """Immutable once written (like Optuna's FrozenTrial): corrections are new records."""

    experiment: str
    number: int
    proposer: str
    hypothesis: str
    status: str  # kept | reverted | crashed | baseline
    kept: bool
    parent_commit: str
    commit: str | None
    policy_sha256: str
    diff: str
    reasons: tuple[dict, ...]
    dev_metrics: dict[str, float]
    gate: dict[str, Any] | None
    fit: dict[str, Any]
    seconds: dict[str, float]
    ledger_seq: int | None = None
    proposal: dict[str, Any] = field(default_factory=dict)  # what the proposer reported (e.g. tokens, cost)
    decisions_sha256: dict[str, str] = field(default_factory=dict)  # per row set, for `ratchet audit --replay`

    def verdict_json(self) -> dict[str, Any]:
        """The stable verdict format printed by `ratchet try --json`."""
        return {"experiment": self.experiment, "kept": self.kept,
                "metrics": {"dev": self.dev_metrics, "holdout_gate": self.gate or {}},
                "reasons": [{"guard": r["guard"], "passed": r["passed"], "detail": r["detail"]} for r in self.reasons]}


@dataclass
class _Run:
    """Evidence gathered while an experiment runs (mutable scratch, never persisted as such)."""

    results: list[GuardResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    reasoning: list[dict] = field(default_factory=list)  # a task-agent policy's replies on dev (dev-only pass)

    def add(self, result: GuardResult) -> bool:
        self.results.append(result)
        return result.passed


def _scores(ctx: Context, values: dict[str, np.ndarray], constants: dict[str, Any]) -> tuple[ScoreReport, ScoreReport]:
    params = ctx.config.scoring.model_dump()
    dev = ctx.domain.score(ctx.dev, Decisions(values["dev"], constants), params)
    # Only the primary value of the holdout is ever used (by the gate): no ranking or segment detail.
    hold = ctx.domain.score(ctx.holdout, Decisions(values["holdout"][~ctx.canary_mask], constants), params,
                            detail=False)
    return dev, hold


def phase_failure(phase: str, result: Any) -> GuardResult:
    """A failed decide phase under the guard it belongs to: `output` when decide returned the wrong thing
    (type, shape, length, dtype), whichever phase detected it; `sandbox` when the process itself failed."""
    guard = "output" if result.status == "output" else "sandbox"
    what = "returned output that breaks the contract" if guard == "output" else result.status
    return GuardResult(guard, False, f"{phase} {what}: {result.error}",
                       {"phase": "decide", "status": result.status, "violations": list(result.violations)})


def static_check(ctx: Context, source: str) -> GuardResult:
    """The static scan with the workspace's allow-list, and the policy contract's top-level names."""
    from guards.static import has_contract, scan

    static = scan(source, allowed_imports=ctx.config.static.allowed_imports,
                  max_literal_len=ctx.config.static.max_literal_len,
                  max_collection_items=ctx.config.static.max_collection_items)
    missing = has_contract(source)
    if static.passed and missing:
        static = GuardResult("static", False, f"policy.py does not define {', '.join(missing)} at top level")
    return static


def evaluate(ctx: Context, sandbox: Any, source: str, run: _Run) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Static scan, fit and decide in the sandbox, output contract and look-ahead. None on failure."""
    from guards.lookahead import check_point_in_time, cut_rows

    if not run.add(static_check(ctx, source)):
        return None
    broker = getattr(sandbox, "broker", None)
    if broker is not None:
        broker.take_usage()  # what earlier phases (refits) used is in the ledger, not in this record
    budget = ctx.config.sandbox.budget_s
    t0 = time.perf_counter()
    fitted = sandbox.fit(source, ctx.domain.policy_view(ctx.train, with_label=True), budget_s=budget)
    run.timings["fit"] = time.perf_counter() - t0
    run.log = fitted.log
    run.fit = {"device": fitted.device, "fit_seconds": fitted.fit_seconds, "status": fitted.status}
    if fitted.status != "ok":
        run.add(GuardResult("sandbox", False, f"fit phase {fitted.status}: {fitted.error}",
                            {"phase": "fit", "status": fitted.status, "violations": list(fitted.violations)}))
        return None
    dev_view = ctx.domain.policy_view(ctx.dev, with_label=False)
    cuts = {f"dev_prefix_{int(f * 100)}": cut_rows(len(dev_view), f) for f in PREFIX_CUTS}
    rows = {"dev": dev_view, "holdout": ctx.domain.policy_view(ctx.holdout_all, with_label=False),
            **{name: dev_view.iloc[:cut].reset_index(drop=True) for name, cut in cuts.items()}}
    if broker is not None:  # a policy that asks a model: its reasoning comes from a pass with no holdout row
        explained = sandbox.decide(source, fitted.model, {"dev": dev_view}, budget_s=budget,
                                   constants=ctx.domain.constants)
        run.reasoning = broker.take_reasoning()
        if explained.status != "ok":
            run.fit["task_agent"] = broker.take_usage()
            run.add(phase_failure("decide phase (dev only)", explained))
            return None
    t0 = time.perf_counter()
    decided = sandbox.decide(source, fitted.model, {k: rows[k] for k in ("dev", "holdout")}, budget_s=budget,
                             constants=ctx.domain.constants)
    run.timings["decide"] = time.perf_counter() - t0
    if broker is not None and decided.status != "ok":
        run.fit["task_agent"] = broker.take_usage()
    run.fit["decide_seconds"] = decided.decide_seconds
    if decided.status != "ok":
        run.add(phase_failure("decide phase", decided))
        return None
    # The prefixes are decided in a fresh process: one that had seen the whole of dev could replay its
    # look-ahead decisions from memory and pass the comparison.
    prefixes = sandbox.decide(source, fitted.model, {k: rows[k] for k in cuts}, budget_s=budget,
                              constants=ctx.domain.constants)
    if broker is not None:
        run.fit["task_agent"] = broker.take_usage()
    if prefixes.status != "ok":
        run.add(phase_failure("decide phase (dev prefixes)", prefixes))
        return None
    run.add(GuardResult("sandbox", True, "fit and decide stayed inside the sandbox",
                        {"fit_seconds": fitted.seconds, "decide_seconds": decided.seconds + prefixes.seconds}))
    decisions = {**decided.decisions, **prefixes.decisions}
    for name in rows:
        problem = ctx.domain.check_decisions(Decisions(decisions[name], decided.constants), rows[name],
                                             ctx.config.scoring.model_dump())
        if problem:
            run.add(GuardResult("output", False, f"{name} rows: {problem}", {"row_set": name}))
            return None
    run.add(GuardResult("output", True, "decisions meet the output contract on every row set"))
    if dict(prefixes.constants) != dict(decided.constants):
        # A constant a policy sets while deciding applies to every row: one that depends on the rows it was
        # shown (a threshold fitted to the holdout's scores, or set from the last batch) is look-ahead too.
        changed = sorted(k for k in {*decided.constants, *prefixes.constants}
                         if decided.constants.get(k) != prefixes.constants.get(k))
        run.add(GuardResult("lookahead", False, f"module constant {', '.join(changed)} differs between deciding dev "
                            "and holdout and deciding dev prefixes: a constant set while deciding depends on the "
                            "rows shown", {"constants": changed}))
        return None
    checks = [check_point_in_time(decisions[name], decisions["dev"][:cut]) for name, cut in cuts.items()]
    failed = [(name, c) for name, c in zip(cuts, checks) if not c.passed]
    if failed:
        name, c = failed[0]
        run.add(GuardResult("lookahead", False, f"cut at {name[len('dev_prefix_'):]}% of dev: {c.detail}", c.figures))
        return None
    run.add(checks[-1])
    return decisions, dict(decided.constants)


def baseline_state(ctx: Context, sandbox: Any, source: str, commit: str) -> tuple[PolicyState, _Run]:
    """Evaluate the starting champion; its dev metrics become the guardrail floors' reference."""
    run = _Run()
    out = evaluate(ctx, sandbox, source, run)
    if out is None:
        failed = [r for r in run.results if not r.passed]
        from optimizer.errors import RatchetError

        raise RatchetError(f"{ctx.ws.policy}: the starting policy itself fails guard '{failed[-1].name}': "
                           f"{failed[-1].detail}. Fix it before running the loop.")
    values, constants = out
    dev, hold = _scores(ctx, values, constants)
    state = PolicyState("baseline", commit, values["dev"], values["holdout"], constants, dict(dev.metrics), 0.0,
                        ctx.manifest_sha256)
    return state, run


def refit_spread(ctx: Context, sandbox: Any, source: str) -> tuple[float, str | None]:
    """How much a policy's dev score moves from training randomness: the std over `decision.refits` fits on
    seeded 90 % subsamples of train (time order kept), and why it could not be measured (None when it was).
    0 only when refits are disabled: a failed refit is lost evidence, never a silent zero."""
    n = ctx.config.decision.refits
    if n < 2:
        return 0.0, None
    budget = ctx.config.sandbox.budget_s
    dev_view = ctx.domain.policy_view(ctx.dev, with_label=False)
    params = ctx.config.scoring.model_dump()
    values = []
    for k in range(n):
        sample = ctx.train.sample(frac=0.9, random_state=ctx.config.seed * 1000 + k).sort_index()
        fitted = sandbox.fit(source, ctx.domain.policy_view(sample, with_label=True), budget_s=budget)
        if fitted.status != "ok":
            return 0.0, f"refit {k + 1} of {n} (90 % of train): fit {fitted.status}: {fitted.error}"
        decided = sandbox.decide(source, fitted.model, {"dev": dev_view}, budget_s=budget,
                                 constants=ctx.domain.constants)
        if decided.status != "ok":
            return 0.0, f"refit {k + 1} of {n} (90 % of train): decide {decided.status}: {decided.error}"
        problem = ctx.domain.check_decisions(Decisions(decided.decisions["dev"], decided.constants), dev_view, params)
        if problem:
            return 0.0, f"refit {k + 1} of {n} (90 % of train): {problem}"
        values.append(ctx.domain.score(ctx.dev, Decisions(decided.decisions["dev"], decided.constants), params,
                                       detail=False).value)
    return float(np.std(values, ddof=1)), None


def _judge(ctx: Context, run: _Run, source: str, values: dict[str, np.ndarray], constants: dict[str, Any],
           champion: PolicyState, baseline: PolicyState, looks: int, number: int,
           entries: list) -> tuple[ScoreReport, dict | None]:
    """Dev guards, contamination, drift and, only when all pass, the holdout gate."""
    from guards.contamination import check_text, scan_literals
    from guards.drift import check_score_drift
    from guards.guardrails import check_guardrails
    from guards.segments import check_segments
    from guards.significance import paired_bootstrap

    d, d_gate = ctx.config.decision, ctx.config.gate
    dev, hold = _scores(ctx, values, constants)
    params = ctx.config.scoring.model_dump()
    champ_dev, champ_hold = state_scores(ctx, champion, "champion")
    run.trace = ctx.domain.trace(ctx.dev, Decisions(values["dev"], constants), params, report=dev)
    higher = ctx.domain.higher_is_better
    run.add(paired_bootstrap(dev.contributions, champ_dev.contributions, higher_is_better=higher,
                             min_effect=d.min_effect, confidence=d.confidence, n_boot=d.bootstrap,
                             seed=ctx.config.seed + number, looks=looks, alpha_spending=d.looks,
                             model_sd=champion.refit_sd))
    run.add(check_guardrails(dict(dev.metrics), dict(champ_dev.metrics), baseline.dev_metrics, guardrail_specs(ctx)))
    if ctx.domain.off_policy:
        from guards.support import check_support

        run.add(check_support(dev.metrics, min_ess_share=params["min_ess_share"],
                              min_supported_share=params["min_supported_share"],
                              min_logged_share=params["min_logged_share"]))
    if "dev_segments" not in ctx.extra:
        ctx.extra["dev_segments"] = ctx.domain.segment_of(ctx.dev)
    run.add(check_segments(dev.contributions, champ_dev.contributions, ctx.extra["dev_segments"],
                           higher_is_better=higher, min_rows=d.segment_min_rows, tolerance=d.segment_tolerance,
                           confidence=d.confidence, seed=ctx.config.seed + number))
    run.add(scan_literals(source, holdout_ids=ctx.holdout_ids(), canaries=ctx.manifest["canaries"]))
    # Holdout rows never enter fit or dev; a canary in the fit log or trace means they leaked anyway.
    leaked = check_text("fit log and dev trace", run.log + json.dumps(run.trace, default=str), ctx.manifest["canaries"])
    if not leaked.passed:
        run.add(leaked)
    drift = check_score_drift(champion.holdout, values["holdout"], watch=ctx.config.seal.drift_watch,
                              alarm=ctx.config.seal.drift_alarm)
    run.add(GuardResult("drift", True, drift.detail + ("" if drift.passed else " (recorded, not blocking)"),
                        drift.figures))
    if not all(r.passed for r in run.results):
        return dev, None
    # Gains are measured against the seal's reference policy, so the answer kept with a champion is its
    # gated gain (no sum of per-step answers whose errors would add up).
    reference = ctx.reference()
    ref_dev, ref_hold = state_scores(ctx, reference, "reference")
    sign = 1.0 if ctx.domain.higher_is_better else -1.0  # a gain is an improvement either way
    # T and noise scale with the holdout gain's error, not with that of h - t: a dev gain made noisy (or lucky)
    # by selection would widen T until the gate answered with it.
    se = holdout_gate.gain_se(dev.contributions, ref_dev.contributions, hold.contributions, ref_hold.contributions)
    answer = ask_gate(ctx, dev_gain=sign * (dev.value - ref_dev.value),
                      holdout_gain=sign * (hold.value - ref_hold.value), se=se, entries=entries)
    # The Ladder step: standard errors of the holdout gain over the champion, the policy it would replace.
    step = d_gate.step_se * holdout_gate.gain_se(dev.contributions, champ_dev.contributions, hold.contributions,
                                                 champ_hold.contributions)
    return dev, {**answer, "to_beat": champion.reported - reference.reported, "step": step,
                 "reference": reference.experiment}


def state_scores(ctx: Context, state: PolicyState, role: str) -> tuple[ScoreReport, ScoreReport]:
    """A stored policy's dev and holdout reports, computed once per policy, role and seal."""
    key = (state.experiment, state.seal)
    cache = ctx.extra.setdefault(f"{role}_reports", {})
    if key not in cache:
        cache.clear()
        cache[key] = _scores(ctx, {"dev": state.dev, "holdout": state.holdout}, state.constants)
    return cache[key]


def guardrail_specs(ctx: Context):
    """The domain's guardrails with the config's overrides (a key left out or null keeps the domain's)."""
    from optimizer.config import merged_guardrails

    return merged_guardrails(ctx.domain.guardrails, dict(ctx.config.guardrails), ctx.domain.name)


def ask_gate(ctx: Context, *, dev_gain: float, holdout_gain: float, se: float, entries: list) -> dict:
    """One holdout query, recorded in the ledger with its draws before anyone acts on it. Threshold and noise
    are the config's multiples of `se`, this query's standard error of the holdout gain."""
    g = ctx.config.gate
    previous = ctx.gates(entries)
    query = sum(e.kind == "gate" for e in entries) + 1
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
    record = {**answer.to_dict(), "se": se, "query": query, "seed": ctx.config.seed, "seal": ctx.manifest_sha256}
    ctx.ledger.append("gate", record)
    return record


def gate_result(answer: dict | None, tolerance: float) -> GuardResult | None:
    """Keep only when the gate's answer for the candidate beats the answer kept with the champion."""
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


def run_experiment(ctx: Context, sandbox: Any, source: str, *, proposer: str, hypothesis: str,
                   keep: bool = True, tracker: Any = None, parent_run: bool = False,
                   proposal: dict[str, Any] | None = None) -> ExperimentRecord:
    """The whole pipeline for one candidate. `keep=False` judges without committing (ratchet try)."""
    started = time.perf_counter()
    ws = ctx.ws
    entries = ctx.ledger.entries()  # one read: numbering, looks and the gate's state
    done = [e for e in entries if e.kind == "experiment"]
    number = len(done) + 1
    exp_id = f"exp-{number:04d}"
    parent = ws.head()
    old = ws.champion_source()
    run = _Run()
    # program.md is the person's direction file: editing it between experiments is allowed.
    foreign = [f for f in ws.changed_files() if f not in ("policy.py", "program.md")]
    integrity = ctx.verify(entries) + [f"{f} differs from the last kept commit (only policy.py may change)" for f in foreign]
    run.add(GuardResult("integrity", not integrity, "; ".join(integrity) or
                        "holdout, seal, scorer, splits, config and cached states verified; only policy.py differs"))
    dev_metrics: dict[str, float] = {}
    answer = None
    values = constants = None
    if not integrity and source == old:
        run.add(GuardResult("change", False, "the candidate is identical to the champion's policy.py: nothing to "
                            "judge, nothing to keep"))
    elif not integrity:
        champion, baseline = ctx.champion(), ctx.baseline()
        assert champion is not None and baseline is not None, "the loop evaluates the baseline first"
        ws.stage(source)
        out = evaluate(ctx, sandbox, source, run)
        if out is not None:
            values, constants = out
            looks = 1 + sum(any(r["guard"] == "significance" for r in e.data.get("reasons", ())) for e in done)
            dev, answer = _judge(ctx, run, source, values, constants, champion, baseline, looks, number, entries)
            dev_metrics = {k: float(v) for k, v in dev.metrics.items()}
            gate = gate_result(answer, ctx.config.gate.tolerance)
            if gate is not None:
                run.add(gate)
    from guards import decide

    # The gate is asked only once every other guard passed, so a verdict without it is no keep.
    would_keep = decide(run.results).kept and answer is not None
    spread = 0.0
    if keep and would_keep:
        t0 = time.perf_counter()
        spread, problem = refit_spread(ctx, sandbox, source)  # the next candidates are judged against this champion
        run.timings["refit"] = time.perf_counter() - t0
        if problem:
            run.add(GuardResult("refit", False, f"the candidate's training noise cannot be measured, so it cannot be "
                                f"the champion later candidates are judged against: {problem}"))
            would_keep = False
    kept = keep and would_keep
    crashed = any(r.name in ("sandbox", "static", "output") and not r.passed for r in run.results)
    status = "kept" if kept else ("crashed" if crashed else ("would_keep" if would_keep else "reverted"))
    run.timings["total"] = time.perf_counter() - started
    record = ExperimentRecord(
        experiment=exp_id, number=number, proposer=proposer, hypothesis=hypothesis, status=status, kept=kept,
        parent_commit=parent, commit=None, policy_sha256=sha256_bytes(source.encode()), diff=unified_diff(old, source),
        reasons=tuple(r.to_dict() for r in run.results), dev_metrics=dev_metrics, gate=answer, fit=run.fit,
        seconds={k: round(v, 4) for k, v in run.timings.items()}, proposal=dict(proposal or {}),
        decisions_sha256=decisions_sha256(values) if values is not None else {},
    )
    state = None
    if kept:
        state = PolicyState(exp_id, "", values["dev"], values["holdout"], constants, dev_metrics,
                            ctx.reference().reported + float(answer["answer"]), ctx.manifest_sha256, spread)
    elif not integrity:
        ws.revert()
    return persist(ctx, record, source, run, tracker=tracker, nested=parent_run, state=state)


def persist(ctx: Context, record: ExperimentRecord, source: str, run: _Run, *, tracker: Any,
            nested: bool, state: PolicyState | None = None) -> ExperimentRecord:
    """Ledger entry (through the keep transaction when `state` is the new champion's), immutable record
    files, MLflow run: in that order (the ledger is the truth)."""
    from optimizer.errors import RatchetError
    from optimizer.keep import keep, reconcile, write_record
    from optimizer.tracking import record_experiment

    payload = {k: v for k, v in asdict(record).items() if k not in ("diff", "ledger_seq")}
    if state is not None:
        metrics = " ".join(f"{k}={record.dev_metrics[k]:.4f}" for k in (ctx.domain.primary,
                                                                        *(g.metric for g in ctx.domain.guardrails)))
        try:
            entry = keep(ctx, payload, source, state,
                         f"{record.experiment}: keep ({record.hypothesis or 'no hypothesis'}) {metrics}")
        except RatchetError as exc:  # e.g. the commit failed: roll back now, record it as crashed
            reconcile(ctx, reason=str(exc))
            return ExperimentRecord(**{**ctx.ledger.entries("experiment")[-1].data, "diff": record.diff})
        record = ExperimentRecord(**{**asdict(record), "commit": entry.data["commit"]})
    else:
        entry = ctx.ledger.append("experiment", payload)
    record = ExperimentRecord(**{**asdict(record), "ledger_seq": entry.seq})
    trace: dict[str, Any] = {"experiment": record.experiment}
    if "task_agent" in record.fit:  # dev-only replies (no holdout row was in that sandbox), first for the reader
        trace["task_agent"] = {"usage": record.fit["task_agent"], "dev_reasoning": run.reasoning}
    trace.update({"fit_log": run.log[-20_000:], "dev": run.trace,
                  "guard_failures": [r.to_dict() for r in run.results if not r.passed]})
    body = {k: v for k, v in asdict(record).items() if k != "diff"}
    folder = write_record(ctx.ws, body, source, record.diff, trace)
    if tracker is not None:
        record_experiment(tracker, ctx, record, folder, nested=nested)
    return record
