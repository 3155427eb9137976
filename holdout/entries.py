"""The ledger's entries, typed: one frozen record per `Kind`, its fields what the writers put in that kind's payload.

`from_payload` reads a payload as any version of ratchet wrote it: a field older versions did not write is optional
(None, or absent from `to_payload` when the payload lacked it: `absent`), and a key this version does not know is
kept in `extra`, so `to_payload(from_payload(d)) == d` for every payload (the hash chain covers the exact payload and
the audit re-reads old entries). Only the keys every writer of the kind has always written are required: a writer
cannot build the record without them, and `from_payload` refuses a payload without one (`MalformedEntry`, a KeyError).

`typed(entry)` is the record of a ledger entry (its `seq` filled in), parsed once per entry; `view(entry, Seal)` the
same, checked to be of that kind; `of(entries, Seal)` every entry of a kind, typed. A ledger entry is read as it is,
whatever it holds: one edited or forged without a required key reads with None there (the key in `absent`), as the
hand-written readers' `.get` did, so the audit and the integrity checks report it instead of stopping on it. The
records share their nested values with the cache: copy before changing one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Self, TypeVar

from holdout.ledger import Entry, Kind

OMIT_NONE = {"omit_none": True}  # a field the writer leaves out of the payload when it has no value
_OWN = ("seq", "extra", "absent")  # the record's own fields, not the payload's


class MalformedEntry(KeyError):
    """A payload lacks a key every writer of its kind puts in it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A ledger payload, typed. `seq`: the entry's number when read from the ledger (never in the payload)."""

    KIND: ClassVar[Kind]
    seq: int | None = field(default=None, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not declare
    absent: frozenset[str] = field(default=frozenset(), repr=False)  # declared optional keys the payload lacked

    @classmethod
    def declared(cls) -> tuple[dataclasses.Field[Any], ...]:
        """The payload's fields."""
        return tuple(f for f in dataclasses.fields(cls) if f.name not in _OWN)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], *, seq: int | None = None, strict: bool = True) -> Self:
        """The record of `data`; `strict=False` (a ledger entry as it is): a required key missing reads as None."""
        declared = cls.declared()
        lacking = [f.name for f in declared if f.name not in data and _required(f)]
        if lacking and strict:
            raise MalformedEntry(f"a {cls.KIND} payload{f' (ledger entry {seq})' if seq else ''} lacks "
                                 f"{', '.join(lacking)}")
        given = {f.name: data[f.name] for f in declared
                 if f.name in data and not (f.metadata.get("omit_none") and data[f.name] is None)}
        return cls(**given, **dict.fromkeys(lacking), seq=seq, extra={k: v for k, v in data.items() if k not in given},
                   absent=frozenset(f.name for f in declared if f.name not in data and not f.metadata.get("omit_none")))

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.declared():
            value = getattr(self, f.name)
            if f.name not in self.absent and not (f.metadata.get("omit_none") and value is None):
                out[f.name] = value
        out.update(self.extra)
        return out


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclass(frozen=True, slots=True, kw_only=True)
class Seal(Record):
    KIND = Kind.SEAL
    manifest_sha256: str
    content_sha256: str | None = None
    evidence: Mapping[str, Any] | None = None  # split, config and contract files: their sha256
    fingerprint: Mapping[str, Any] | None = None  # the sealed rows' fingerprint file
    mlflow: Mapping[str, Any] | None = None  # store (uri, store), experiment, run_id
    commit: str | None = None
    drift: Mapping[str, str] | None = None  # column -> verdict


