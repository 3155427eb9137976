"""`ratchet sync`: write into MLflow what the ledger holds and MLflow missed (an outage, a kill mid-run).

The ledger is the source of truth; MLflow is a view of it. For every experiment entry without an MLflow run that
names its ledger sequence number, the run is written from the ledger entry and the experiment's record folder
(parameters, metrics, guard results, gate answer, policy, diff, record), tagged `ratchet.synced`. A missing
baseline run is written the same way. Fitted models are not rebuilt: a kept policy whose keep missed MLflow is
registered only by keeping it again (`ratchet promote` says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from holdout.entries import Baseline, view
from holdout.ledger import Kind
from optimizer.workspace.runner import exclusive


@dataclass(frozen=True)
class Synced:
    experiments: tuple[str, ...]  # experiment runs written now
    baseline: bool  # the baseline run was written now
    present: int  # experiment runs MLflow already had


@exclusive
def sync(path: Path) -> Synced:
    from optimizer.records.context import load_context
    from optimizer.tracking.runs import open_tracker

    ctx = load_context(path)
    return replay(ctx, open_tracker(ctx))


def replay(ctx, tracker, *, skip: frozenset[int] = frozenset()) -> Synced:
    """Write the experiment runs (and the baseline run) MLflow lacks, except the ledger sequence numbers in `skip`.
    A run counts as present only when FINISHED: one an outage or a kill cut short is written again, whole."""
    from optimizer.records.experiment_record import ExperimentRecord
    from optimizer.tracking.runs import Tag, record_experiment

    runs = tracker.runs()
    have = {r.data.tags.get(Tag.LEDGER_SEQ) for r in runs
            if r.data.tags.get(Tag.KIND) == "experiment" and r.info.status == "FINISHED"}
    written = []
    for entry in ctx.ledger.entries(Kind.EXPERIMENT):
        if str(entry.seq) in have or entry.seq in skip:
            continue
        folder = ctx.ws.experiments / entry.data["experiment"]
        diff = (folder / "diff.patch").read_text() if (folder / "diff.patch").is_file() else ""
        rec = ExperimentRecord.from_payload({**entry.data, "ledger_seq": entry.seq}, diff=diff)
        nested = tracker.mlflow.active_run() is not None  # under a running loop's parent run
        run_id = record_experiment(tracker, ctx, rec, folder, nested=nested)
        tracker.client.set_tag(run_id, "ratchet.synced", "true")
        written.append(rec.experiment)
    base = ctx.ledger.last(Kind.BASELINE)
    baseline_of = view(base, Baseline) if base is not None else None
    baseline = False
    if baseline_of is not None and not any(r.data.tags.get(Tag.KIND) == "baseline" and r.info.status == "FINISHED"
                                    for r in runs):
        with tracker.run("baseline", nested=tracker.mlflow.active_run() is not None,
                         tags={Tag.KIND: "baseline", Tag.COMMIT: baseline_of.commit, "ratchet.synced": "true"}):
            tracker.mlflow.log_metrics({f"dev_{k}": v for k, v in (baseline_of.dev_metrics or {}).items()})
            tracker.mlflow.log_text(ctx.ws.git("show", f"{baseline_of.commit}:policy.py"), "policy.py")
        baseline = True
    return Synced(tuple(written), baseline, len(have))
