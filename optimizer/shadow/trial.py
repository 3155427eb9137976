"""Start a shadow trial and join its outcomes.

Both policies are fitted on the workspace's train split and decide the valid events in time order, in batches,
in the sandbox; every decision of both is stored with its latency, and only the champion's act. Outcomes are
joined as they arrive; for a domain whose decisions stop events (fraud blocks), an event the champion stopped is
labelled only when a review looked at it (selective labels).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.history import History, lookback
from holdout.hashing import array_sha256, content_hash, sha256_file
from holdout.ledger import Kind
from optimizer.errors import RatchetError
from optimizer.history import EventStore, sealed_events
from optimizer.refs import PolicyRef, acting, resolve
from optimizer.runner import exclusive
from optimizer.shadow.events import outcome_ids, read_frame
from optimizer.shadow.quarantine import check_events
from optimizer.shadow.store import ShadowStore, Trial


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
    from optimizer.context import load_context
    from optimizer.sandbox import Sandbox

    ctx = load_context(path)
    entries = ctx.ledger.entries()
    champ, chall = acting(ctx, entries)[0], resolve(ctx, challenger, entries)
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
    trial = f"trial-{sum(e.kind == Kind.SHADOW_TRIAL for e in entries) + 1:04d}"
    store = store_of(ctx)
    decided: dict = {}
    with EventStore(ctx) as events, Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        past, offset = _past(ctx, events, valid)
        for role, ref in (("champion", champ), ("challenger", chall)):
            progress(f"{trial}: fitting the {role} ({ref.experiment or ref.commit[:12]})")
            decided[role], latency = _decide_all(ctx, sandbox, ref, valid, role, progress, past, offset)
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
    store.add_trial(record, pd.DataFrame({"event_id": ids, "ts": ts}))
    store.quarantine(trial, checked.quarantined)
    for role in ("champion", "challenger"):
        values, constants = decided[role]
        store.log_decisions(trial, ids, ts, role, values, decided[role + "_latency"], acted=role == "champion")
        (folder / f"{role}.json").write_text(json.dumps({"constants": constants}, default=str))
    reasons = _reasons(checked.quarantined)
    entry = ctx.ledger.append(Kind.SHADOW_TRIAL, {
        "trial": trial, "champion": champ.to_dict(), "challenger": chall.to_dict(),
        "events_file_sha256": record.events_sha256, "events_sha256": content_hash(valid),
        "events": len(valid), "quarantined": len(checked.quarantined), "quarantine_reasons": reasons,
        "decisions_sha256": {role: array_sha256(np.asarray(decided[role][0])) for role in ("champion", "challenger")},
        "seal": ctx.manifest_sha256})
    _track(ctx, entry.data)
    return Started(trial, len(valid), len(checked.quarantined), reasons, champ.to_dict(), chall.to_dict(),
                   checked.dropped_columns)


def _track(ctx, data: dict) -> None:
    """The trial's start as an MLflow run: who decided what, on how many events."""
    from holdout.records import Tag
    from optimizer.loop import open_tracker

    tracker = open_tracker(ctx)
    with tracker.run(f"shadow {data['trial']} start", tags={Tag.KIND: "shadow", Tag.SEAL: ctx.manifest_sha256,
                                                           Tag.COMMIT: data["challenger"]["commit"]}):
        tracker.mlflow.log_params({"trial": data["trial"], "champion": data["champion"]["commit"],
                                   "challenger": data["challenger"]["commit"]})
        tracker.mlflow.log_metrics({"events": data["events"], "quarantined": data["quarantined"]})
        tracker.log_json(data, "shadow_trial.json")


def _past(ctx, store: EventStore, valid: pd.DataFrame) -> tuple[History, int]:
    """The workspace's history and the holdout's events, followed by the trial's events (those already held, from
    an earlier trial or serve, only once, in the trial's place), and where the trial's events start in it."""
    ids = valid[store.id].astype(str)
    held = pd.concat([store.events(), sealed_events(ctx, store)], ignore_index=True)
    held = held[~held[store.id].astype(str).isin(ids)]
    events = pd.concat([held, valid[store.columns]], ignore_index=True)
    return History.of(events, time=store.time, keys=store.keys), len(held)


