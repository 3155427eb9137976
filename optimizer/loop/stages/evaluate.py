"""Evaluate: static scan, fit and decide in the sandbox, output contract and look-ahead.

Reads only its `Inputs` (config, prepared domain, the policy views of the splits) and runs the sandbox; writes
nothing (no ledger, no git, no MLflow), so many evaluations may run at once, on other machines too (the inputs
travel; the labels of dev and holdout are not in them), and a shadow trial can reuse it.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np
import pandas as pd

from domains import Decisions
from domains.history import History, LookbackError, declared, lookback
from guards import GuardName, GuardResult
from optimizer.base.faults import fault
from optimizer.sandbox import SandboxStatus

if TYPE_CHECKING:
    from optimizer.records.context import Context

# Look-ahead is checked at several cuts: each exposes the rows whose "future" crosses it.
PREFIX_CUTS = (0.3, 0.6)


class PolicyRunner(Protocol):
    """What the stages need of a sandbox (optimizer.sandbox.Sandbox is one)."""

    broker: Any  # the model broker of a task-agent workspace, else None

    def fit(self, source: str, train: pd.DataFrame, *, budget_s: float) -> Any: ...

    def decide(self, source: str, model: Any, rows: Mapping[str, pd.DataFrame], *, budget_s: float,
               constants: tuple[str, ...], history: Mapping[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class Inputs:
    """What evaluate reads: the config, the prepared domain and the rows a policy may see. Train keeps its label
    (fit learns from it); dev and holdout are the decision-time views, without labels."""

    config: Any
    domain: Any
    train: pd.DataFrame
    dev: pd.DataFrame
    holdout: pd.DataFrame

    @classmethod
    def of(cls, ctx: Context) -> "Inputs":
        """A workspace context's inputs, made once per config (a loop's --budget replaces the config)."""
        if isinstance(ctx, Inputs):
            return ctx

        def make() -> Inputs:
            view = ctx.domain.policy_view
            return cls(ctx.config, ctx.domain, view(ctx.train, with_label=True), view(ctx.dev, with_label=False),
                       view(ctx.holdout_all, with_label=False))

        return ctx.memo("inputs", ctx.config, make)

    @functools.cached_property
    def prefixes(self) -> dict[str, pd.DataFrame]:
        """The dev prefixes look-ahead is checked on, made once (the sandbox writes a file per frame it is given)."""
        from guards.lookahead import cut_rows

        cuts = {f"dev_prefix_{int(f * 100)}": cut_rows(len(self.dev), f) for f in PREFIX_CUTS}
        return {name: self.dev.iloc[:cut].reset_index(drop=True) for name, cut in cuts.items()}

    @functools.cached_property
    def past(self) -> History:
        """Train's then dev's decision-time events, in time order: what the workspace's event history starts with."""
        cols = self.domain.columns
        events = pd.concat([self.train[list(self.dev.columns)], self.dev], ignore_index=True)
        return History.of(events, time=cols.time, keys=cols.history_keys)

    def histories(self, days: float) -> dict[str, pd.DataFrame]:
        """What dev (train's events) and holdout (train's and dev's) may read with a lookback of `days`, made once
        per lookback; the dev prefixes read dev's."""
        made = self.__dict__.setdefault("_histories", {})
        if days not in made:
            dev = self.past.window(self.dev, days, before=len(self.train))
            made[days] = {"dev": dev, "holdout": self.past.window(self.holdout, days),
                          **{name: dev for name in self.prefixes}}
        return made[days]

    def history_of(self, source: str) -> dict[str, pd.DataFrame] | None:
        """The histories `source`'s decide reads (None: it declares none)."""
        days = lookback(source)
        return self.histories(days) if days > 0 else None


@dataclass(frozen=True)
class Evaluation:
    """What evaluate found. `decisions` (dev, holdout and the dev prefixes) is None when a guard failed."""

    results: tuple[GuardResult, ...]
    decisions: Mapping[str, np.ndarray] | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)  # device, seconds, status, task-agent usage
    timings: Mapping[str, float] = field(default_factory=dict)
    log: str = ""  # the fit phase's output (train rows only were in that sandbox)
    reasoning: tuple[dict, ...] = ()  # a task-agent policy's replies on dev (from the dev-only pass)
    model: Any = None  # the fitted model's handle (opaque bytes in the sandbox's folder, valid while it is open)

    @property
    def passed(self) -> bool:
        return self.decisions is not None


def phase_failure(phase: str, result: Any) -> GuardResult:
    """A failed decide phase under the guard it belongs to: `output` when decide returned the wrong thing
    (type, shape, length, dtype), whichever phase detected it; `sandbox` when the process itself failed."""
    guard = GuardName.OUTPUT if result.status is SandboxStatus.OUTPUT else GuardName.SANDBOX
    what = "returned output that breaks the contract" if guard is GuardName.OUTPUT else result.status
    return GuardResult(guard, False, f"{phase} {what}: {result.error}",
                       {"phase": "decide", "status": result.status, "violations": list(result.violations)})


