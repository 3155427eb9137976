"""Start a shadow trial.

The challenger is a judged policy (a kept experiment, the workspace champion or the baseline) and the events are new
(none the workspace has seen, all after its sealed data). Both policies are fitted on the workspace's train split
and decide the valid events in time order, in batches, in the sandbox; every decision of both is stored with its
latency, and only the champion's act. The store's rows and the trial's files are written in one transaction with
the ledger entry that holds their hashes (optimizer.release.shadow.integrity).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from holdout.entries import ShadowTrial
from holdout.hashing import array_sha256, content_hash, sha256_file
from holdout.ledger import Kind
from optimizer.base.errors import RatchetError
from optimizer.records.refs import PolicyRef, acting, named, resolve
from optimizer.release.shadow.deciding import decide_all, past_of
from optimizer.release.shadow.events import read_frame
from optimizer.release.shadow.integrity import file_hashes, table_hashes
from optimizer.release.shadow.quarantine import check_events, refuse_seen
from optimizer.release.shadow.store import ShadowStore, Trial
from optimizer.workspace.history import EventStore
from optimizer.workspace.runner import exclusive


@dataclass(frozen=True)
class Started:
    trial: str
    events: int
    quarantined: int
    reasons: dict[str, int]  # quarantine reason -> rows
    champion: dict
    challenger: dict
    dropped_columns: tuple[str, ...]

    def to_json(self) -> dict:
        return {"trial": self.trial, "events": self.events, "quarantined": self.quarantined,
                "quarantine_reasons": self.reasons, "champion": self.champion, "challenger": self.challenger,
                "dropped_columns": list(self.dropped_columns)}


def store_of(ctx) -> ShadowStore:
    return ShadowStore(ctx.ws.root / "shadow.duckdb")


def trial_dir(ctx, trial: str) -> Path:
    return ctx.ws.root / "shadow" / trial


@exclusive
def start_trial(path: Path, *, challenger: str, events_file: Path, progress=lambda _: None) -> Started:
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    ctx = load_context(path)
    entries = ctx.ledger.entries()
    if not any(e.kind == Kind.BASELINE for e in entries):  # the baseline acts until a promotion: the trial's champion
        raise RatchetError(f"{path}: the baseline has not been evaluated yet, and a trial holds its challenger against "
                           f"it; `ratchet run {path}` evaluates it and searches for a challenger to keep "
                           f"(`--experiments 0`: the baseline only).")
    champ, chall = acting(ctx, entries)[0], judged(ctx, challenger, entries)
    if chall.commit == champ.commit:
        raise RatchetError(f"--challenger {challenger}: is the acting champion ({champ.commit[:12]}); a trial compares "
                           "a different kept policy with it.")
    progress(f"checking {events_file} against the workspace's data contract")
    checked = check_events(ctx, read_frame(events_file, "events"), source=str(events_file))
    cols = ctx.domain.columns
    valid = checked.valid.sort_values(cols.time, kind="stable").reset_index(drop=True)
    if valid.empty:
        raise RatchetError(f"{events_file}: no valid event (all {len(checked.quarantined)} rows quarantined: "
                           f"{_top_reason(checked.quarantined)}); fix the file.")
    refuse_seen(ctx, valid, source=str(events_file))
    trial = f"trial-{sum(e.kind == Kind.SHADOW_TRIAL for e in entries) + 1:04d}"
    store = store_of(ctx)
    decided: dict = {}
    with EventStore(ctx) as events, Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        past, offset = past_of(ctx, events, valid)
        for role, ref in (("champion", champ), ("challenger", chall)):
            progress(f"{trial}: fitting the {role} ({ref.experiment or ref.commit[:12]})")
            decided[role], latency = decide_all(ctx, sandbox, ref, valid, role, progress, past, offset)
            decided[role + "_latency"] = latency
        events.append(valid[events.columns])  # what serve decides next reads these events as history
    folder = trial_dir(ctx, trial)
    # A start a stop cut short left files but no ledger entry (the ledger numbers trials): they are not a trial.
    shutil.rmtree(folder, ignore_errors=True)
    store.forget(trial)
    folder.mkdir(parents=True)
    valid.to_parquet(folder / "events.parquet", index=False)
    ids, ts = valid[cols.id].astype(str).to_numpy(), valid[cols.time]
    record = Trial(trial, datetime.now(timezone.utc).isoformat(timespec="seconds"), champ.commit, chall.commit,
                   challenger, sha256_file(events_file))
    reasons = _reasons(checked.quarantined)
    with store.writing():  # the rows and the ledger entry that binds them: both, or neither
        store.add_trial(record, pd.DataFrame({"event_id": ids, "ts": ts}))
        store.quarantine(trial, checked.quarantined)
        for role in ("champion", "challenger"):
            values, constants = decided[role]
            store.log_decisions(trial, ids, ts, role, values, decided[role + "_latency"], acted=role == "champion")
            (folder / f"{role}.json").write_text(json.dumps({"constants": constants}, default=str))
        entry = ctx.ledger.append(Kind.SHADOW_TRIAL, ShadowTrial(
            trial=trial, champion=champ.to_dict(), challenger=chall.to_dict(),
            events_file_sha256=record.events_sha256, events_sha256=content_hash(valid),
            events=len(valid), quarantined=len(checked.quarantined), quarantine_reasons=reasons,
            decisions_sha256={role: array_sha256(np.asarray(decided[role][0])) for role in ("champion", "challenger")},
            store_sha256=table_hashes(store, trial), files_sha256=file_hashes(folder),
            seal=ctx.manifest_sha256).to_payload())
    _track(ctx, entry.data)
    return Started(trial, len(valid), len(checked.quarantined), reasons, champ.to_dict(), chall.to_dict(),
                   checked.dropped_columns)


def judged(ctx, challenger: str, entries: list) -> PolicyRef:
    """The policy `challenger` names, when it was judged: a kept experiment, the workspace champion or the baseline.
    A commit nobody scanned, scored or kept is refused: its trial would read metrics no gate ever answered."""
    ref = named(ctx, resolve(ctx, challenger, entries).commit, entries)
    if not ref.experiment:
        raise RatchetError(f"--challenger {challenger}: commit {ref.commit[:12]} is no kept experiment and not the "
                           "baseline; a trial's challenger must be a judged policy: a kept experiment (exp-0003), "
                           "champion or baseline (keep a candidate first with `ratchet try DIR FILE --keep`).")
    return dataclasses.replace(ref, ref=challenger)


def _track(ctx, data: dict) -> None:
    """The trial's start as an MLflow run: who decided what, on how many events."""
    from holdout.records import Tag
    from optimizer.tracking.runs import open_tracker

    tracker = open_tracker(ctx)
    with tracker.run(f"shadow {data['trial']} start", tags={Tag.KIND: "shadow", Tag.SEAL: ctx.manifest_sha256,
                                                           Tag.COMMIT: data["challenger"]["commit"]}):
        tracker.mlflow.log_params({"trial": data["trial"], "champion": data["champion"]["commit"],
                                   "challenger": data["challenger"]["commit"]})
        tracker.mlflow.log_metrics({"events": data["events"], "quarantined": data["quarantined"]})
        tracker.log_json(data, "shadow_trial.json")


def _reasons(quarantined: pd.DataFrame) -> dict[str, int]:
    """Rows per kind of reason (the reason without the value that broke it)."""
    if quarantined.empty:
        return {}
    kinds = quarantined["reason"].astype(str).str.split("; ").explode()
    kinds = kinds.str.replace(r" \(.*\)$| '.*'$", "", regex=True)
    return {k: int(v) for k, v in kinds.value_counts().items()}


def _top_reason(quarantined: pd.DataFrame) -> str:
    reasons = _reasons(quarantined)
    return max(reasons, key=reasons.__getitem__) if reasons else "no rows"
