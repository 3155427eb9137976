"""The one record every guard returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# Guard names are fixed: reports, tests and MLflow tags rely on them.
GUARD_NAMES = (
    "integrity",
    "static",
    "sandbox",
    "output",
    "significance",
    "guardrail",
    "support",
    "segment",
    "lookahead",
    "parity",
    "contamination",
    "holdout_gate",
    "drift",
    "change",  # an identical candidate: nothing to judge
    "refit",  # a kept candidate's training noise could not be measured
    "record",  # a keep a stop interrupted, rolled back
)


@dataclass(frozen=True)
class GuardResult:
    """Outcome of one guard: a pure function of evidence."""

    name: str
    passed: bool
    detail: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in GUARD_NAMES:
            raise ValueError(f"unknown guard name {self.name!r}; expected one of {GUARD_NAMES}")

    def to_dict(self) -> dict[str, Any]:
        return {"guard": self.name, "passed": self.passed, "detail": self.detail, "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuardResult":
        """The record `to_dict` wrote (a ledger entry's reason)."""
        return cls(data["guard"], bool(data["passed"]), data["detail"], dict(data.get("figures") or {}))