def static_check(ctx: Any, source: str) -> GuardResult:  # a Context or the executors' Inputs
    """The static scan with the workspace's allow-list, and the policy contract's top-level names (`ctx`: a context
    or its Inputs)."""
    from guards.static import has_contract, scan

    allowed = ctx.config.static
    static = scan(source, allowed_imports=allowed.allowed_imports, max_literal_len=allowed.max_literal_len,
                  max_collection_items=allowed.max_collection_items, max_policy_bytes=allowed.max_policy_bytes)
    if not static.passed:
        return static  # an oversized source is never parsed; a refused one need not be read further
    missing = has_contract(source)  # the same shared tree as the scan's (domains._source): no second parse
    if missing:
        static = GuardResult(GuardName.STATIC, False, f"policy.py does not define {', '.join(missing)} at top level")
    if static.passed:
        try:
            declared(source)
        except LookbackError as exc:
            static = GuardResult(GuardName.STATIC, False, str(exc))
    return static


def evaluate(ctx: Context, sandbox: PolicyRunner, source: str) -> Evaluation:
    """Static scan, fit and decide in the sandbox, output contract and look-ahead; stops at the first failure.
    `ctx`: a workspace context or its Inputs."""
    from guards.lookahead import check_point_in_time

    inputs = Inputs.of(ctx)
    results: list[GuardResult] = []
    fit: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def stop(result: GuardResult | None = None, **extra: Any) -> Evaluation:
        return Evaluation((*results, *([result] if result else [])), fit=fit, timings=timings, **extra)

    static = static_check(inputs, source)
    if not static.passed:
        return stop(static)
    results.append(static)
    broker = getattr(sandbox, "broker", None)
    if broker is not None:
        broker.take_usage()  # what earlier phases (refits) used is in the ledger, not in this record
    budget, constants = inputs.config.sandbox.budget_s, inputs.domain.constants
    t0 = time.perf_counter()
    fitted = sandbox.fit(source, inputs.train, budget_s=budget)
    fault("evaluate:fitted")
    timings["fit"] = time.perf_counter() - t0
    fit.update({"device": fitted.device, "fit_seconds": fitted.fit_seconds, "status": fitted.status})
    if not fitted.ok:
        return stop(GuardResult(GuardName.SANDBOX, False, f"fit phase {fitted.status}: {fitted.error}",
                                {"phase": "fit", "status": fitted.status, "violations": list(fitted.violations)}),
                    log=fitted.log)
    dev_view = inputs.dev
    history = inputs.history_of(source)
    cuts = {name: len(frame) for name, frame in inputs.prefixes.items()}
    rows = {"dev": dev_view, "holdout": inputs.holdout, **inputs.prefixes}
    reasoning: tuple[dict, ...] = ()
    if broker is not None:  # a policy that asks a model: its reasoning comes from a pass with no holdout row
        explained = sandbox.decide(source, fitted.model, {"dev": dev_view}, budget_s=budget, constants=constants,
                                   history=history)
        reasoning = tuple(broker.take_reasoning())
        if not explained.ok:
            fit["task_agent"] = broker.take_usage()
            return stop(phase_failure("decide phase (dev only)", explained), log=fitted.log, reasoning=reasoning)
    t0 = time.perf_counter()
    decided = sandbox.decide(source, fitted.model, {k: rows[k] for k in ("dev", "holdout")}, budget_s=budget,
                             constants=constants, history=history)
    timings["decide"] = time.perf_counter() - t0
    if broker is not None and not decided.ok:
        fit["task_agent"] = broker.take_usage()
    fit["decide_seconds"] = decided.decide_seconds
    if not decided.ok:
        return stop(phase_failure("decide phase", decided), log=fitted.log, reasoning=reasoning)
    # The prefixes are decided in a fresh process: one that had seen the whole of dev could replay its
    # look-ahead decisions from memory and pass the comparison.
    prefixes = sandbox.decide(source, fitted.model, {k: rows[k] for k in cuts}, budget_s=budget, constants=constants,
                              history=history)
    if broker is not None:
        fit["task_agent"] = broker.take_usage()
    later = {"log": fitted.log, "reasoning": reasoning}
    if not prefixes.ok:
        return stop(phase_failure("decide phase (dev prefixes)", prefixes), **later)
    results.append(GuardResult(GuardName.SANDBOX, True, "fit and decide stayed inside the sandbox",
                               {"fit_seconds": fitted.seconds, "decide_seconds": decided.seconds + prefixes.seconds}))
    decisions = {**decided.decisions, **prefixes.decisions}
    for name in rows:
        problem = inputs.domain.check_decisions(Decisions(decisions[name], decided.constants), rows[name],
                                                inputs.config.scoring.model_dump())
        if problem:
            return stop(GuardResult(GuardName.OUTPUT, False, f"{name} rows: {problem}", {"row_set": name}), **later)
    results.append(GuardResult(GuardName.OUTPUT, True, "decisions meet the output contract on every row set"))
    if dict(prefixes.constants) != dict(decided.constants):
        # A constant a policy sets while deciding applies to every row: one that depends on the rows it was
        # shown (a threshold fitted to the holdout's scores, or set from the last batch) is look-ahead too.
        changed = sorted(k for k in {*decided.constants, *prefixes.constants}
                         if decided.constants.get(k) != prefixes.constants.get(k))
        return stop(GuardResult(GuardName.LOOKAHEAD, False,
                                f"module constant {', '.join(changed)} differs between deciding "
                                "dev and holdout and deciding dev prefixes: a constant set while deciding depends on "
                                "the rows shown", {"constants": changed}), **later)
    checks = [check_point_in_time(decisions[name], decisions["dev"][:cut]) for name, cut in cuts.items()]
    failed = [(name, c) for name, c in zip(cuts, checks) if not c.passed]
    if failed:
        name, c = failed[0]
        return stop(GuardResult(GuardName.LOOKAHEAD, False, f"cut at {name[len('dev_prefix_'):]}% of dev: {c.detail}",
                                c.figures), **later)
    results.append(checks[-1])
    same = parity(inputs, sandbox, source, fitted.model, decisions["dev"], dict(decided.constants))
    if broker is not None:  # the parity phase's requests belong to this experiment too
        spent = broker.take_usage()
        fit["task_agent"] = {k: fit["task_agent"].get(k, 0) + spent.get(k, 0) for k in {*fit["task_agent"], *spent}}
    return stop(same, **({"decisions": decisions, "constants": dict(decided.constants), "model": fitted.model}
                         if same.passed else {}), **later)


