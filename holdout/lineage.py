"""What the ledger says the workspace's history is, held to the files: every holdout ever sealed (its retired folder
and its fingerprint), the commit HEAD must be at, and the registered model versions the keeps wrote.

Each function returns the problems it found (one line each, naming the folder, file, commit or entry and what to
do) and a summary for when there are none; holdout.audit turns them into checks, and the optimizer's integrity
guard asks `head_problem` before every experiment.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holdout import fingerprint, queries
from holdout.entries import Baseline, ConfigChange, Experiment, Reseal, Seal, typed, view
from holdout.hashing import sha256_bytes, sha256_file
from holdout.ledger import Entry, Kind
from holdout.manifest import MANIFEST, manifest_sha256, read_manifest
from holdout.queries import SEALS

if TYPE_CHECKING:
    from holdout.records import VersionRecord

RETIRED = "retired"


def seal_name(entry: Entry) -> str:
    """How a message names a seal: its ledger entry and manifest."""
    return f"ledger entry {entry.seq} ({entry.kind}, manifest {str(queries.sealed(entry).manifest_sha256)[:12]})"


def fingerprints(entries: list[Entry]) -> dict[str, tuple[dict[str, Any], Entry]]:
    """manifest sha256 -> (the fingerprint the ledger bound for that seal, the entry that bound it): a seal's own,
    or one a later reseal filled in for a seal made before fingerprints were recorded."""
    found: dict[str, tuple[dict[str, Any], Entry]] = {}
    for e in entries:
        if e.kind in SEALS:
            seal = queries.sealed(e)
            if seal.fingerprint:
                found[str(seal.manifest_sha256)] = (dict(seal.fingerprint), e)
            for sha, bound in ((seal.fingerprints_filled if isinstance(seal, Reseal) else None) or {}).items():
                found.setdefault(sha, (bound, e))
    return found


def retired_folders(entries: list[Entry]) -> list[tuple[Entry, Entry, str]]:
    """(the seal retired, the reseal that retired it, the folder name under retired/), oldest first."""
    seals = [e for e in entries if e.kind in SEALS]
    return [(before, after, str(view(after, Reseal).retired_to))
            for before, after in zip(seals, seals[1:]) if after.kind == Kind.RESEAL]


def retired_problem(root: Path, sealed: Entry, folder: str) -> str | None:
    """Why retired/<folder> is not the holdout `sealed` recorded (missing, manifest or file changed), or None."""
    path = Path(root) / RETIRED / folder
    rel = f"{RETIRED}/{folder}"
    if not (path / MANIFEST).is_file():
        return f"{rel} is missing (sealed by {seal_name(sealed)}): restore it from a backup"
    try:
        manifest = read_manifest(path)
    except Exception as exc:  # noqa: BLE001 - a damaged manifest is a finding, in one line
        return f"{rel}/{MANIFEST} cannot be read ({type(exc).__name__})"
    actual = manifest_sha256(manifest)
    if actual != queries.sealed(sealed).manifest_sha256:
        return f"{rel}/{MANIFEST} sha256 {actual[:12]} is not the manifest of {seal_name(sealed)}: it was replaced"
    for name, expected in sorted(manifest.get("files", {}).items()):
        file = path / name
        if not file.is_file():
            return f"{rel}/{name} is missing (sealed by {seal_name(sealed)}): restore it from a backup"
        if sha256_file(file) != expected:
            return f"{rel}/{name}: sha256 {sha256_file(file)[:12]} != sealed {expected[:12]} ({seal_name(sealed)})"
    return None


def sealed_holdouts(root: Path, entries: list[Entry]) -> tuple[list[str], str]:
    """Every retired folder against the seal it retired, every fingerprint file against its entry, and no folder
    under retired/ that no reseal made."""
    root = Path(root)
    problems: list[str] = []
    retired = retired_folders(entries)
    for sealed, _, folder in retired:
        wrong = retired_problem(root, sealed, folder)
        if wrong:
            problems.append(wrong)
    named = {folder for _, _, folder in retired}
    if (root / RETIRED).is_dir():
        problems += [f"{RETIRED}/{p.name} was retired by no reseal entry: it is not a holdout ratchet sealed"
                     for p in sorted((root / RETIRED).iterdir()) if p.name not in named]
    bound = fingerprints(entries)
    for sha, (fp, entry) in sorted(bound.items(), key=lambda item: item[1][1].seq):
        wrong = fingerprint.problem(root, fp)
        if wrong:
            problems.append(f"{wrong} (bound by {seal_name(entry)}): restore it from a backup")
    seals = [e for e in entries if e.kind in SEALS]
    unbound = sum(queries.sealed(e).manifest_sha256 not in bound for e in seals)
    note = f"; {unbound} sealed before fingerprints were recorded (their folders stand in)" if unbound else ""
    return problems, (f"{len(seals)} holdout(s) sealed, {len(retired)} retired folder(s) as sealed, "
                      f"{len(bound)} fingerprint(s) as bound{note}")


def expected_head(entries: list[Entry]) -> tuple[str, Entry] | None:
    """The commit HEAD must be at: the last one the ledger recorded git moving to (the init commit at the seal, the
    baseline, an approved config change, a keep); None when it recorded none (a workspace sealed by an older
    ratchet and not yet baselined, or a config entry that did not record its commit)."""
    for e in reversed(entries):
        record = typed(e)
        if isinstance(record, Experiment):
            if record.kept and record.commit:
                return record.commit, e
        elif isinstance(record, (ConfigChange, Baseline, Seal)):
            commit = record.commit
            if commit:
                return commit, e
            if e.kind != Kind.SEAL:
                return None
    return None


def head_problem(root: Path, head: str, entries: list[Entry], policy_at_head: bytes | None = None) -> str | None:
    """Why `head` is not the last kept commit, or its policy.py not the last kept policy, in one line; None."""
    found = expected_head(entries)
    if found is None:
        return None
    commit, entry = found
    what = _what(entry)
    if head != commit:
        return (f"git HEAD {head[:12]} is not the last commit the ledger recorded, {commit[:12]} ({what}, ledger "
                f"entry {entry.seq}): the history was changed outside ratchet (an amend, a commit or a reset); run "
                f"`git -C {root} reset {commit}` to return to it, then `ratchet audit {root}`")
    recorded = view(entry, Experiment).policy_sha256 if entry.kind == Kind.EXPERIMENT else None
    if recorded and policy_at_head is not None and sha256_bytes(policy_at_head) != recorded:
        return (f"policy.py at HEAD {head[:12]} is not the policy the ledger kept for {what} (ledger entry "
                f"{entry.seq}): run `ratchet audit {root}`")
    return None


def head_report(root: Path, entries: list[Entry]) -> tuple[bool, str]:
    """(passed, detail) of HEAD against the ledger, asked of git itself."""
    head, policy = git_head(root)
    if head is None:
        return False, f"{root}: git cannot read HEAD"
    problem = head_problem(root, head, entries, policy)
    found = expected_head(entries)
    if problem or found is None:
        return not problem, problem or "not recorded: the ledger names no commit yet (sealed by an older ratchet)"
    return True, (f"HEAD {head[:12]} is the last recorded commit ({_what(found[1])}, "
                  f"ledger entry {found[1].seq}) and holds its policy")


def _what(entry: Entry) -> str:
    """How a message names the entry that recorded a commit: its experiment, else its kind."""
    return (view(entry, Experiment).experiment if entry.kind == Kind.EXPERIMENT else "") or entry.kind


def git_head(root: Path) -> tuple[str | None, bytes | None]:
    """HEAD's commit and policy.py, asked of git (None where git cannot answer)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode:
        return None, None
    commit = head.stdout.strip()
    shown = subprocess.run(["git", "show", f"{commit}:policy.py"], cwd=root, capture_output=True)
    return commit, (shown.stdout if shown.returncode == 0 else None)


def model_problems(versions: list[VersionRecord], entries: list[Entry], name: str) -> list[str]:
    """Registry versions of the workspace's model against the ledger's model entries, both ways: a version without
    its entry (entries removed) and an entry whose version the registry lost."""
    recorded = {int(m.version): m for m in queries.models(entries, name)}
    have = {int(v.version): v for v in versions}
    problems = [f"registered version {v} of {name} ({have[v].experiment}, commit {str(have[v].commit)[:12]}) has no "
                "ledger model entry: entries were removed; run `ratchet repair DIR`"
                for v in sorted(set(have) - set(recorded))]
    problems += [f"ledger entry {recorded[v].seq} records version {v} of {name} ({recorded[v].experiment}), "
                 "which the registry does not hold: it was deleted outside ratchet" for v in sorted(set(recorded) - set(have))]
    return problems
