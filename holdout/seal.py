"""Seal a holdout: refuse on contamination, plant canaries, write read-only files and a manifest."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from domains.errors import RatchetError
from holdout.hashing import content_hash, hashes_in, row_hashes, sha256_file, source_hashes
from holdout.manifest import write_manifest
from holdout.split import Splits

HOLDOUT_FILE = "holdout.parquet"
CANARY_BASE = 9_100_000_000_000_000_000  # far above any real id: a hit is unambiguous


@dataclass(frozen=True)
class SealChecks:
    """What the seal-time checks found (they raise before this when sealing must be refused)."""

    row_overlap: int
    id_overlap: int
    entity_overlap: int


def check_contamination(splits: Splits, *, id_col: str, time_col: str, content_cols: list[str],
                        entity_col: str | None, max_overlap: int = 0) -> SealChecks:
    """Refuse to seal when holdout rows, ids or times touch train/dev.

    Train and dev are looked at part by part, column by column (no copy of the two joined: at 10M rows that
    copy was the largest allocation of a seal)."""
    seen = (splits.train, splits.dev)
    hold = splits.holdout
    seen_hashes = np.concatenate([row_hashes(part, content_cols) for part in seen])
    overlap_rows = int(hashes_in(row_hashes(hold, content_cols), seen_hashes).sum())
    del seen_hashes
    if overlap_rows > max_overlap:
        raise RatchetError(
            f"seal refused: {overlap_rows} holdout rows are exact copies of train/dev rows (row hashes over "
            f"{', '.join(content_cols)}; allowed: {max_overlap}). Remove the replayed rows, or raise "
            "seal.max_overlap_rows in the config if they are genuine repeats, and run init again."
        )
    overlap_ids = int(hold[id_col].isin(_joined(seen, id_col)).sum())
    if overlap_ids:
        raise RatchetError(
            f"seal refused: {overlap_ids} holdout ids in column '{id_col}' also occur in train/dev. "
            "Ids must be unique across the data; fix the id column and run init again."
        )
    seen_end = max(part[time_col].max() for part in seen)
    if not hold[time_col].min() > seen_end:
        raise RatchetError(
            f"seal refused: the holdout is not strictly after train/dev in column '{time_col}' "
            f"(holdout starts {hold[time_col].min()}, train/dev end {seen_end})."
        )
    # A returning customer is expected (not contamination); it is reported, not refused.
    entity = int(hold[entity_col].isin(_joined(seen, entity_col)).sum()) if entity_col else 0
    return SealChecks(row_overlap=overlap_rows, id_overlap=0, entity_overlap=entity)


def _joined(parts: Iterable[pd.DataFrame], col: str) -> pd.Series:
    return pd.concat([part[col] for part in parts], ignore_index=True)


def plant_canaries(holdout: pd.DataFrame, *, id_col: str, time_col: str, count: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Copy random holdout rows under unmistakable ids; the scorer drops them, any leak shows them."""
    rng = np.random.default_rng([seed, 0xCA7A])
    picks = rng.choice(len(holdout), size=count, replace=False)
    canaries = holdout.iloc[picks].copy()
    if pd.api.types.is_integer_dtype(holdout[id_col]):
        ids = CANARY_BASE + rng.choice(10**15, size=count, replace=False)
        canaries[id_col] = ids.astype(holdout[id_col].dtype)
    else:
        canaries[id_col] = [f"rc-{rng.bytes(8).hex()}" for _ in range(count)]
    merged = pd.concat([holdout, canaries]).sort_values(time_col, kind="stable")
    return merged.reset_index(drop=True), [str(i) for i in canaries[id_col]]


def seal_holdout(directory: Path, holdout: pd.DataFrame, *, label: str, time_col: str, id_col: str,
                 canaries: list[str], scorer_files: Iterable[Path], source_root: Path, tool_version: str,
                 extra: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Write the holdout read-only with its manifest; return (manifest, manifest sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / HOLDOUT_FILE
    holdout.to_parquet(path, index=False)
    path.chmod(0o400)
    manifest = {
        "files": {HOLDOUT_FILE: sha256_file(path)},
        "content_sha256": content_hash(holdout),
        "schema": {str(c): str(t) for c, t in holdout.dtypes.items()},
        "rows": int(len(holdout)),
        "label": label,
        **_label_summary(holdout[label]),
        "time_range": [str(holdout[time_col].min()), str(holdout[time_col].max())],
        "id_column": id_col,
        "canaries": canaries,
        "scorer_sha256": source_hashes(scorer_files, source_root),
        "tool_version": tool_version,
        "sealed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    digest = write_manifest(directory, manifest)
    directory.chmod(0o700)
    return manifest, digest


def _label_summary(labels: pd.Series) -> dict[str, Any]:
    """A 0/1 label's positive rate; for a label with named classes, each class's share too
    (label_rate is then the largest share)."""
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        return {"label_rate": float(labels.mean())}
    shares = labels.astype(str).value_counts(normalize=True).sort_index()
    return {"label_rate": float(shares.max()) if len(shares) else 0.0,
            "label_shares": {str(k): float(v) for k, v in shares.items()}}
