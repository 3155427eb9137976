"""`ratchet reseal`: retire a spent holdout and seal a fresh one, checked against everything used before."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from holdout import fingerprint, lineage, queries
from holdout.entries import Reseal, Seal, view
from holdout.hashing import hashes_in, row_hashes
from holdout.ledger import Entry, Kind
from holdout.seal import HOLDOUT_FILE, plant_canaries, seal_holdout
from holdout.split import split_by_time
from optimizer import __version__
from optimizer.base.errors import IntegrityError, RatchetError
from optimizer.records.context import load_context
from optimizer.workspace.runner import exclusive

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ResealResult:
    manifest_sha256: str
    rows: int
    retired: Path


def _fresh_rows(ctx, *, seed: int | None, data: Path | None, progress: Progress) -> pd.DataFrame:
    """Rows for the new holdout: strictly after dev (plus the gap), from new data or a new seed."""
    cols, cfg = ctx.domain.columns, ctx.config
    if not isinstance(cfg.split.gap_days, (int, float)):  # init records the number it used, never `auto`
        raise RatchetError(f"{ctx.ws.config}: split.gap_days is {cfg.split.gap_days!r}, but a sealed workspace "
                           "records the number of days its splits were cut with (init writes it); restore the "
                           "recorded ratchet.yaml (`ratchet audit` shows the change).")
    if data is not None:
        from domains._importing import TimeReading

        progress(f"importing {data}")
        # read as init read the workspace's data: its unit and epoch, the format it recorded for text times
        reading = TimeReading(cfg.data.time_unit, cfg.data.epoch, cfg.data.time_format, recorded=True)
        frame = ctx.domain.load(Path(data), cfg.data.mapping, reading)
        source = str(data)
    else:
        progress(f"generating ~{cfg.data.rows:,} rows with seed {seed}")
        frame = ctx.domain.generate(seed, cfg.data.rows)
        # A new seed is a new world over the same dates: its holdout period alone is used.
        frame = split_by_time(frame, time=cols.time, train=cfg.split.train, dev=cfg.split.dev,
                              gap_days=cfg.split.gap_days).holdout
        if pd.api.types.is_integer_dtype(frame[cols.id]):
            used = max(int(ctx.train[cols.id].max()), int(ctx.dev[cols.id].max()), int(ctx.holdout[cols.id].max()))
            frame = frame.assign(**{cols.id: frame[cols.id] + used + 1})
        source = f"generated data (seed {seed})"
    ctx.domain.check_contract(frame, source=source)
    start = ctx.dev[cols.time].max() + pd.Timedelta(days=cfg.split.gap_days)
    fresh = frame[frame[cols.time] > start].reset_index(drop=True)
    if len(fresh) < 100:
        raise RatchetError(f"{source}: only {len(fresh)} rows fall after the dev period (+{cfg.split.gap_days} days, "
                           f"after {start}); a new holdout needs later data.")
    return fresh


def _check_unused(ctx, fresh: pd.DataFrame) -> None:
    """Refuse any row or id that train or dev had."""
    cols = ctx.domain.columns
    content = [c for c in fresh.columns if c != cols.id]
    used = pd.concat([ctx.train, ctx.dev], ignore_index=True)
    common = [c for c in content if c in used.columns]
    rows = int(hashes_in(row_hashes(fresh, common), row_hashes(used, common)).sum())
    ids = int(fresh[cols.id].astype(str).isin(set(used[cols.id].astype(str))).sum())
    if rows or ids:
        raise RatchetError(f"reseal refused: {rows} of {len(fresh)} new holdout rows and {ids} ids in column "
                           f"'{cols.id}' were already used in train or dev. A fresh holdout must be data nobody has seen.")


def _sealed_before(ctx, entries: list) -> tuple[list[tuple[Entry, fingerprint.Fingerprint]], dict[str, dict]]:
    """Every holdout the ledger ever sealed, as its fingerprint: the one the ledger bound (verified), else, for a
    seal made before fingerprints were recorded, computed from its folder once the folder matches its seal (those
    are returned as well, for the reseal entry to bind). A seal with neither refuses the reseal."""
    root, id_col = ctx.ws.root, ctx.domain.columns.id
    bound = lineage.fingerprints(entries)
    folders = {sealed.seq: folder for sealed, _, folder in lineage.retired_folders(entries)}
    found, filled = [], {}
    for e in (e for e in entries if e.kind in queries.SEALS):
        sha, where = queries.sealed(e).manifest_sha256, lineage.seal_name(e)
        if sha in bound:
            found.append((e, fingerprint.read(root, bound[sha][0], where)))
            continue
        if sha == ctx.manifest_sha256:  # the holdout in place, verified when the workspace was loaded
            frame = ctx.holdout_all
        else:
            folder = folders.get(e.seq, "?")
            wrong = lineage.retired_problem(root, e, folder)
            if wrong:
                raise IntegrityError(f"reseal refused: the overlap with the holdout sealed by {where} cannot be "
                                     f"tested: {wrong}, and that seal recorded no fingerprint (an older workspace).")
            frame = pd.read_parquet(root / lineage.RETIRED / folder / HOLDOUT_FILE)
        filled[sha] = fingerprint.write(root, frame, id_col=id_col, manifest_sha256=sha)
        found.append((e, fingerprint.of(frame, id_col)))
    return found, filled


def _check_unsealed(ctx, fresh: pd.DataFrame, sealed: list[tuple[Entry, fingerprint.Fingerprint]]) -> None:
    """Refuse rows or ids of any holdout ever sealed, whether or not its folder still exists."""
    for entry, found in sealed:
        rows, ids = fingerprint.overlap(fresh, found, ctx.domain.columns.id)
        if rows or ids:
            raise RatchetError(f"reseal refused: {rows} of {len(fresh)} new holdout rows and {ids} ids in column "
                               f"'{ctx.domain.columns.id}' repeat the holdout sealed by {lineage.seal_name(entry)}. "
                               "A fresh holdout must be data nobody has seen.")


@exclusive
def reseal(path: Path, *, seed: int | None = None, data: Path | None = None,
           progress: Progress = lambda _: None) -> ResealResult:
    from optimizer.lifecycle.initialize import scorer_files, source_root
    from optimizer.tracking.runs import Tag, Tracker, workspace_uri

    if (seed is None) == (data is None):
        raise RatchetError("reseal: pass exactly one of --seed N (generated data) or --data FILE.")
    ctx = load_context(path)
    ws, cols = ctx.ws, ctx.domain.columns
    entries = ctx.ledger.entries()
    retired_root = ws.root / lineage.RETIRED
    sealed, filled = _sealed_before(ctx, entries)
    fresh = _fresh_rows(ctx, seed=seed, data=data, progress=progress)
    _check_unused(ctx, fresh)
    _check_unsealed(ctx, fresh, sealed)
    problems, _ = lineage.sealed_holdouts(ws.root, entries)  # no overlap, but a retired holdout no longer as sealed
    if problems:
        raise IntegrityError(f"reseal refused: {problems[0]}. Run `ratchet audit {path}`.")

    progress("retiring the old holdout")
    retired_frames = lineage.retired_folders(entries)
    retired = retired_root / f"holdout-{len(retired_frames) + 1}"
    retired_root.mkdir(exist_ok=True)
    ws.holdout_dir.chmod(0o700)
    shutil.move(str(ws.holdout_dir), str(retired))
    progress("sealing the new holdout")
    holdout, canaries = plant_canaries(fresh, id_col=cols.id, time_col=cols.time, count=ctx.config.seal.canaries,
                                       seed=ctx.config.seed + len(retired_frames) + 1)
    manifest, digest = seal_holdout(
        ws.holdout_dir, holdout, label=cols.label, time_col=cols.time, id_col=cols.id, canaries=canaries,
        scorer_files=scorer_files(ctx.domain), source_root=source_root(), tool_version=__version__,
        extra={"domain": ctx.domain.name, "seed": ctx.config.seed, "replaces": ctx.manifest_sha256,
               "source": str(data) if data else f"seed {seed}"},
    )
    new_rows = fingerprint.write(ws.root, holdout, id_col=cols.id, manifest_sha256=digest)
    first = view(queries.first_seal(entries), Seal).mlflow or {}
    tracker = Tracker(first["experiment"], workspace_uri(ws.root, ctx.ledger.entries()))
    with tracker.run("reseal", tags={Tag.SEAL: digest, Tag.KIND: "reseal"}) as run:
        tracker.log_json(manifest, "MANIFEST.json")
        tracker.mlflow.log_metrics({"rows_holdout": int(manifest["rows"]), "label_rate_holdout": manifest["label_rate"]})
        run_id = run.info.run_id
    ctx.ledger.append(Kind.RESEAL, Reseal(
        manifest_sha256=digest, content_sha256=manifest["content_sha256"], replaces=ctx.manifest_sha256,
        retired_to=retired.name, fingerprint=new_rows, fingerprints_filled=filled or None,  # left out when none
        mlflow={"uri": tracker.uri, "experiment": first["experiment"], "run_id": run_id}).to_payload())
    return ResealResult(digest, int(manifest["rows"]), retired)
