"""The one record every guard returns, and the guards' names."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping


class GuardName(StrEnum):
    """Every guard's name, fixed: reports, tests and MLflow tags rely on them. Stored and printed as its text (a
    member equals its text and serialises as it), so ledger payloads and JSON hold the plain names."""

    INTEGRITY = "integrity"
    STATIC = "static"
    SANDBOX = "sandbox"
    OUTPUT = "output"
    SIGNIFICANCE = "significance"
    GUARDRAIL = "guardrail"
    SUPPORT = "support"
    SEGMENT = "segment"
    LOOKAHEAD = "lookahead"
    PARITY = "parity"
    CONTAMINATION = "contamination"
    HOLDOUT_GATE = "holdout_gate"
    DRIFT = "drift"
    CHANGE = "change"  # an identical candidate: nothing to judge
    REFIT = "refit"  # a kept candidate's training noise could not be measured
    RECORD = "record"  # a keep a stop interrupted, rolled back


@dataclass(frozen=True)
class GuardResult:
    """Outcome of one guard: a pure function of evidence. `name` may be given as its text (a stored record's);
    it is held as the GuardName member, and an unknown name is refused."""

    name: GuardName
    passed: bool
    detail: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            name = GuardName(self.name)
        except ValueError:
            raise ValueError(f"unknown guard name {self.name!r}; expected one of {', '.join(GuardName)}") from None
        object.__setattr__(self, "name", name)

    def to_dict(self) -> dict[str, Any]:
        return {"guard": self.name, "passed": self.passed, "detail": self.detail, "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuardResult":
        """The record `to_dict` wrote (a ledger entry's reason)."""
        return cls(data["guard"], bool(data["passed"]), data["detail"], dict(data.get("figures") or {}))
