"""A policy named by a person: a kept experiment id (exp-0003), `champion`, `baseline`, or a commit of the workspace;
and the policy that acts (the registry champion the ledger's last promotion or rollback names, else the baseline)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from holdout import queries
from holdout.entries import Baseline, Experiment, Promotion, Rollback, of, typed, view
from holdout.hashing import sha256_bytes
from holdout.ledger import Entry
from optimizer.base.errors import RatchetError

if TYPE_CHECKING:
    from optimizer.records.context import Context


@dataclass(frozen=True)
class PolicyRef:
    """A policy version of the workspace: where it came from and its exact source."""

    ref: str  # as the person wrote it
    experiment: str  # exp-0003, baseline, or "" for a commit that is no kept experiment
    commit: str
    policy_sha256: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "experiment": self.experiment, "commit": self.commit,
                "policy_sha256": self.policy_sha256}


def resolve(ctx: Context, ref: str, entries: list[Entry] | None = None) -> PolicyRef:
    """The policy `ref` names; RatchetError saying what was looked for and how to name one otherwise."""
    entries = ctx.ledger.entries() if entries is None else entries
    kept = {x.experiment: x for x in of(queries.kept(entries), Experiment)}
    ref = ref.strip()
    if ref == "champion":
        state = ctx.champion()
        if state is None:
            raise RatchetError(f"{ctx.ws.root}: no champion yet; run `ratchet run` or `ratchet try` first.")
        return _at(ctx, ref, state.experiment, state.commit)
    if ref == "baseline":
        base = queries.baseline(entries)
        if base is None:
            raise RatchetError(f"{ctx.ws.root}: the baseline has not been evaluated yet; run `ratchet run` first.")
        return _at(ctx, ref, "baseline", view(base, Baseline).commit)
    if re.fullmatch(r"exp-\d{4,}", ref):
        if ref not in kept:
            known = ", ".join(sorted(kept)) or "none yet"
            raise RatchetError(f"{ref}: not a kept experiment of {ctx.ws.root} (kept: {known}); name a kept experiment, "
                               "champion, baseline or a commit.")
        return _at(ctx, ref, ref, kept[ref].commit, kept[ref].policy_sha256)
    if not re.fullmatch(r"[0-9a-f]{4,40}", ref):
        raise RatchetError(f"{ref!r}: not a policy reference; name a kept experiment (exp-0003), champion, baseline "
                           "or a commit of the workspace.")
    commit = ctx.ws.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip()
    if not commit:
        raise RatchetError(f"{ref}: no such commit in {ctx.ws.root}; `git -C {ctx.ws.root} log --oneline` lists them.")
    experiment = next((exp for exp, x in kept.items() if x.commit == commit), "")
    return _at(ctx, ref, experiment, commit, kept[experiment].policy_sha256 if experiment else None)


def _at(ctx: Context, ref: str, experiment: str, commit: str | None, expected_sha: str | None = None) -> PolicyRef:
    if commit is None:
        raise RatchetError(f"{ref}: the ledger records no commit for {experiment}. Run `ratchet audit {ctx.ws.root}`.")
    source = ctx.ws.git("show", f"{commit}:policy.py")
    digest = sha256_bytes(source.encode())
    if expected_sha is not None and digest != expected_sha:
        raise RatchetError(f"{ref}: policy.py at commit {commit[:12]} is not the policy the ledger recorded for "
                           f"{experiment} (sha256 differs): the history was rewritten. Run `ratchet audit {ctx.ws.root}`.")
    return PolicyRef(ref, experiment, commit, digest, source)


def registry_move(entries: Sequence[Entry]) -> Entry | None:
    """The ledger entry that last moved the registry's champion alias (a promotion, or a rollback that restored
    an earlier version), or None when nothing was ever promoted."""
    moves = queries.moves(entries)
    return moves[-1] if moves else None


def acting(ctx: Context, entries: list[Entry]) -> tuple[PolicyRef, str]:
    """The policy that acts and why: the registry champion named by the ledger's last promotion or rollback; before
    any promotion, the baseline, the policy the workspace started from. A kept policy decides nothing real until a
    shadow trial passed and a person promoted it: serving decides with this one, and a trial holds its challenger
    against it."""
    move = registry_move(entries)
    if move is None:
        return resolve(ctx, "baseline", entries), "baseline (nothing promoted yet)"
    moved = typed(move)
    commit = moved.commit if isinstance(moved, (Promotion, Rollback)) else None
    if not isinstance(commit, str) or not commit:
        raise RatchetError(f"{ctx.ws.ledger}: {move.kind} entry {move.seq} names no commit; run `ratchet audit "
                           f"{ctx.ws.root}`.")
    version = f", version {moved.version}" if isinstance(moved, (Promotion, Rollback)) and moved.version is not None \
        else ""
    return named(ctx, commit, entries), f"registry champion ({move.kind}{version}, ledger entry {move.seq})"


def named(ctx: Context, commit: str, entries: list[Entry]) -> PolicyRef:
    """A commit as a PolicyRef, called `baseline` when it is the baseline's commit and no kept experiment."""
    ref = resolve(ctx, commit, entries)
    base = queries.baseline(entries)
    if not ref.experiment and base is not None and view(base, Baseline).commit == ref.commit:
        ref = dataclasses.replace(ref, experiment="baseline")
    return ref
