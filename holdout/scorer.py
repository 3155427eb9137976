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
    "optimizer.workspace.config",  # the settings' defaults and limits
    "optimizer.records.context",  # the workspace as verified before anything is judged
    "optimizer.records.policy_state",  # the champion's, the baseline's and the reference's stored decisions and figures
    "optimizer.loop.experiment",  # one experiment: stages in order
    "optimizer.records.experiment_record",  # what became of a candidate: its status, verdict and figures
    "optimizer.loop.stages",  # evaluate, judge, gate, record
    "optimizer.records.keep",  # the keep transaction
    "optimizer.records.recovery",  # what a stop left, and its repair (a rollback records the experiment as crashed)
    "optimizer.loop.run",  # the baseline's state and the champion's refresh after a reseal
    "optimizer.loop.session",  # what run and try judge in: the verified workspace, the per-phase budget, the sandbox
    "optimizer.sandbox",  # fit and decide in a child, the policy's output turned into decisions
    "optimizer.loop.executors",  # where candidates are evaluated with --parallel
    "optimizer.workspace.layout",  # which files differ from the last kept commit (the integrity guard reads it)
    "optimizer.base.faults",  # the crash points inside the stages
    "optimizer.workspace.history",  # the event history live decisions read
    "optimizer.workspace.user_columns",  # live rows read under the user's column names
    "optimizer.release.shadow",  # a shadow trial's decisions, comparison and verdict
)

PACKAGE = "a package's docstring, no code"
OUTSIDE: dict[str, str] = {
    "optimizer": "the version string, the Arrow allocator choice and the old module paths of pickled models",
    "optimizer.base.errors": "exception types",
    "optimizer.workspace.config_words": "how a refused setting is worded; what is accepted is decided in the config",
    "optimizer.base.diffs": "the diff text shown in records; no guard reads it",
    "optimizer.base.interrupts": "when a Ctrl-C is delivered, never what is decided",
    "optimizer.workspace.runner": "the workspace lock",
    "optimizer.tracking.runs": "MLflow records of verdicts already in the ledger (the audit compares the two)",
    "optimizer.tracking.sync": "writes missed MLflow records from the ledger",
    "optimizer.tracking.recorder": "writes MLflow runs of records already in the ledger, from a second process",
    "optimizer.tracking.registry": "registers kept policies as MLflow models",
    "optimizer.records.refs": "names a policy a person asked for",
    "optimizer.proposers": "proposes candidates; every candidate is judged by the scorer",
    "optimizer.loop.power": "shows the bar a gain must clear; decides nothing",
    "optimizer.llm.task_agent": "answers a task-agent policy's questions; such policies are never replayed",
    # Packages the scorer's modules live in: importing a module runs its package's __init__, which holds only a
    # docstring (tests/holdout/test_scorer_declared.py checks). Their other modules are declared one by one.
    "optimizer.base": PACKAGE,
    "optimizer.workspace": PACKAGE,
    "optimizer.llm": PACKAGE,
    "optimizer.records": PACKAGE,
    "optimizer.tracking": PACKAGE,
    "optimizer.loop": PACKAGE,
    "optimizer.release": PACKAGE,
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
    """The difference as words: 'optimizer/records/context.py changed; optimizer/workspace/layout.py added'."""
    changed, added, removed = compare(old, new)
    parts = [f"{p} {what}" for what, paths in (("changed", changed), ("added", added), ("removed", removed))
             for p in paths]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more
