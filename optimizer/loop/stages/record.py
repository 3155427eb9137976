"""Record: the ledger entry (through the keep transaction for a new champion), the immutable record files and the
MLflow run, in that order: the ledger is the truth, the rest can be rebuilt from it."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from holdout.ledger import Kind
from optimizer.base.faults import fault
from optimizer.loop.stages.evaluate import Evaluation
from optimizer.loop.stages.judge import Judgement

if TYPE_CHECKING:
    from optimizer.records.context import Context


def record(ctx: Context, rec: Any, source: str, *, evaluation: Evaluation | None = None,
           judgement: Judgement | None = None, tracker: Any = None, nested: bool = False,
           state: Any = None) -> Any:
    """Write an ExperimentRecord; `state` is the new champion's PolicyState when it is kept. Returns the record
    as written (with its commit and ledger sequence number). A Ctrl-C meanwhile is raised once all is written."""
    from optimizer.base.errors import RatchetError
    from optimizer.base.interrupts import deferred
    from optimizer.records.keep import keep, write_record
    from optimizer.records.recovery import reconcile
    from optimizer.tracking.runs import record_experiment

    with deferred():
        payload = rec.to_payload()
        if state is not None:
            # A guardrail the data cannot measure (no customer column: no false_decline_gap) is left out.
            metrics = " ".join(f"{k}={rec.dev_metrics[k]:.4f}" for k in (ctx.domain.primary,
                                                                         *(g.metric for g in ctx.domain.guardrails))
                               if k in rec.dev_metrics)
            try:
                entry = keep(ctx, payload, source, state, f"{rec.experiment}: keep ({rec.hypothesis or 'no hypothesis'}) "
                                                          f"{metrics}")
            except RatchetError as exc:  # e.g. the commit failed: roll back now, record it as crashed
                reconcile(ctx, reason=str(exc))
                return type(rec).from_payload(ctx.ledger.entries(Kind.EXPERIMENT)[-1].data, diff=rec.diff)
            rec = replace(rec, commit=entry.data["commit"])
        else:
            entry = ctx.ledger.append(Kind.EXPERIMENT, payload)
        rec = replace(rec, ledger_seq=entry.seq)
        trace: dict[str, Any] = {"experiment": rec.experiment}
        if "task_agent" in rec.fit:  # dev-only replies (no holdout row was in that sandbox), first for the reader
            trace["task_agent"] = {"usage": rec.fit["task_agent"],
                                   "dev_reasoning": list(evaluation.reasoning) if evaluation else []}
        trace.update({"fit_log": (evaluation.log if evaluation else "")[-20_000:],
                      "dev": judgement.trace if judgement else {},
                      "guard_failures": [r.to_dict() for r in rec.verdict.failures]})
        fault("record:before-folder")
        written = {**payload, "commit": rec.commit, "ledger_seq": rec.ledger_seq}
        folder = write_record(ctx.ws, written, source, rec.diff, trace)
        fault("record:before-mlflow")
        behind = getattr(tracker, "recorder", None)
        if behind is not None and state is None:
            behind.submit(written, rec.diff, folder)  # written by the recorder process while the loop goes on
        elif tracker is not None:
            from optimizer.tracking.sync import replay

            if behind is not None:
                behind.drain()  # the runs queued before this one are written first
            written = tracker.attempt(rec.experiment, lambda: record_experiment(tracker, ctx, rec, folder, nested=nested,
                                                                                evaluation=evaluation),
                                      catch_up=lambda: replay(ctx, tracker, skip=frozenset({rec.ledger_seq})))
            if not written and ctx.config.tracking.on_outage == "stop":
                raise RatchetError(f"MLflow at {tracker.uri}: {tracker.down} while {rec.experiment} was recorded; the "
                                   f"ledger and experiments/{rec.experiment} hold it, nothing is lost. Run `ratchet "
                                   f"sync {ctx.ws.root}` once MLflow is back, then `ratchet run` goes on "
                                   "(tracking.on_outage: stop).")
        return rec
