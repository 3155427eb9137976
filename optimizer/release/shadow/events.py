"""`ratchet events`: live events that follow the sealed holdout in time, from the domain's generator, and their
outcomes, each with the time it becomes known. A generated workspace's events continue its own world: the same
customers and terminals with the same habits, days later, so the history a policy reads carries on as it would in
production (a policy's live metrics then estimate its holdout metrics, which a test holds it to).

The events file holds what a policy may see (the decision-time view: no label, no outcome-only column); the
outcomes file holds, per event id, the label, the outcome-only columns, `known_at` and `reviewed` (whether a
review would label it even if the acting policy stopped it).

A workspace imported from the user's file has no generator for its data: its events come from the user, and
`ratchet events` refuses unless asked for the built-in domain's (`synthetic`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.base.errors import RatchetError
from optimizer.workspace.user_columns import renames

DAY = pd.Timedelta(days=1)
MAX_DAYS = 366  # a year of live events per file at most; generate the next period with another --seed


@dataclass(frozen=True)
class GeneratedEvents:
    events: pd.DataFrame
    outcomes: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


def generate_events(ctx, *, days: float, seed: int, synthetic: bool = False) -> GeneratedEvents:
    """About `days` days of events starting just after the workspace's holdout ends. A generated workspace's events
    continue its own world (the same customers, terminals and profiles, so their history carries on); an imported
    workspace is refused unless `synthetic` (the built-in generator knows nothing of the user's data: its events
    then come from a new world whose entities get ids of their own)."""
    if ctx.config.data.source == "file" and not synthetic:
        raise RatchetError(f"{ctx.ws.root}: this workspace was initialised from {ctx.config.data.file}; there is no "
                           "generator for your data: send your own events, or pass --synthetic to generate the "
                           f"built-in {ctx.domain.name} domain's events.")
    if not days > 0 or days > MAX_DAYS:
        raise RatchetError(f"--days {days!r}: give a positive number of days, at most {MAX_DAYS}.")
    cols, shadow = ctx.domain.columns, ctx.domain.shadow
    start = ctx.holdout_all[cols.time].max().floor("D") + DAY  # the next midnight, strictly after the sealed data
    window = None
    if ctx.config.data.source != "file":
        window = ctx.domain.continue_population(ctx.config.data.seed, ctx.config.data.rows, start=start, days=days,
                                                live_seed=seed)
    if window is None:
        window = _new_world(ctx, days=days, seed=seed, start=start)
    if not len(window):
        raise RatchetError(f"--days {days:g}: no {ctx.domain.name} event falls in that time; ask for more days.")
    # Ids of the new events must not collide with those the workspace has seen.
    if pd.api.types.is_integer_dtype(ctx.dev[cols.id]):
        first = max(int(f[cols.id].max()) for f in (ctx.train, ctx.dev, ctx.holdout_all)) + 1
        window[cols.id] = np.arange(first, first + len(window), dtype=ctx.dev[cols.id].dtype)
    else:
        window[cols.id] = [f"ev-{seed}-{i:08d}" for i in range(len(window))]
    rng = np.random.default_rng([seed, 0x5EED])
    label = window[cols.label].to_numpy()
    positive = label.astype(float) > 0 if pd.api.types.is_numeric_dtype(window[cols.label]) else np.ones(len(window), bool)
    low, high = shadow.delay_days
    delay = np.where(positive, rng.uniform(low, high, len(window)), shadow.settle_days)
    extra = [json.dumps(row, default=str) for row in window[list(cols.outcome_only)].to_dict("records")]
    outcomes = pd.DataFrame({"event_id": window[cols.id].astype(str), "label": window[cols.label],
                             "known_at": window[cols.time] + pd.to_timedelta(delay, unit="D"),
                             "reviewed": rng.random(len(window)) < shadow.review_share, "extra": extra})
    events = ctx.domain.policy_view(window, with_label=False).reset_index(drop=True)
    return GeneratedEvents(events, outcomes, start, window[cols.time].max())


def _new_world(ctx, *, days: float, seed: int, start: pd.Timestamp) -> pd.DataFrame:
    """`days` days of a world the generator draws anew (seed `seed`) at the workspace's volume, moved to `start`. Its
    customer 87 is not the workspace's customer 87: its entities get ids of their own, or a policy would read another
    customer's history as theirs."""
    cols = ctx.domain.columns
    seen = len(ctx.train) + len(ctx.dev) + len(ctx.holdout)
    frame = ctx.domain.generate(seed, seen)  # the workspace's volume over the generator's own span
    span_start, span = frame[cols.time].min(), (frame[cols.time].max() - frame[cols.time].min()) / DAY
    if days > span:
        raise RatchetError(f"--days {days:g}: the {ctx.domain.name} generator covers {span:.0f} days at most; ask for "
                           "fewer and generate the next period with another --seed.")
    window = frame[frame[cols.time] < span_start + days * DAY].reset_index(drop=True)
    window[cols.time] = window[cols.time] - span_start + start
    for key in {*cols.history_keys, *([cols.entity] if cols.entity else [])} & set(window.columns):
        if pd.api.types.is_integer_dtype(window[key]):
            offset = max(int(f[key].max()) for f in (ctx.train, ctx.dev, ctx.holdout_all)) + 1
            window[key] = (window[key] + offset).astype(window[key].dtype)
        else:
            window[key] = window[key].astype(str).radd(f"ev-{seed}-").astype(window[key].dtype)
    return window


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Parquet or CSV by the file's extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise RatchetError(f"{path}: unknown file type {suffix or '(none)'}; name it .parquet or .csv.")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)


def read_frame(path: Path, what: str) -> pd.DataFrame:
    """A Parquet or CSV file a person passed; RatchetError naming the option and the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RatchetError(f"--{what} {path}: file not found.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as exc:  # a damaged file: say which and why, in one line
        raise RatchetError(f"--{what} {path}: cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
    raise RatchetError(f"--{what} {path}: unknown file type {suffix or '(none)'}; pass a .parquet or .csv file.")


def outcome_ids(ctx, frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """An outcomes file with its event ids under `event_id`, whether the file names that column so, by ratchet's id
    column or by the user's (mapped at init); RatchetError naming the file when it holds more than one of them."""
    cols = ctx.domain.columns
    names = dict.fromkeys(["event_id", cols.id, *(u for u, ours in renames(ctx).items() if ours == cols.id)])
    present = [c for c in names if c in frame.columns]
    if len(present) > 1:
        raise RatchetError(f"{source}: holds both {present[0]!r} and {present[1]!r} as the event id; keep one of them.")
    return frame.rename(columns={present[0]: "event_id"}) if present else frame