@dataclass(frozen=True, slots=True, kw_only=True)
class Reseal(Record):
    KIND = Kind.RESEAL
    manifest_sha256: str
    content_sha256: str | None = None
    replaces: str | None = None  # the manifest it replaced
    retired_to: str | None = None  # the retired holdout's folder
    fingerprint: Mapping[str, Any] | None = None
    fingerprints_filled: Any = field(default=None, metadata=OMIT_NONE)  # earlier seals' fingerprints, written late
    mlflow: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline(Record):
    KIND = Kind.BASELINE
    commit: str
    dev_metrics: Mapping[str, float] | None = None
    refit_sd: Any = None
    fit: Mapping[str, Any] | None = None
    seconds: Mapping[str, float] | None = None
    decisions_sha256: Mapping[str, str] | None = None
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChampionRefresh(Record):
    KIND = Kind.CHAMPION_REFRESH
    experiment: str | None = None
    seal: str | None = None
    decisions_sha256: Mapping[str, str] | None = None
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Experiment(Record):
    """The ledger's form of an ExperimentRecord (optimizer/records/experiment_record.py), plus a keep's evidence."""

    KIND = Kind.EXPERIMENT
    experiment: str
    number: int | None = None
    proposer: str | None = None
    hypothesis: str | None = None
    status: str | None = None
    kept: bool | None = None
    parent_commit: str | None = None
    commit: str | None = None
    policy_sha256: str | None = None
    dev_metrics: Mapping[str, float] | None = None
    gate: Mapping[str, Any] | None = None  # the holdout answer, as the gate entry holds it
    fit: Mapping[str, Any] | None = None
    seconds: Mapping[str, float] | None = None
    proposal: Mapping[str, Any] | None = None
    decisions_sha256: Mapping[str, str] | None = None
    scorer: Mapping[str, Any] | None = None
    reasons: list[Mapping[str, Any]] | None = None  # the verdict's guard results
    evidence: Mapping[str, Any] | None = None  # a kept one: the champion state's files


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate(Record):
    """One holdout answer (holdout/gate.py: a GateAnswer or LordAnswer's fields) with its query number."""

    KIND = Kind.GATE
    query: int
    budget_left: int
    kind: str | None = None  # thresholdout | not_worse | lord
    answer: float | None = None
    seed: int | None = None
    seal: str | None = None
    experiment: str | None = None
    se: float | None = None
    # thresholdout and not_worse
    dev_gain: float | None = None
    holdout_gain: float | None = None
    threshold: float | None = None
    sigma: float | None = None
    eta: float | None = None
    gamma: float | None = None
    xi: float | None = None
    overflow: bool | None = None
    next_gamma: float | None = None
    # lord
    gain: float | None = None
    test: int | None = None
    discoveries: list[int] | None = None
    fdr: float | None = None
    exponent: float | None = None
    level: float | None = None
    critical_z: float | None = None
    z: float | None = None
    p_value: float | None = None
    passed: bool | None = None
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    to_beat: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepIntent(Record):
    KIND = Kind.KEEP_INTENT
    experiment: str
    parent_commit: str | None = None
    policy_sha256: str | None = None
    record: Mapping[str, Any] | None = None  # the experiment's payload as it will be completed
    source: str | None = None  # the policy source being kept


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange(Record):
    KIND = Kind.CONFIG
    changes: Mapping[str, Any]  # key -> {old, new}
    approved_by: str | None = None
    reason: str | None = None
    commit: str | None = None
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentUsage(Record):
    KIND = Kind.AGENT_USAGE
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_read_tokens: int | None = None
    cost_usd: float | None = None
    spent_usd: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAgentUsage(Record):
    KIND = Kind.TASK_AGENT_USAGE
    model: str | None = None
    phase: str | None = None
    row_sets: list[str] | None = None
    clean: bool | None = None
    requests: int | None = None
    sent: int | None = None
    cached: int | None = None
    refused: int | None = None
    failed: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    spent_usd: float | None = None
    stopped: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContaminationAlarm(Record):
    KIND = Kind.CONTAMINATION_ALARM
    detail: str
    guard: str | None = None
    blocked: bool | None = None
    source: str | None = field(default=None, metadata=OMIT_NONE)  # task_agent (the meta-agent writes none)
    phase: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowTrial(Record):
    KIND = Kind.SHADOW_TRIAL
    trial: str
    champion: Mapping[str, Any] | None = None  # a PolicyRef's dict
    challenger: Mapping[str, Any] | None = None
    events_file_sha256: str | None = None
    events_sha256: str | None = None
    events: int | None = None
    quarantined: int | None = None
    quarantine_reasons: Any = None
    decisions_sha256: Mapping[str, str] | None = None
    store_sha256: Mapping[str, Any] | None = None
    files_sha256: Mapping[str, str | None] | None = None
    seal: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowOutcomes(Record):
    KIND = Kind.SHADOW_OUTCOMES
    trial: str
    batch: int
    rows: int | None = None
    new: int | None = None
    corrections: int | None = None
    ignored: int | None = None
    rows_sha256: str | None = None
    file_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowResult(Record):
    """A look at a trial."""

    KIND = Kind.SHADOW_RESULT
    trial: str
    status: str  # passed | failed | pending
    passed: bool | None = None
    reasons: list[str] | None = None
    champion: Mapping[str, Any] | None = None
    challenger: Mapping[str, Any] | None = None
    labeled: int | None = None
    settled: int | None = None
    events: int | None = None
    outcome_batches: int | None = None
    primary: Mapping[str, Any] | None = None
    drift_accepted: Any = None
    settings: Mapping[str, Any] | None = None
    look: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion(Record):
    KIND = Kind.MODEL
    name: str
    version: int
    experiment: str | None = None
    commit: str | None = None
    policy_sha256: str | None = None
    model_sha256: str | None = None
    run_id: str | None = None
    recovered: str | None = field(default=None, metadata=OMIT_NONE)  # entered from the registry after a stop


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotion(Record):
    KIND = Kind.PROMOTION
    approved_by: str | None = None  # (none required: where a move acts, one without a commit is refused by name)
    commit: str | None = None
    name: str | None = None
    version: int | None = None
    previous_version: int | None = None
    experiment: str | None = None
    policy_sha256: str | None = None
    trial: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback(Record):
    KIND = Kind.ROLLBACK
    approved_by: str | None = None  # (none required: where a move acts, one without a commit is refused by name)
    commit: str | None = None
    name: str | None = None
    version: int | None = None
    previous_version: int | None = None
    rolled_back_version: int | None = None
    experiment: str | None = None
    policy_sha256: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Upgrade(Record):
    KIND = Kind.UPGRADE
    to_version: str | None = None  # (none required: the audit names an upgrade ratchet did not write)
    from_version: str | None = None
    approved_by: str | None = None
    reason: str | None = None
    after: Mapping[str, Any] | None = None  # the span it follows: {kind, seq}
    identical: bool | None = None
    accepted_changes: bool | None = None
    changes: list[str] | None = None
    looks_changed: bool | None = None
    modules: Mapping[str, Any] | None = None
    replayed: list[Mapping[str, Any]] | None = None
    sources: Mapping[str, Any] | None = None  # {old, new}: path -> sha256
    evidence: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)  # restated files (changes accepted)


