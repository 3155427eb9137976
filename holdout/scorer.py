"""The scorer, declared: every module whose code computes a verdict, hashed at the seal and at each upgrade.

A verdict is the product of the policy and this code. The seal records the sha256 of each of these files and the
ratchet version; `ratchet upgrade` records the next set, so every span of the ledger names the code that judged
it. A package named here means the modules directly in it; each domain adds its own adapter files (its policies
are candidates, not scorer). `OUTSIDE` names the project modules the scorer imports that do not decide, with the
reason: a test follows every import of the scorer (inside functions too) and fails on a module in neither list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from holdout.hashing import source_hashes

SCORER: tuple[str, ...] = (
    "domains",  # the contract, importers, history windows, ranking metrics, the conformance suite
    "guards",  # every guard
    "holdout",  # the seal, the gate, the ledger, the audit, this list
    "optimizer.config",  # the settings' defaults and limits
    "optimizer.context",  # the workspace as verified before anything is judged
    "optimizer.policy_state",  # the champion's, the baseline's and the reference's stored decisions and figures
    "optimizer.experiment",  # one experiment: stages in order
    "optimizer.experiment_record",  # what became of a candidate: its status, verdict and figures
    "optimizer.stages",  # evaluate, judge, gate, record
    "optimizer.keep",  # the keep transaction and its repair
    "optimizer.loop",  # the baseline's state and the champion's refresh after a reseal
    "optimizer.sandbox",  # fit and decide in a child, the policy's output turned into decisions
    "optimizer.executors",  # where candidates are evaluated with --parallel
    "optimizer.workspace",  # which files differ from the last kept commit (the integrity guard reads it)
    "optimizer.faults",  # the crash points inside the stages
    "optimizer.history",  # the event history live decisions read
    "optimizer.user_columns",  # live rows read under the user's column names
    "optimizer.shadow",  # a shadow trial's decisions, comparison and verdict
)

OUTSIDE: dict[str, str] = {
    "optimizer": "the version string and the Arrow allocator choice",
    "optimizer.errors": "exception types",
    "optimizer.config_words": "how a refused setting is worded; what is accepted is decided in optimizer.config",
    "optimizer.diffs": "the diff text shown in records; no guard reads it",
    "optimizer.interrupts": "when a Ctrl-C is delivered, never what is decided",
    "optimizer.runner": "the workspace lock",
    "optimizer.tracking": "MLflow records of verdicts already in the ledger (the audit compares the two)",
    "optimizer.sync": "writes missed MLflow records from the ledger",
    "optimizer.recorder": "writes MLflow runs of records already in the ledger, from a second process",
    "optimizer.registry": "registers kept policies as MLflow models",
    "optimizer.refs": "names a policy a person asked for",
    "optimizer.proposers": "proposes candidates; every candidate is judged by the scorer",
    "optimizer.power": "shows the bar a gain must clear; decides nothing",
    "optimizer.task_agent": "answers a task-agent policy's questions; such policies are never replayed",
}


def root() -> Path:
    """The folder the installed packages are in: scorer paths are relative to it."""
    return Path(__file__).resolve().parent.parent


def files(domain: Any, at: Path | None = None) -> list[Path]:
    """The scorer's files under `at` (the installed code by default): each declared module, and the domain's
    adapter files."""
    base = root() if at is None else Path(at)
    found: set[Path] = set()
    for name in SCORER:
        path = base / name.replace(".", "/")
        found.update(path.glob("*.py") if path.is_dir() else [path.with_suffix(".py")])
    own = Path(domain.package_dir).resolve()
    where = base / own.relative_to(root()) if own.is_relative_to(root()) else own
    found.update(where / p.name for p in domain.scorer_sources())
    return sorted(p for p in found if p.is_file())


def hashes(domain: Any, at: Path | None = None) -> dict[str, str]:
    """{path relative to the root: sha256} of the scorer's files."""
    base = root() if at is None else Path(at)
    return source_hashes(files(domain, base), base.resolve())


def compare(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(changed, added, removed) paths from `old` to `new`."""
    return (sorted(p for p in new.keys() & old.keys() if new[p] != old[p]), sorted(new.keys() - old.keys()),
            sorted(old.keys() - new.keys()))


def describe(old: Mapping[str, str], new: Mapping[str, str], limit: int = 6) -> str:
    """The difference as words: 'optimizer/context.py changed; optimizer/workspace.py added'."""
    changed, added, removed = compare(old, new)
    parts = [f"{p} {what}" for what, paths in (("changed", changed), ("added", added), ("removed", removed))
             for p in paths]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more
