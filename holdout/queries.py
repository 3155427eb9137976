"""The questions every reader asks of the ledger, answered in one place: the seal in force, the baseline, the kept
experiments, the next experiment's number, the registered model's name, the gate's answers and budget, the shadow
trials with their outcome batches and looks, the registry's moves, the spend. Each takes the entries (as
`Ledger.entries()` returns them, oldest first), so a caller that already read them reads nothing again; an answer
about one entry's content is its typed record (holdout/entries.py)."""
from __future__ import annotations

from typing import Sequence

from holdout.entries import (
    AgentUsage,
    Experiment,
    Gate,
    KeepIntent,
    ModelVersion,
    Promotion,
    Reseal,
    Rollback,
    Seal,
    ShadowOutcomes,
    ShadowResult,
    ShadowTrial,
    TaskAgentUsage,
    Upgrade,
    of,
    view,
)
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


def sealed(entry: Entry) -> Seal | Reseal:
    """A seal or reseal entry, typed."""
    return view(entry, Seal) if entry.kind == Kind.SEAL else view(entry, Reseal)


def seal_in_force(entries: Sequence[Entry]) -> Seal | Reseal:
    """The last seal or reseal, typed."""
    return sealed(latest_seal(entries))


def tracking_experiment(entries: Sequence[Entry]) -> str:
    """The MLflow experiment the workspace records to, as the seal in force names it."""
    return str((seal_in_force(entries).mlflow or {})["experiment"])


def since_latest_seal(entries: Sequence[Entry]) -> list[Entry]:
    """The entries from the seal in force on (it included)."""
    start = max((i for i, e in enumerate(entries) if e.kind in SEALS), default=0)
    return list(entries[start:])


def baseline(entries: Sequence[Entry]) -> Entry | None:
    """The starting policy's evaluation, once it ran."""
    return next((e for e in entries if e.kind == Kind.BASELINE), None)


def kept(entries: Sequence[Entry]) -> list[Entry]:
    """The experiments that were kept, oldest first."""
    return [e for e in entries if e.kind == Kind.EXPERIMENT and view(e, Experiment).kept]


def next_number(entries: Sequence[Entry]) -> int:
    """The number the next experiment gets: experiments are numbered in ledger order from 1 (exp-0001)."""
    return sum(e.kind == Kind.EXPERIMENT for e in entries) + 1


def experiment_id(number: int) -> str:
    return f"exp-{number:04d}"


def looks_redone_after(entries: Sequence[Entry]) -> int:
    """The ledger entry of the last upgrade that accepted changed shadow-trial looks (0: none): the looks recorded
    before it are held to nothing the installed code can recompute."""
    return max((e.seq for e in entries if e.kind == Kind.UPGRADE and view(e, Upgrade).looks_changed), default=0)


def model_name(entries: Sequence[Entry], folder: str) -> str:
    """The workspace's one registered model: the name its first version got, else `ratchet-<folder>-<seal sha12>`
    (`folder`: the workspace folder's name)."""
    named = next((str(m.name) for m in of(entries, ModelVersion)), None)
    if named:
        return named
    return f"ratchet-{folder}-{str(view(first_seal(entries), Seal).manifest_sha256)[:12]}"


def experiment_ids(entries: Sequence[Entry]) -> set[str]:
    """The experiments the ledger recorded (kept, reverted or crashed)."""
    return {x.experiment for x in of(entries, Experiment)}


def pending_keeps(entries: Sequence[Entry]) -> list[KeepIntent]:
    """The keeps begun whose experiment was never recorded (a stop in between), oldest first."""
    done = experiment_ids(entries)
    return [k for k in of(entries, KeepIntent) if k.experiment not in done]


def gates(entries: Sequence[Entry]) -> list[Gate]:
    """The holdout answers given under the seal in force (a reseal starts a fresh budget), oldest first."""
    return of(since_latest_seal(entries), Gate)


def budget_left(entries: Sequence[Entry], budget: int) -> int:
    """The gate's budget left under the seal in force (`budget`: the config's, before any answer)."""
    answered = gates(entries)
    return answered[-1].budget_left if answered else budget


def next_query(entries: Sequence[Entry]) -> int:
    """The number the next holdout query gets: queries are numbered over the whole ledger from 1."""
    return sum(e.kind == Kind.GATE for e in entries) + 1


def spent_usd(entries: Sequence[Entry], kind: Kind) -> float:
    """What the model use recorded as `kind` (agent_usage: the meta-agent; task_agent_usage) cost, in USD."""
    usage = of(entries, AgentUsage) if kind == Kind.AGENT_USAGE else of(entries, TaskAgentUsage)
    return sum(float(u.cost_usd or 0.0) for u in usage)


def trials(entries: Sequence[Entry]) -> list[ShadowTrial]:
    """Every shadow trial started, oldest first."""
    return of(entries, ShadowTrial)


def trial_ids(entries: Sequence[Entry]) -> list[str]:
    return [t.trial for t in trials(entries)]


def trial(entries: Sequence[Entry], trial_id: str) -> ShadowTrial | None:
    """The start of trial `trial_id` (None: no such trial)."""
    return next((t for t in trials(entries) if t.trial == trial_id), None)


def looks(entries: Sequence[Entry], trial_id: str) -> list[ShadowResult]:
    """The looks recorded at trial `trial_id`, oldest first."""
    return [r for r in of(entries, ShadowResult) if r.trial == trial_id]


def outcome_batches(entries: Sequence[Entry], trial_id: str) -> list[ShadowOutcomes]:
    """The outcome batches joined to trial `trial_id`, oldest first."""
    return [b for b in of(entries, ShadowOutcomes) if b.trial == trial_id]


def models(entries: Sequence[Entry], name: str | None = None) -> list[ModelVersion]:
    """The registered versions the ledger holds (of model `name` only, when given), oldest first."""
    return [m for m in of(entries, ModelVersion) if name is None or m.name == name]


MOVES = (Kind.PROMOTION, Kind.ROLLBACK)


def moves(entries: Sequence[Entry]) -> list[Entry]:
    """The promotions and rollbacks, oldest first: each moved the registry's champion alias."""
    return [e for e in entries if e.kind in MOVES]


def latest_move(entries: Sequence[Entry]) -> Promotion | Rollback | None:
    """The promotion or rollback that last moved the champion alias (None: nothing was ever promoted)."""
    last = next((e for e in reversed(entries) if e.kind in MOVES), None)
    if last is None:
        return None
    return view(last, Promotion) if last.kind == Kind.PROMOTION else view(last, Rollback)


def aliases_set(entries: Sequence[Entry]) -> tuple[int | None, int | None]:
    """(champion, previous): the versions the last promotion or rollback set the registry's aliases to (nothing
    promoted: neither is set)."""
    last = latest_move(entries)
    return (None, None) if last is None else (last.version, last.previous_version)
