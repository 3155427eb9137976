"""`ratchet serve`: the acting policy answers decisions over HTTP, and decides only inside the sandbox.

At start the workspace is loaded and verified (read-only: an interrupted keep is refused, never rolled back under a
running loop). The policy that acts is the registry's champion alias when a promotion moved it, read from the ledger
(the last promotion or rollback entry names the commit), else the baseline: a kept policy decides nothing real before a
shadow trial passed and a person promoted it (optimizer.records.refs.acting). It is fitted once on train, exactly as
evaluate fits it, in a warm Sandbox that stays open for the server's life, and then decides in a persistent decide
worker (optimizer.sandbox.Worker: one contained child that loaded the policy and its model once; a worker that ended is
replaced on the next request). Policies that may ask a language model decide in a fresh child per request instead. The
server never imports or runs policy code.

Each request's events read their history (domains.history) from the workspace's event store
(optimizer.workspace.history: train's and dev's events, then every event served), and are appended to it, durably,
before the answer leaves: the next request sees them. Requests are decided one after another, so an event's history is
every event answered before it, and its decision is the one a batch or a shadow trial would give it.

When a shadow trial is running, its challenger is fitted too, in a sandbox of its own, and decides off the request path
(optimizer.release.serve_shadow): a request only queues its rows with the history the challenger reads (read with the
champion's, under the same lock), and one thread decides them and logs both policies to shadow.duckdb (only the
champion's acted). Only the champion's decisions are returned, never after waiting on the challenger.

The HTTP app over this service is optimizer.release.serve_http.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from domains.history import lookback
from holdout.entries import ShadowResult, of
from holdout.ledger import Entry, Kind
from optimizer.base.errors import RatchetError
from optimizer.records.refs import acting, named
from optimizer.release.serve_rows import Refused, Schema, _one_line
from optimizer.release.serve_shadow import STOP_WAIT_S, Shadowed, ShadowLane
from optimizer.sandbox import SandboxStatus
from optimizer.workspace.history import LiveHistory

if TYPE_CHECKING:
    from optimizer.records.context import Context

FINISHED = ("passed", "failed")  # shadow_result statuses that end a trial
log = logging.getLogger("uvicorn.error")  # uvicorn configures this logger; tests see it through caplog


# --- which policies act ---------------------------------------------------------------------------------------
def running_trial(trials: Sequence[Any], entries: Sequence[Entry]) -> Any | None:
    """The latest shadow trial without a passed or failed result in the ledger, or None."""
    done = {r.trial for r in of(entries, ShadowResult) if r.status in FINISHED}
    open_ = [t for t in trials if t.trial not in done]
    return max(open_, key=lambda t: (t.started_at, t.trial)) if open_ else None


# --- the service ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fitted:
    """A policy version fitted in a sandbox: its source, the opaque model handle decide needs, and the sandbox that
    holds the model (the acting policy's, or the challenger's own)."""

    ref: Any  # optimizer.records.refs.PolicyRef
    model: Any  # optimizer.sandbox.ModelHandle
    chosen_by: str
    sandbox: Any = None  # optimizer.sandbox.Sandbox

    @property
    def key(self) -> str:
        return str(self.model.path)  # one per fit

    def describe(self) -> dict[str, str]:
        return {"commit": self.ref.commit, "experiment": self.ref.experiment}


@dataclass(frozen=True)
class Decided:
    """One decide's decisions, the module constants it read and the wall time of the sandbox call."""

    values: np.ndarray
    constants: dict[str, Any]
    latency_ms: float
    challenger_history: pd.DataFrame | None = None  # what the trial's challenger reads for the same rows