KINDS: dict[Kind, type[Record]] = {r.KIND: r for r in (
    Seal, Reseal, Baseline, ChampionRefresh, Experiment, Gate, KeepIntent, ConfigChange, AgentUsage, TaskAgentUsage,
    ContaminationAlarm, ShadowTrial, ShadowOutcomes, ShadowResult, ModelVersion, Promotion, Rollback, Upgrade)}
R = TypeVar("R", bound=Record)


_read: dict[tuple[str, int, str, str], Record] = {}


def typed(entry: Entry) -> Record:
    """The record of a ledger entry, parsed once per entry (known by its hash and content: an Entry built by hand,
    as tests do, may carry any hash)."""
    key = (entry.hash, entry.seq, entry.kind, entry.payload)
    found = _read.get(key)
    if found is None:
        found = _read[key] = KINDS[Kind(entry.kind)].from_payload(entry.data, seq=entry.seq, strict=False)
    return found


def view(entry: Entry, record: type[R]) -> R:
    """`entry`'s record, which must be a `record`."""
    found = typed(entry)
    if not isinstance(found, record):
        raise TypeError(f"ledger entry {entry.seq} is a {entry.kind} entry, not {record.KIND}")
    return found


def of(entries: Iterable[Entry], record: type[R]) -> list[R]:
    """Every entry of `record`'s kind, typed, in ledger order."""
    return [view(e, record) for e in entries if e.kind == record.KIND]
