"""The proposer plug-in point: ask/tell, like Optuna's samplers."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Candidate:
    """A whole new policy.py and the one-line hypothesis behind it."""

    source: str
    hypothesis: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProposalContext:
    champion_source: str
    program: str
    history: Sequence[Mapping[str, Any]]  # earlier experiment records (dev-only information)


class Proposer(abc.ABC):
    name: str

    @abc.abstractmethod
    def propose(self, context: ProposalContext) -> Candidate | None:
        """The next candidate, or None when this proposer has nothing more to try."""

    def observe(self, candidate: Candidate, record: Any) -> None:
        """Learn from the verdict (default: nothing)."""

    def close(self) -> None:
        """Release resources; a run can be resumed afterwards."""
