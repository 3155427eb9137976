"""`ratchet upgrade`: put the installed scorer in force on a workspace sealed (or last upgraded) under another one,
after proving how the installed code judges the workspace's evidence.

The baseline, every kept policy and the reference are replayed under the installed code (the replay of `ratchet
audit --replay`): their decisions' hashes, dev metrics and gate gains are held to what the ledger recorded. When all
reproduce, the `upgrade` entry says so and the workspace goes on. When any moved, the upgrade is refused unless the
person accepts the changes: then the replayed decisions and metrics become the baseline, champion and reference
states later verdicts are measured against (the gate's reference, the harm guardrails' baseline), each change is
listed in the entry, and audits hold later replays to the new figures.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from holdout import queries, scorer
from holdout.entries import Upgrade
from holdout.evidence import bind_state
from holdout.ledger import Kind
from optimizer import __version__
from optimizer.audit.replay import Replayed, replay_all
from optimizer.base.errors import RatchetError
from optimizer.records.context import Context, load_context
from optimizer.records.policy_state import PolicyState
from optimizer.workspace.approvers import approver
from optimizer.workspace.approvers import reason as reason_text
from optimizer.workspace.runner import exclusive

Progress = Callable[[str], None]


class ChangesFound(RatchetError):
    """The installed code decides or scores the kept policies differently, and nobody accepted that (exit 1)."""


@dataclass(frozen=True)
class UpgradeResult:
    from_version: str
    to_version: str
    modules: str  # the scorer's difference, in words ("" when nothing was upgraded)
    seq: int | None = None  # the upgrade entry (None: nothing to upgrade)
    replayed: int = 0
    changes: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return not self.changes


@exclusive
def upgrade(path: Path, *, approved_by: str, reason: str, accept_changes: bool = False,
            progress: Progress = lambda _: None) -> UpgradeResult:
    who = approver(approved_by, "the upgrade")
    why = reason_text(reason, required=False)
    ctx = load_context(path, sources=False)  # everything else verified; the sources are what this changes
    entries = ctx.ledger.entries()
    span = ctx.in_force(entries)
    old, new = dict(span.sources or {}), scorer.hashes(ctx.domain, ctx.scorer_root)
    if new == old:
        return UpgradeResult(span.version, __version__, "")
    modules = scorer.describe(old, new, limit=10)
    progress(f"replaying the kept policies under ratchet {__version__} ({modules})")
    checks, done = replay_all(ctx, progress=progress)
    looks = _looks(ctx, entries, progress)
    changes = tuple(c.detail for c in checks if not c.passed) + tuple(looks)
    if changes and not accept_changes:
        raise ChangesFound(
            f"upgrade of {ctx.ws.root} from ratchet {span.version} to {__version__} refused: the installed code "
            f"judges its evidence differently: {'; '.join(changes[:5])}{' ...' if len(changes) > 5 else ''}. Nothing "
            "was changed. If the new figures are the intended effect of the release, run it again with "
            "--accept-changes: they become the reference for later verdicts, each change recorded in the ledger.")
    bound = _restate(ctx, done) if changes else {}
    payload = Upgrade(from_version=span.version, to_version=__version__, approved_by=who, reason=why,
                      after={"kind": str(span.start.kind), "seq": span.start.seq},
                      identical=not changes, accepted_changes=bool(changes), changes=list(changes),
                      looks_changed=bool(looks),
                      modules=dict(zip(("changed", "added", "removed"), scorer.compare(old, new))),
                      replayed=[r.to_payload() for r in done], sources={"old": old, "new": new},
                      evidence=bound or None).to_payload()  # no evidence key when nothing was restated
    entry = ctx.ledger.append(Kind.UPGRADE, payload)
    _record(ctx, entry.seq, payload)
    return UpgradeResult(span.version, __version__, modules, entry.seq, len(done), changes)


def _looks(ctx: Context, entries: list, progress: Progress) -> list[str]:
    """Every recorded look at every shadow trial recomputed under the installed code; a line per look that moved."""
    from optimizer.release.shadow.report import replay_looks

    trials = queries.trial_ids(entries)
    after = queries.looks_redone_after(entries)
    if trials:
        progress(f"replaying the looks at {len(trials)} shadow trial(s)")
    return [f"shadow {p}" for t in trials for p in replay_looks(ctx, t, entries, after=after)]


def _restate(ctx: Context, done: list[Replayed]) -> dict[str, str | None]:
    """The baseline, champion and reference states with the installed code's decisions and dev metrics; their files
    bound by the upgrade entry."""
    by_commit = {r.commit: r for r in done}
    bound: dict[str, str | None] = {}
    for folder in (ctx.baseline_dir, ctx.champion_dir, ctx.reference_dir):
        state = PolicyState.load(folder)
        again = by_commit.get(state.commit) if state is not None else None
        if state is None or again is None:
            continue
        dataclasses.replace(state, dev=again.values["dev"], holdout=again.values["holdout"],
                            constants=dict(again.constants),
                            dev_metrics=dict(again.figures["dev_metrics"])).save(folder)
        bound.update(bind_state(ctx.ws.root, folder.name))
    return bound


def _record(ctx: Context, seq: int, payload: dict[str, Any]) -> None:
    """The upgrade as an MLflow run (a missed write is reported, not fatal: the ledger entry is the record)."""
    from holdout.records import Tag
    from optimizer.tracking.runs import open_tracker

    tracker = open_tracker(ctx)

    def write() -> None:
        with tracker.run("upgrade", tags={Tag.KIND: "upgrade", Tag.LEDGER_SEQ: str(seq), Tag.SEAL: ctx.manifest_sha256,
                                          Tag.APPROVED_BY: payload["approved_by"], Tag.REASON: payload["reason"][:250],
                                          "ratchet.upgraded_from": payload["from_version"]}):
            tracker.mlflow.log_metrics({"policies_replayed": len(payload["replayed"]),
                                        "identical": float(payload["identical"])})
            tracker.mlflow.log_dict(payload, "upgrade.json")

    tracker.attempt("upgrade", write)