@dataclass
class Service:
    """What the server holds for its life: the verified workspace, the open sandbox and the fitted policies."""

    path: Path
    ctx: Context = None  # type: ignore[assignment]  # set by start(), before any request
    sandbox: Any = None  # the acting policy's
    shadow_sandbox: Any = None  # the challenger's: a worker's decide holds its sandbox's lock for the whole call
    schema: Schema | None = None
    champion: Fitted | None = None
    trial: Any = None  # optimizer.release.shadow.store.Trial, when one is running
    challenger: Fitted | None = None
    trial_problem: str | None = None  # why the challenger cannot shadow (its decisions are then not logged)
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "rows": 0, "refused": 0,
                                                            "sandbox_failures": 0, "worker_restarts": 0})
    workers: dict[str, Any] = field(default_factory=dict)  # Fitted.key -> its optimizer.sandbox.Worker
    lane: ShadowLane | None = None  # the challenger's queue and thread, while shadowing
    history: Any = None  # optimizer.workspace.history.LiveHistory: the store open for the server's life, and its index
    _worker_locks: dict[str, threading.Lock] = field(default_factory=dict)  # Fitted.key -> guards its worker

    @property
    def shadowing(self) -> bool:
        return self.challenger is not None

    @property
    def acting_policy(self) -> Fitted:
        """The champion, fitted by start() before the service answers or reports."""
        assert self.champion is not None, "the service is started (start() fits the champion) before it is used"
        return self.champion

    def start(self) -> None:
        """Load and verify the workspace, open the sandbox, fit the acting policy and a running trial's challenger."""
        from optimizer.llm.task_agent import open_broker
        from optimizer.records.context import load_context
        from optimizer.sandbox import Sandbox

        self.ctx = ctx = load_context(self.path, repair=False)
        entries = ctx.ledger.entries()
        if not any(e.kind == Kind.BASELINE for e in entries):  # the baseline acts until a promotion
            raise RatchetError(f"{self.path}: the baseline has not been evaluated yet, and it is the policy that "
                               f"answers until a promotion; evaluate it with `ratchet run {self.path} --experiments 0` "
                               f"(the baseline only; `ratchet run {self.path}` also searches), then serve again.")
        ref, chosen_by = acting(ctx, entries)
        kept = ctx.champion()
        if kept is not None and kept.commit != ref.commit:
            log.warning("ratchet serve: the workspace champion %s (%s) is not served: it acts once a shadow trial passed "
                        "and it was promoted (`ratchet shadow start`, `ratchet promote`)", kept.experiment,
                        kept.commit[:12])
        self.schema = Schema.of(ctx)
        self.sandbox = Sandbox(memory_mb=ctx.config.sandbox.memory_mb, broker=open_broker(ctx))
        try:
            self.history = LiveHistory(ctx)
            self.sandbox.start()
            self.champion = self._fit(ref, chosen_by, self.sandbox)
            self.trial = running_trial(self.store().trials(), entries)
            if self.trial is not None:
                self._fit_challenger(entries)
            for policy in (self.champion, self.challenger):
                if policy is not None and self.sandbox.broker is None:  # warm before the first request
                    self.workers[policy.key] = policy.sandbox.worker(policy.ref.source, policy.model,
                                                                     budget_s=ctx.config.sandbox.budget_s)
            if self.challenger is not None:
                self.lane = ShadowLane(self.trial.trial, self._challenge, self.store())
        except BaseException:
            self.close()
            raise

    def close(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop shadowing (what is queued is decided and logged for up to `wait_s`, the rest dropped and counted),
        then close both sandboxes and the history."""
        if self.lane is not None and not self.lane.stop(wait_s):
            log.warning("ratchet serve: trial %s: the challenger was still deciding at stop; its sandbox is closed",
                        self.trial.trial)
        if self.shadow_sandbox is not None:
            self.shadow_sandbox.close()  # ends a decide still running, so the thread ends too
        if self.lane is not None:
            self.lane.join(timeout=5.0)
        if self.sandbox is not None:
            self.sandbox.close()
        if self.history is not None:
            self.history.close()

    def decide_request(self, frame: pd.DataFrame) -> Decided:
        """The champion decides a request's rows with their history, then the rows join the history (on disk before
        this returns); one request at a time, so each reads every event answered before it. A trial's challenger
        gets the history it reads with the rows now (the champion's when both look back as far: the same rows)."""
        live, champion = self.history, self.acting_policy
        with live.lock:
            history = live.read(champion.ref.source, frame)
            later = None
            if self.challenger is not None:  # shadowing
                same = lookback(self.challenger.ref.source) == lookback(champion.ref.source)
                later = history if same else live.read(self.challenger.ref.source, frame)
            decided = self.decide(champion, frame, history)
            try:
                live.record(frame)
            except Exception as exc:  # noqa: BLE001 - an event not in the history must not be answered
                raise Refused(503, f"history not written ({live.store.path}): {_one_line(exc)}; retry the request",
                              status="history") from None
        return Decided(decided.values, decided.constants, decided.latency_ms, later)

    def store(self) -> Any:
        from optimizer.release.shadow.store import ShadowStore

        return ShadowStore(self.ctx.ws.root / "shadow.duckdb")

    def _fit(self, ref: Any, chosen_by: str, sandbox: Any) -> Fitted:
        """Fit as evaluate does, in `sandbox`: the static scan first, then fit on train's policy view with the
        label."""
        from optimizer.loop.stages.evaluate import static_check

        ctx = self.ctx
        what = f"{chosen_by} {ref.experiment or 'commit'} ({ref.commit[:12]})"
        static = static_check(ctx, ref.source)
        if not static.passed:
            raise RatchetError(f"{what}: refused by the static scan: {static.detail}")
        fitted = sandbox.fit(ref.source, ctx.domain.policy_view(ctx.train, with_label=True),
                             budget_s=ctx.config.sandbox.budget_s)
        if not fitted.ok:
            raise RatchetError(f"{what}: fit {fitted.status} in the sandbox: {fitted.error}")
        self._worker_locks[str(fitted.model.path)] = threading.Lock()
        return Fitted(ref, fitted.model, chosen_by, sandbox)

    def _fit_challenger(self, entries: list[Entry]) -> None:
        """The trial's challenger, fitted in a sandbox of its own (so the acting policy never waits on its lock); a
        failure keeps the server up, without shadowing."""
        from optimizer.sandbox import Sandbox

        champion = self.acting_policy
        if self.trial.champion_commit != champion.ref.commit:
            self.trial_problem = (f"trial {self.trial.trial} compares with {self.trial.champion_commit[:12]}, but "
                                  f"{champion.ref.commit[:12]} acts now (a promotion or rollback since it started)")
            log.warning("ratchet serve: %s; its decisions are not logged", self.trial_problem)
            return
        try:
            ref = named(self.ctx, self.trial.challenger_commit, entries)
            self.shadow_sandbox = Sandbox(memory_mb=self.ctx.config.sandbox.memory_mb, broker=self.sandbox.broker)
            self.shadow_sandbox.start()
            self.challenger = self._fit(ref, f"trial {self.trial.trial} challenger", self.shadow_sandbox)
        except RatchetError as exc:
            if self.shadow_sandbox is not None:
                self.shadow_sandbox.close()
                self.shadow_sandbox = None
            self.trial_problem = _one_line(exc)
            log.warning("ratchet serve: %s; its decisions are not logged", self.trial_problem)

    def decide(self, policy: Fitted, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> Decided:
        """One decide in the sandbox, held to the domain's output contract; Refused (503) otherwise."""
        from domains import Decisions

        ctx = self.ctx
        t0 = time.perf_counter()
        try:
            result = self._decide(policy, frame, history)
        except RatchetError as exc:
            raise Refused(503, f"sandbox unavailable: {_one_line(exc)}", status=SandboxStatus.CRASH) from None
        latency_ms = (time.perf_counter() - t0) * 1000
        if not result.ok:
            raise Refused(503, f"decide {result.status} in the sandbox: {_one_line(result.error)}",
                          status=result.status)
        values = np.asarray(next(iter(result.decisions.values())))
        constants = dict(result.constants)
        problem = ctx.domain.check_decisions(Decisions(values, constants), frame, ctx.config.scoring.model_dump())
        if problem:
            raise Refused(503, f"decisions break the output contract: {problem}", status=SandboxStatus.OUTPUT)
        return Decided(values, constants, latency_ms)

    def _decide(self, policy: Fitted, frame: pd.DataFrame, history: pd.DataFrame | None) -> Any:
        """The policy's decide in its warm worker (started on first use, and again after one ended), or in a fresh
        child per request when the workspace's policies may ask a language model (workers have no broker). The
        policy's worker lock is held for the whole call, so a call that waited behind one that overran finds that
        worker ended and starts a fresh one (an alive check outside the lock would send every waiting call to the
        ended worker). Each policy has its own lock and sandbox: the challenger never holds the acting policy's."""
        budget_s, constants, sandbox = self.ctx.config.sandbox.budget_s, self.ctx.domain.constants, policy.sandbox
        if sandbox.broker is not None:
            return sandbox.decide(policy.ref.source, policy.model, {"request": frame}, budget_s=budget_s,
                                  constants=constants, history=None if history is None else {"request": history})
        with self._worker_locks[policy.key]:
            worker = self._live_worker(policy, budget_s)
            return worker.decide(frame, budget_s=budget_s, constants=constants, history=history)

    def _live_worker(self, policy: Fitted, budget_s: float) -> Any:
        """The policy's worker, replaced when it ended (the ended one's workdir removed); the caller holds its lock."""
        worker = self.workers.get(policy.key)
        if worker is not None and worker.alive:
            return worker
        if worker is not None:
            self.counts["worker_restarts"] += 1
            log.warning("ratchet serve: the decide worker of %s ended; starting another", policy.ref.commit[:12])
            worker.close()
        worker = self.workers[policy.key] = policy.sandbox.worker(policy.ref.source, policy.model, budget_s=budget_s)
        return worker

    def answer(self, decided: Decided) -> dict[str, Any]:
        """The response body: the champion's decisions, who made them, and blocks where the domain has a threshold."""
        body: dict[str, Any] = {"decisions": decided.values.tolist(), "policy": self.acting_policy.describe(),
                                "latency_ms": round(decided.latency_ms, 3)}
        if "THRESHOLD" in self.ctx.domain.constants and "THRESHOLD" in decided.constants:
            body["blocked"] = (decided.values >= float(decided.constants["THRESHOLD"])).tolist()
        return body

    def shadow(self, frame: pd.DataFrame, champion: Decided) -> None:
        """Queue the request for the trial's challenger (never waits; dropped and counted when the queue is full):
        its thread decides the rows with the history read at request time and logs both policies' decisions."""
        ids, ts = self._event_keys(frame)
        assert self.lane is not None, "shadow() is called only while a trial is shadowed (its lane is open)"
        self.lane.submit(Shadowed(ids, ts, frame, champion.values, champion.latency_ms, champion.challenger_history))

    def _challenge(self, frame: pd.DataFrame, history: pd.DataFrame | None) -> tuple[np.ndarray, float]:
        """The challenger's decide of a queued request, held to the output contract (Refused otherwise)."""
        assert self.challenger is not None, "the lane (the only caller) is opened only for a fitted challenger"
        decided = self.decide(self.challenger, frame, history)
        return decided.values, decided.latency_ms

    def _event_keys(self, frame: pd.DataFrame) -> tuple[list, Any]:
        cols = self.ctx.domain.columns
        ids = (frame[cols.id].tolist() if cols.id in frame.columns
               else [f"serve-{uuid.uuid4().hex[:12]}-{i}" for i in range(len(frame))])
        return ids, (frame[cols.time].to_numpy() if cols.time in frame.columns else None)

    def health(self) -> dict[str, Any]:
        """What an operator checks first: which policy acts and why, the trial, the sandbox's layers, the counts."""
        trial = None
        if self.trial is not None:
            lane = self.lane
            counts = ({**lane.counts, "shadow_queued": lane.queued} if lane is not None else
                      {"logged_rows": 0, "challenger_failures": 0, "log_failures": 0, "shadow_dropped": 0,
                       "shadow_queued": 0})
            trial = {"trial": self.trial.trial, "champion_commit": self.trial.champion_commit,
                     "challenger_commit": self.trial.challenger_commit, "challenger_ref": self.trial.challenger_ref,
                     "shadowing": self.shadowing, "problem": self.trial_problem, **counts}
        champion, schema = self.acting_policy, self.schema
        assert schema is not None, "start() reads the schema before the service reports"
        return {"status": "ok", "workspace": str(self.ctx.ws.root), "domain": self.ctx.domain.name,
                "policy": {**champion.describe(), "chosen_by": champion.chosen_by,
                           "policy_sha256": champion.ref.policy_sha256},
                "trial": trial, "sandbox": {"layers": list(self.sandbox.layers), "device": self.sandbox.device,
                            "decide": "fresh child per request" if self.sandbox.broker is not None
                            else "persistent worker"},
                "columns": schema.describe(), "served": dict(self.counts)}