def _decide_all(ctx, sandbox, ref: PolicyRef, events: pd.DataFrame, role: str, progress, past: History,
                offset: int):
    """Fit `ref` on train and decide `events` in time-ordered batches: (decisions, constants), latency per event.
    Each batch reads the history serve would give it (`past` up to the batch), so its size changes no decision."""
    budget = ctx.config.sandbox.budget_s
    fitted = sandbox.fit(ref.source, ctx.domain.policy_view(ctx.train, with_label=True), budget_s=budget)
    if fitted.status != "ok":
        raise RatchetError(f"the {role} ({ref.ref}) failed to fit in the sandbox: {fitted.status}: {fitted.error}")
    size = ctx.config.shadow.batch
    days = lookback(ref.source)
    values, latency, constants = [], [], {}
    for start in range(0, len(events), size):
        rows = events.iloc[start:start + size].reset_index(drop=True)
        history = {"events": past.window(rows, days, before=offset + start)} if days > 0 else None
        t0 = time.perf_counter()
        out = sandbox.decide(ref.source, fitted.model, {"events": rows}, budget_s=budget, constants=ctx.domain.constants,
                             history=history)
        ms = (time.perf_counter() - t0) * 1000 / len(rows)
        if out.status != "ok":
            raise RatchetError(f"the {role} ({ref.ref}) failed to decide events {start + 1}-{start + len(rows)}: "
                               f"{out.status}: {out.error}")
        from domains import Decisions

        problem = ctx.domain.check_decisions(Decisions(out.decisions["events"], out.constants), rows,
                                             ctx.config.scoring.model_dump())
        if problem:
            raise RatchetError(f"the {role} ({ref.ref}) broke the output contract on events: {problem}")
        values.append(out.decisions["events"])
        latency.append(np.full(len(rows), ms))
        constants = dict(out.constants)
        progress(f"{role}: {min(start + size, len(events)):,} of {len(events):,} events decided")
    return (np.concatenate(values), constants), np.concatenate(latency)


def _reasons(quarantined: pd.DataFrame) -> dict[str, int]:
    """Rows per kind of reason (the reason without the value that broke it)."""
    if quarantined.empty:
        return {}
    kinds = quarantined["reason"].astype(str).str.split("; ").explode()
    kinds = kinds.str.replace(r" \(.*\)$| '.*'$", "", regex=True)
    return {k: int(v) for k, v in kinds.value_counts().items()}


def _top_reason(quarantined: pd.DataFrame) -> str:
    reasons = _reasons(quarantined)
    return max(reasons, key=reasons.get) if reasons else "no rows"


def label_text(value: Any) -> str | None:
    """An outcome's label as stored: text, whole numbers without a decimal point (1.0 and 1 are one label)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


@exclusive
def add_outcomes(path: Path, trial: str, outcomes_file: Path) -> dict:
    """Join a batch of outcomes to `trial`: only its events' ids, each event's first outcome counts."""
    from optimizer.context import load_context

    ctx = load_context(path)
    store = store_of(ctx)
    if trial not in {t.trial for t in store.trials()}:
        known_trials = ", ".join(t.trial for t in store.trials()) or "none yet"
        raise RatchetError(f"{trial}: no such trial in {ctx.ws.root} (trials: {known_trials}); start one with "
                           "`ratchet shadow start`.")
    frame = outcome_ids(ctx, read_frame(outcomes_file, "outcomes"), source=f"--outcomes {outcomes_file}")
    need = ["event_id", "label", "known_at", "reviewed"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise RatchetError(f"--outcomes {outcomes_file}: missing column(s) {', '.join(missing)}; an outcomes file has "
                           f"{', '.join(need)} (and extra, the outcome-only columns as JSON), as `ratchet events` writes.")
    try:
        known_at = pd.to_datetime(frame["known_at"])
    except (ValueError, TypeError) as exc:
        raise RatchetError(f"--outcomes {outcomes_file}: column known_at holds a value that is not a time ({exc}); "
                           "write ISO 8601 times, as `ratchet events` does.") from None
    frame = frame.assign(event_id=frame["event_id"].astype(str), label=frame["label"].map(label_text),
                         known_at=known_at, reviewed=frame["reviewed"].astype(bool),
                         extra=frame["extra"].astype(str) if "extra" in frame.columns else "{}")
    known = set(store.query("SELECT event_id FROM events WHERE trial = ?", [trial])["event_id"])
    seen = set(store.query("SELECT event_id FROM outcomes WHERE trial = ?", [trial])["event_id"])
    fresh = frame[frame["event_id"].isin(known) & ~frame["event_id"].isin(seen)].drop_duplicates("event_id")
    batch = store.add_outcomes(trial, fresh)
    ctx.ledger.append(Kind.SHADOW_OUTCOMES, {"trial": trial, "batch": batch, "rows": len(fresh),
                                             "ignored": len(frame) - len(fresh), "file_sha256": sha256_file(outcomes_file)})
    return {"trial": trial, "batch": batch, "joined": len(fresh), "ignored": len(frame) - len(fresh)}
