"""An experiment's record: what became of one candidate (its status, the verdict, the figures), immutable once
written. The ledger, the record folder, MLflow, the history table and the report all read this one type."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from guards import GuardName, Verdict


class ExperimentStatus(StrEnum):
    """What became of a candidate (stored as its text): the one set of words the ledger, `history`, `show`, the
    report, MLflow's `ratchet.status` tag and the README use. Where a reverted candidate was stopped (a dev guard,
    or the holdout gate after every dev guard passed) is said beside it, never with another word."""

    KEPT = "kept"  # every guard and the gate passed; committed as the new champion
    WOULD_KEEP = "would_keep"  # the same, judged without committing (`ratchet try` without --keep)
    REVERTED = "reverted"  # a guard or the gate refused it
    CRASHED = "crashed"  # it could not be evaluated: static scan, sandbox, output contract, or an interrupted keep


# A failure of one of these is a crash, not a verdict.
CRASH_GUARDS = frozenset({GuardName.STATIC, GuardName.SANDBOX, GuardName.OUTPUT, GuardName.RECORD})


@dataclass(frozen=True)
class ExperimentRecord:
    """Immutable once written and validated like Optuna's FrozenTrial: the status must agree with the verdict.
    Corrections are new records."""

    experiment: str
    number: int
    proposer: str
    hypothesis: str
    status: ExperimentStatus
    verdict: Verdict
    parent_commit: str
    commit: str | None
    policy_sha256: str
    diff: str
    dev_metrics: Mapping[str, float]
    gate: dict[str, Any] | None
    fit: dict[str, Any]
    seconds: dict[str, float]
    ledger_seq: int | None = None
    proposal: dict[str, Any] = field(default_factory=dict)  # what the proposer reported (e.g. tokens, cost)
    decisions_sha256: dict[str, str] = field(default_factory=dict)  # per row set, for `ratchet audit --replay`
    scorer: dict[str, str] = field(default_factory=dict)  # what judged it: ratchet version, the sources' digest

    def __post_init__(self) -> None:
        status = ExperimentStatus(self.status)
        object.__setattr__(self, "status", status)
        if not isinstance(self.verdict, Verdict):
            raise TypeError(f"{self.experiment}: verdict must be a guards.Verdict, got {type(self.verdict).__name__}")
        passed = self.verdict.kept
        if passed != (status in (ExperimentStatus.KEPT, ExperimentStatus.WOULD_KEEP)):
            raise ValueError(f"{self.experiment}: status {status} contradicts the verdict ({self.verdict.summary})")
        crashed = any(r.name in CRASH_GUARDS for r in self.verdict.failures)
        if not passed and crashed != (status is ExperimentStatus.CRASHED):
            raise ValueError(f"{self.experiment}: status {status} but failed guards {self.verdict.failed_guards}")
        if passed and not (self.gate and self.verdict.result(GuardName.HOLDOUT_GATE)):
            raise ValueError(f"{self.experiment}: a candidate is kept only on a holdout gate answer")

    @property
    def kept(self) -> bool:
        return self.status is ExperimentStatus.KEPT

    def to_payload(self) -> dict[str, Any]:
        """The ledger's form of the record (the diff is in the record folder; the sequence number is the entry's)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("diff", "ledger_seq")}
        out.update(status=str(self.status), kept=self.kept, dev_metrics=dict(self.dev_metrics),
                   reasons=[r.to_dict() for r in out.pop("verdict").results])
        return out

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], *, diff: str = "") -> "ExperimentRecord":
        """A record read back from its ledger entry (or record.json)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"verdict", "diff"}
        return cls(**{k: v for k, v in data.items() if k in names}, verdict=Verdict.from_dicts(data["reasons"]),
                   diff=diff)

    def verdict_json(self) -> dict[str, Any]:
        """The stable verdict format printed by `ratchet try --json`."""
        return {"experiment": self.experiment, "kept": self.kept,
                "metrics": {"dev": dict(self.dev_metrics), "holdout_gate": self.gate or {}},
                "reasons": [{"guard": r.name, "passed": r.passed, "detail": r.detail} for r in self.verdict.results]}
