"""A sealed holdout's fingerprint: what a later reseal needs to refuse its rows, kept outside the holdout folder.

At every seal and reseal the ledger entry binds a small file, `seals/<manifest sha256 prefix>.npz`: the sorted
uint64 hash of every row's content (all columns but the id) and of every id, 16 bytes a row (16 MB for a
million rows, where the ledger entry itself stays a few hundred bytes), plus the digest of the sorted ids. A
reseal tests a new holdout against every fingerprint the ledger bound, so a retired folder that is deleted or
replaced still counts as used; the audit holds each file and each retired folder to its seal.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.errors import IntegrityError
from holdout.hashing import hashes_in, row_hashes, sha256_file

FOLDER = "seals"


@dataclass(frozen=True)
class Fingerprint:
    """A holdout's row and id hashes, each sorted (what overlap is tested on)."""

    rows: np.ndarray
    ids: np.ndarray
    columns: tuple[str, ...]  # the content columns the row hashes cover, in the order hashed


def content_columns(frame: pd.DataFrame, id_col: str) -> list[str]:
    """Every column but the id, sorted by name: the same rows hash the same whatever order their file lists them."""
    return sorted(str(c) for c in frame.columns if c != id_col)


def id_hashes(ids: pd.Series) -> np.ndarray:
    """A uint64 per id, over its text (an id read back as another integer width still matches)."""
    return row_hashes(pd.DataFrame({"id": ids.astype(str).to_numpy(dtype=object)}))


def ids_sha256(ids: pd.Series) -> str:
    """The digest of the sorted ids, as text: the holdout's id set in 64 characters."""
    digest = hashlib.sha256()
    for value in sorted(ids.astype(str)):
        digest.update(value.encode() + b"\n")
    return digest.hexdigest()


def of(frame: pd.DataFrame, id_col: str) -> Fingerprint:
    """The fingerprint of `frame` (a holdout, or candidate rows for one)."""
    cols = content_columns(frame, id_col)
    return Fingerprint(np.sort(row_hashes(frame, cols)), np.sort(id_hashes(frame[id_col])), tuple(cols))


def write(root: Path, frame: pd.DataFrame, *, id_col: str, manifest_sha256: str) -> dict[str, Any]:
    """Write the fingerprint of a holdout being sealed under `root`; returns what the ledger entry binds."""
    found = of(frame, id_col)
    rel = f"{FOLDER}/{manifest_sha256[:16]}.npz"
    path = Path(root) / rel
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, rows=found.rows, ids=found.ids, columns=np.array(found.columns, dtype=str))
    path.chmod(0o444)
    return {"file": rel, "sha256": sha256_file(path), "rows": int(len(frame)), "ids_sha256": ids_sha256(frame[id_col]),
            "columns": list(found.columns)}


def problem(root: Path, bound: dict[str, Any]) -> str | None:
    """Why the fingerprint file a ledger entry bound cannot be trusted (missing, changed), or None."""
    if not isinstance(bound, dict) or not isinstance(bound.get("file"), str) or not isinstance(bound.get("sha256"), str):
        return f"fingerprint record {str(bound)[:80]} is not one ratchet wrote"
    path = Path(root) / bound["file"]
    if not path.is_file():
        return f"{bound['file']} is missing"
    actual = sha256_file(path)
    return None if actual == bound["sha256"] else f"{bound['file']}: sha256 {actual[:12]} != sealed {bound['sha256'][:12]}"


def read(root: Path, bound: dict[str, Any], where: str) -> Fingerprint:
    """The fingerprint a ledger entry bound, verified first (`where` names the entry in the error)."""
    wrong = problem(root, bound)
    if wrong:
        raise IntegrityError(f"{wrong} ({where}): a sealed holdout's fingerprint is written only by ratchet; restore "
                             "it from a backup, then run `ratchet audit`.")
    with np.load(Path(root) / bound["file"], allow_pickle=False) as data:
        return Fingerprint(data["rows"], data["ids"], tuple(str(c) for c in data["columns"]))


def overlap(fresh: pd.DataFrame, sealed: Fingerprint, id_col: str) -> tuple[int, int]:
    """How many rows of `fresh` repeat a sealed row's content, and how many repeat a sealed id."""
    missing = [c for c in sealed.columns if c not in fresh.columns]
    if missing:
        raise IntegrityError(f"the new rows lack column(s) {', '.join(missing)} that an earlier seal hashed, so their "
                             "overlap with it cannot be tested; import them with the same columns.")
    rows = int(hashes_in(row_hashes(fresh, list(sealed.columns)), sealed.rows).sum())
    ids = int(hashes_in(id_hashes(fresh[id_col]), sealed.ids).sum())
    return rows, ids
