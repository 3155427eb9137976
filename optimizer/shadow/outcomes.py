"""`ratchet shadow outcomes`: a batch of outcomes joined to a trial's events as they arrive."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from holdout.hashing import sha256_file
from holdout.ledger import Kind
from optimizer.errors import RatchetError
from optimizer.runner import exclusive
from optimizer.shadow.events import outcome_ids, read_frame
from optimizer.shadow.trial import store_of


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
