"""The verdict: the guards' results plus the decision they imply (keep only when all passed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from guards._result import GuardName, GuardResult


@dataclass(frozen=True)
class Verdict:
    """Immutable; `kept` is derived from `results` and checked against them when given."""

    results: tuple[GuardResult, ...]
    kept: bool | None = None

    def __post_init__(self) -> None:
        results = tuple(self.results)
        for r in results:
            if not isinstance(r, GuardResult):
                raise TypeError(f"a verdict holds GuardResult records; got {type(r).__name__}")
        # No evidence is not a pass: an empty verdict never keeps a candidate.
        implied = bool(results) and all(r.passed for r in results)
        if self.kept is not None and bool(self.kept) != implied:
            raise ValueError(f"kept={self.kept} contradicts the results (all passed: {implied})")
        object.__setattr__(self, "results", results)
        object.__setattr__(self, "kept", implied)

    @classmethod
    def from_dicts(cls, reasons: Iterable[Mapping[str, Any]]) -> "Verdict":
        """The verdict of stored results (a ledger entry's `reasons`)."""
        return cls(tuple(GuardResult.from_dict(r) for r in reasons))

    def result(self, guard: GuardName) -> GuardResult | None:
        """The first result of `guard`, None when it did not run."""
        return next((r for r in self.results if r.name == guard), None)

    @property
    def failures(self) -> tuple[GuardResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def failed_guards(self) -> tuple[GuardName, ...]:
        """Names of the failed guards, first failure first, each once."""
        return tuple(dict.fromkeys(r.name for r in self.failures))

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per failed result: 'guard: detail'."""
        if not self.results:
            return ("no guard results: nothing was checked, so nothing is kept",)
        return tuple(f"{r.name}: {r.detail}" for r in self.failures)

    @property
    def summary(self) -> str:
        if self.kept:
            return f"kept: all {len(self.results)} guard results passed"
        return "reverted: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "failed_guards": list(self.failed_guards), "reasons": list(self.reasons),
                "summary": self.summary, "results": [r.to_dict() for r in self.results]}


def decide(results: Iterable[GuardResult]) -> Verdict:
    """Keep the candidate only when there is at least one result and every result passed."""
    return Verdict(tuple(results))
