"""The questions every reader asks of the ledger, answered in one place: the seal in force, the baseline, the kept
experiments, the next experiment's number, the registered model's name. Each takes the entries (as
`Ledger.entries()` returns them, oldest first), so a caller that already read them reads nothing again."""
from __future__ import annotations

from typing import Sequence

from holdout.ledger import Entry, Kind

SEALS = (Kind.SEAL, Kind.RESEAL)


def seals(entries: Sequence[Entry]) -> list[Entry]:
    """The seal and every reseal, oldest first."""
    return [e for e in entries if e.kind in SEALS]


def first_seal(entries: Sequence[Entry]) -> Entry:
    """The seal `ratchet init` wrote (the tracking store, the workspace's identity)."""
    return next(e for e in entries if e.kind == Kind.SEAL)


def latest_seal(entries: Sequence[Entry]) -> Entry:
    """The seal in force: the last seal or reseal."""
    return seals(entries)[-1]


def since_latest_seal(entries: Sequence[Entry]) -> list[Entry]:
    """The entries from the seal in force on (it included)."""
    start = max((i for i, e in enumerate(entries) if e.kind in SEALS), default=0)
    return list(entries[start:])


def baseline(entries: Sequence[Entry]) -> Entry | None:
    """The starting policy's evaluation, once it ran."""
    return next((e for e in entries if e.kind == Kind.BASELINE), None)


def kept(entries: Sequence[Entry]) -> list[Entry]:
    """The experiments that were kept, oldest first."""
    return [e for e in entries if e.kind == Kind.EXPERIMENT and e.data.get("kept")]


def next_number(entries: Sequence[Entry]) -> int:
    """The number the next experiment gets: experiments are numbered in ledger order from 1 (exp-0001)."""
    return sum(e.kind == Kind.EXPERIMENT for e in entries) + 1


def experiment_id(number: int) -> str:
    return f"exp-{number:04d}"


def looks_redone_after(entries: Sequence[Entry]) -> int:
    """The ledger entry of the last upgrade that accepted changed shadow-trial looks (0: none): the looks recorded
    before it are held to nothing the installed code can recompute."""
    return max((e.seq for e in entries if e.kind == Kind.UPGRADE and e.data.get("looks_changed")), default=0)


def model_name(entries: Sequence[Entry], folder: str) -> str:
    """The workspace's one registered model: the name its first version got, else `ratchet-<folder>-<seal sha12>`
    (`folder`: the workspace folder's name)."""
    named = next((str(e.data["name"]) for e in entries if e.kind == Kind.MODEL), None)
    if named:
        return named
    return f"ratchet-{folder}-{first_seal(entries).data['manifest_sha256'][:12]}"
