"""Every workspace file a verdict reads, bound to the ledger when it is written and verified before it is used.

A ledger entry may carry `evidence`: {path relative to the workspace: sha256, or None for a file that must
no longer exist}. Folding those maps over the ledger, in order, gives what each file must hold now: the
splits and the resolved config from the seal, the baseline, champion and reference states from the entries
that wrote them, the config from each approved `ratchet config` event. A file that disagrees, or a state
file no entry bound (a planted `reference/`), is an integrity failure named by its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from holdout.hashing import sha256_file
from holdout.ledger import Entry, per_entry

SPLITS = ("data/train.parquet", "data/dev.parquet")
CONFIG = "ratchet.yaml"
CONTRACT = "contract/suite.json"  # the data contract the splits passed, as a Great Expectations suite
STATE_DIRS = ("baseline", "champion", "reference")
STATE_FILES = ("dev.npy", "holdout.npy", "state.json")

_WHAT_TO_DO = {
    "data/": "the splits are sealed: restore the file from a backup, or start a new workspace with `ratchet init`",
    "contract/": "the data contract is sealed with the splits: restore it from a backup, or start a new workspace",
    CONFIG: "settings change only through `ratchet config DIR set KEY=VALUE --approved-by NAME --reason TEXT`: "
            "restore ratchet.yaml (`git -C DIR log -- ratchet.yaml` shows the recorded versions)",
}
_STATE_TODO = ("cached decisions and states are written only by ratchet: restore them from a backup; "
               "`ratchet audit DIR --replay` re-derives what they must hold")


def bind(root: Path, rels: Iterable[str]) -> dict[str, str | None]:
    """sha256 of each file (None when it does not exist), keyed by its path relative to `root`."""
    root = Path(root)
    return {rel: (sha256_file(root / rel) if (root / rel).is_file() else None) for rel in rels}


def bind_state(root: Path, folder: str) -> dict[str, str | None]:
    """The evidence of one state folder (baseline, champion or reference) as it is on disk now."""
    return bind(root, [f"{folder}/{name}" for name in STATE_FILES])


def expected(entries: list[Entry]) -> tuple[dict[str, str | None], dict[str, tuple[int, str]]]:
    """What each bound file must hold now, and which ledger entry (seq, kind) bound it last."""
    want: dict[str, str | None] = {}
    where: dict[str, tuple[int, str]] = {}
    for e in entries:
        for rel, digest in _evidence_of(e):
            want[rel], where[rel] = digest, (e.seq, e.kind)
    return want, where


@per_entry
def _evidence_of(entry: Entry) -> tuple[tuple[str, str | None], ...]:
    """An entry's bound files (parsed once per entry)."""
    evidence = entry.data.get("evidence")
    return tuple(evidence.items()) if isinstance(evidence, dict) else ()


def _todo(rel: str) -> str:
    for prefix, text in _WHAT_TO_DO.items():
        if rel.startswith(prefix):
            return text
    return _STATE_TODO


def verify(root: Path, entries: list[Entry], *, only: tuple[str, ...] | None = None) -> list[str]:
    """Every bound file that disagrees with the ledger, and every unbound state file; empty when all verify.
    `only`: path prefixes to check (the per-experiment check reads just the state folders)."""
    root = Path(root)
    want, where = expected(entries)
    if not want:
        return [f"{root / 'ledger.duckdb'}: no entry binds the splits, config or cached decisions (the workspace "
                "was sealed by an older ratchet); create a new workspace with `ratchet init`"]
    selected = [rel for rel in sorted(want) if only is None or rel.startswith(only)]
    problems = []
    for rel, digest in bind(root, selected).items():
        if digest == want[rel]:
            continue
        seq, kind = where[rel]
        recorded = want[rel]
        if digest is None:
            found = "is missing"
        elif recorded is None:
            found = f"exists (sha256 {digest[:12]}) but ledger entry {seq} ({kind}) records it as removed"
        else:
            found = f"sha256 {digest[:12]} != ledger entry {seq} ({kind}) {recorded[:12]}"
        problems.append(f"{rel} {found}: {_todo(rel)}")
    for folder in STATE_DIRS:
        if only is not None and not f"{folder}/".startswith(only):
            continue
        if (root / folder).is_dir():
            for path in sorted(p for p in (root / folder).rglob("*") if p.is_file()):
                rel = str(path.relative_to(root))
                if rel not in want:
                    problems.append(f"{rel} is bound by no ledger entry (not written by ratchet): remove it")
    return problems
