"""`ratchet shadow outcomes`: a batch of outcomes joined to a trial's events as they arrive.

A batch is validated like events, and refused whole on any bad row (nothing of it is joined, nothing is recorded):
labels must be the domain's (fraud: the integers 0 and 1; not True, "yes" or 2), `known_at` may be written in any
common form (ISO 8601 with or without fractional seconds or a zone, or epoch seconds) and is kept as naive UTC like
the events' times, `reviewed` is a flag (true/false, 1/0, yes/no). An event's outcome may be sent again: the same
outcome is ignored, a different one is stored as a correction in the new batch (the report reads each event's
latest), and the ledger's entry for the batch counts them and holds the hash of the rows stored.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from holdout import queries
from holdout.entries import ShadowOutcomes
from holdout.hashing import sha256_file
from holdout.ledger import Kind
from optimizer.base.errors import RatchetError
from optimizer.release.shadow.events import outcome_ids, read_frame
from optimizer.release.shadow.integrity import batch_hashes, verify_trial
from optimizer.release.shadow.trial import store_of
from optimizer.workspace.runner import exclusive

NEED = ("event_id", "label", "known_at", "reviewed")
FIELDS = ("label", "known_at", "reviewed", "extra")  # what an outcome is: one that differs in any is a correction
_WHOLE = re.compile(r"[+-]?\d+(\.0*)?")
_EPOCH = re.compile(r"\d+(\.\d+)?")
_FLAGS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


@exclusive
def add_outcomes(path: Path, trial: str, outcomes_file: Path) -> dict:
    """Join a batch of outcomes to `trial` (only its events' ids): returns the batch number and how many outcomes
    were joined, corrected and ignored."""
    from optimizer.records.context import load_context

    ctx = load_context(path)
    entries = ctx.ledger.entries()
    trials = queries.trial_ids(entries)
    if trial not in trials:
        raise RatchetError(f"{trial}: no such trial in {ctx.ws.root} (trials: {', '.join(trials) or 'none yet'}); "
                           "start one with `ratchet shadow start`.")
    verify_trial(ctx, trial, entries)  # a batch is never added to a store that no longer matches the ledger
    source = f"--outcomes {outcomes_file}"
    store = store_of(ctx)
    times = store.query("SELECT event_id, ts FROM events WHERE trial = ?", [trial]).set_index("event_id")["ts"]
    frame = validated(ctx, outcome_ids(ctx, read_frame(outcomes_file, "outcomes"), source=source), source, times)
    latest = store.latest_outcomes(trial).set_index("event_id")
    ours = frame[frame["event_id"].isin(times.index)]
    before = latest.reindex(ours["event_id"].to_numpy())
    known = before["label"].notna().to_numpy() | before["known_at"].notna().to_numpy()
    same = np.logical_and.reduce([_equal(ours[f].to_numpy(), before[f].to_numpy()) for f in FIELDS])
    fresh = ours[~(known & same)]
    corrections = int((known & ~same).sum())
    batch = 1 + len(queries.outcome_batches(entries, trial))
    with store.writing():  # the rows and the ledger entry that binds them: both, or neither
        store.add_outcomes(trial, batch, fresh)
        rows, digest = batch_hashes(store, trial).get(batch, (0, None))
        ctx.ledger.append(Kind.SHADOW_OUTCOMES, ShadowOutcomes(
            trial=trial, batch=batch, rows=rows, new=rows - corrections, corrections=corrections,
            ignored=len(frame) - rows, rows_sha256=digest, file_sha256=sha256_file(outcomes_file)).to_payload())
    return {"trial": trial, "batch": batch, "joined": rows - corrections, "corrections": corrections,
            "ignored": len(frame) - rows}


def validated(ctx, frame: pd.DataFrame, source: str, times: pd.Series) -> pd.DataFrame:
    """The batch as stored (event_id, label as text, known_at as naive UTC to the microsecond, reviewed, extra as
    JSON), one row per event; RatchetError naming the file, the first bad row and its column otherwise."""
    missing = [c for c in NEED if c not in frame.columns]
    if missing:
        raise RatchetError(f"{source}: missing column(s) {', '.join(missing)}; an outcomes file has "
                           f"{', '.join(NEED)} (and extra, the outcome-only columns as JSON), as `ratchet events` "
                           "writes.")
    frame = frame.reset_index(drop=True)
    label = ctx.domain.columns.label
    checks: dict[str, Callable[[Any], Any]] = {"event_id": _event_id, "label": _label_rule(ctx, label),
                                               "reviewed": _flag, "extra": _extra}
    out = {name: _each(frame, name, rule, source) for name, rule in checks.items() if name in frame.columns}
    out["known_at"] = _times(frame["known_at"], source)
    typed = pd.DataFrame({"event_id": out["event_id"], "label": out["label"], "known_at": out["known_at"],
                          "reviewed": out["reviewed"].astype(bool),
                          "extra": out.get("extra", pd.Series(["{}"] * len(frame), dtype=object))})
    early = typed["event_id"].map(times).to_numpy()
    before = pd.notna(early) & (typed["known_at"].to_numpy() < pd.to_datetime(early).to_numpy())
    if before.any():
        i = int(np.flatnonzero(before)[0])
        _bad(source, i, "known_at", frame.at[i, "known_at"], f"is before the event's own time ({early[i]}): an "
             "outcome cannot be known before its event", int(before.sum()))
    twice = typed["event_id"].duplicated(keep=False)
    clash = twice & ~typed.duplicated(keep=False)  # the same event with two different outcomes in one batch
    if clash.any():
        i = int(np.flatnonzero(clash.to_numpy())[0])
        _bad(source, i, "event_id", typed.at[i, "event_id"], "has different outcomes in this batch; send one outcome "
             "per event (a later batch may correct it)", int(clash.sum()))
    return typed.drop_duplicates("event_id").reset_index(drop=True)


def _each(frame: pd.DataFrame, column: str, rule: Callable[[Any], Any], source: str) -> pd.Series:
    """`rule` applied to each value of `column`; the first value it refuses (ValueError: why) is named by row."""
    values, refused = [], []
    for i, value in enumerate(frame[column].tolist()):
        try:
            values.append(rule(value))
        except ValueError as exc:
            refused.append((i, value, str(exc)))
            values.append(None)
    if refused:
        i, value, why = refused[0]
        _bad(source, i, column, value, why, len(refused))
    return pd.Series(values, dtype=object)


def _bad(source: str, i: int, column: str, value: Any, why: str, count: int) -> None:
    more = f" ({count - 1:,} more bad row(s) in this column)" if count > 1 else ""
    shown = "" if _missing(value) else f": {str(value)[:40]!r}"
    raise RatchetError(f"{source}: row {i + 1}, column {column}{shown} {why}{more}; the batch was refused whole "
                       "(nothing joined): fix the file and send it again.")


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (str, bytes, dict, list)) and bool(pd.isna(value)))


def _event_id(value: Any) -> str:
    if _missing(value) or str(value).strip() == "":
        raise ValueError("is empty: every outcome names its event")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # a CSV reads integer ids with a gap as floats
    return str(value)


def _label_rule(ctx, label: str) -> Callable[[Any], str]:
    """How a label is read for this domain: as the dev split types it (whole numbers for a 0/1 flag, text for a
    team), within the value set the workspace's data contract sealed, if any. Booleans and words are refused, not
    guessed at: True/False or "yes" is no fraud flag the scorer reads."""
    allowed = _sealed_values(ctx, label)
    integer = pd.api.types.is_integer_dtype(ctx.dev[label])
    numeric = pd.api.types.is_numeric_dtype(ctx.dev[label]) and not pd.api.types.is_bool_dtype(ctx.dev[label])
    named = f"one of {', '.join(map(str, allowed))}" if allowed else ("a whole number" if integer else "a number")

    def read(value: Any) -> str:
        if _missing(value) or (isinstance(value, str) and not value.strip()):
            raise ValueError("is empty: leave out the events whose outcome is not known yet")
        if numeric:
            if isinstance(value, (bool, np.bool_)):
                raise ValueError(f"is a boolean, not a {label} value ({named})")
            text = str(value).strip()
            if integer:
                if not _WHOLE.fullmatch(text) and not (isinstance(value, (float, np.floating))
                                                      and float(value).is_integer()):
                    raise ValueError(f"is not a {label} value ({named})")
                number: Any = int(float(text))
            else:
                try:
                    number = float(text)
                except ValueError:
                    raise ValueError(f"is not a {label} value ({named})") from None
            if allowed and number not in allowed:
                raise ValueError(f"is not a {label} value ({named})")
            return str(number)
        text = str(value)
        if allowed and text not in map(str, allowed):
            raise ValueError(f"is not a {label} value ({named})")
        return text

    return read


def _sealed_values(ctx, column: str) -> list:
    """The value set the sealed data contract holds for `column` (expect_column_values_to_be_in_set), or []."""
    suite = ctx.ws.root / "contract" / "suite.json"
    if not suite.is_file():
        return []
    for e in json.loads(suite.read_text()).get("expectations", []):
        kwargs = e.get("kwargs") or {}
        if e.get("type") == "expect_column_values_to_be_in_set" and kwargs.get("column") == column:
            return list(kwargs.get("value_set") or [])
    return []


def _flag(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = "" if _missing(value) else str(value).strip().lower()
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        text = str(int(value))
    if text not in _FLAGS:
        raise ValueError("is not a flag (true/false, 1/0 or yes/no)")
    return _FLAGS[text]


def _extra(value: Any) -> str:
    """The outcome-only columns as canonical JSON (an object); empty means none."""
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        return "{}"
    try:
        parsed = value if isinstance(value, dict) else json.loads(value)
    except (TypeError, ValueError):
        raise ValueError("is not JSON (the outcome-only columns as an object)") from None
    if not isinstance(parsed, dict):
        raise ValueError("is not a JSON object (the outcome-only columns by name)")
    return json.dumps(parsed, sort_keys=True, default=str)


def _times(values: pd.Series, source: str) -> pd.Series:
    """`known_at` as naive UTC to the microsecond (what DuckDB keeps), read from datetimes, ISO 8601 text in any
    mix of precisions and zones (a time without a zone is UTC), other common date forms, or epoch seconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz is not None else values
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = pd.to_datetime(values, unit="s", errors="coerce")
    else:
        text = values.astype("string").str.strip()
        epoch = text.str.fullmatch(_EPOCH.pattern).fillna(False)
        out = pd.to_datetime(text.where(~epoch), format="ISO8601", utc=True, errors="coerce")
        other = out.isna() & text.notna() & ~epoch
        if other.any():
            out[other] = pd.to_datetime(text[other], format="mixed", utc=True, errors="coerce")
        if epoch.any():
            out[epoch] = pd.to_datetime(text[epoch].astype(float), unit="s", utc=True, errors="coerce")
        out = out.dt.tz_localize(None)
    bad = out.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = values.iloc[i]
        why = "is empty: every outcome says when it became known" if _missing(value) else (
            "is not a time (write ISO 8601, e.g. 2024-05-01T12:30:00Z, or epoch seconds)")
        _bad(source, i, "known_at", value, why, int(bad.sum()))
    return pd.Series(out.to_numpy(), dtype="datetime64[ns]").dt.floor("us")


def _equal(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Elementwise equality of a new outcome field with the stored one (times compared as times)."""
    if np.issubdtype(new.dtype, np.datetime64):
        return pd.to_datetime(pd.Series(old)).to_numpy(dtype="datetime64[ns]") == new
    return np.array([_same(a, b) for a, b in zip(new, old)], dtype=bool)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # a missing stored value (pd.NA) equals nothing
        return False