def parity(inputs: Inputs, sandbox: PolicyRunner, source: str, model: Any, batch: np.ndarray,
           constants: Mapping[str, Any]) -> GuardResult:
    """The parity guard: a seeded sample of dev events decided one at a time, each with the history serve would
    give it (its entities' events before it, from train and dev), compared with the batch decisions."""
    from guards.parity import check_parity

    n = min(inputs.config.decision.parity, len(inputs.dev))
    picked = np.sort(np.random.default_rng(inputs.config.seed).choice(len(inputs.dev), n, replace=False))
    days = lookback(source)
    # One row set of single events: the child decides them one call each (a file per event cost 2 ms apiece).
    events = [inputs.dev.iloc[i:i + 1].reset_index(drop=True) for i in picked.tolist()]
    history = ({"parity": [inputs.past.window(row, days, before=len(inputs.train) + i)
                           for row, i in zip(events, picked.tolist())]} if days > 0 else None)
    alone = sandbox.decide(source, model, {"parity": events}, budget_s=inputs.config.sandbox.budget_s,
                           constants=inputs.domain.constants, history=history)
    if not alone.ok:
        failed = phase_failure("decide phase (parity: one event at a time)", alone)
        return GuardResult(GuardName.PARITY, False, failed.detail, failed.figures)
    if dict(alone.constants) != dict(constants):
        changed = sorted(k for k in {*constants, *alone.constants} if constants.get(k) != alone.constants.get(k))
        return GuardResult(GuardName.PARITY, False,
                           f"module constant {', '.join(changed)} differs between deciding dev as a "
                           "batch and deciding events one at a time: a constant set while deciding depends on the "
                           "rows of the call", {"constants": changed})
    ids = inputs.dev[inputs.domain.columns.id].to_numpy()[picked]
    return check_parity(list(ids), batch[picked], alone.decisions["parity"])


def refit_spread(ctx: Context, sandbox: PolicyRunner, source: str) -> tuple[float, str | None]:
    """How much a policy's dev score moves from training randomness: the std over `decision.refits` fits on
    seeded 90 % subsamples of train (time order kept), and why it could not be measured (None when it was).
    0 only when refits are disabled: a failed refit is lost evidence, never a silent zero."""
    n = ctx.config.decision.refits
    if n < 2:
        return 0.0, None
    budget = ctx.config.sandbox.budget_s
    inputs = Inputs.of(ctx)
    dev_view, history = inputs.dev, inputs.history_of(source)
    params = ctx.config.scoring.model_dump()
    values = []
    for k in range(n):
        sample = ctx.train.sample(frac=0.9, random_state=ctx.config.seed * 1000 + k).sort_index()
        fitted = sandbox.fit(source, ctx.domain.policy_view(sample, with_label=True), budget_s=budget)
        if not fitted.ok:
            return 0.0, f"refit {k + 1} of {n} (90 % of train): fit {fitted.status}: {fitted.error}"
        decided = sandbox.decide(source, fitted.model, {"dev": dev_view}, budget_s=budget,
                                 constants=ctx.domain.constants, history=history)
        if not decided.ok:
            return 0.0, f"refit {k + 1} of {n} (90 % of train): decide {decided.status}: {decided.error}"
        problem = ctx.domain.check_decisions(Decisions(decided.decisions["dev"], decided.constants), dev_view, params)
        if problem:
            return 0.0, f"refit {k + 1} of {n} (90 % of train): {problem}"
        values.append(ctx.domain.score(ctx.dev, Decisions(decided.decisions["dev"], decided.constants), params,
                                       detail=False).value)
    return float(np.std(values, ddof=1)), None
