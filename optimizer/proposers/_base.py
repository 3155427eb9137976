"""The proposer plug-in point: ask/tell, like Optuna's samplers."""
from __future__ import annotations

import abc
import dataclasses
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

    def propose_batch(self, context: ProposalContext, k: int) -> list[Candidate]:
        """Up to `k` candidates on the same champion, to be evaluated at once (fewer when the proposer runs out).
        Each is told as usual when judged; a proposer that learns should diversify a batch (Optuna's constant liar,
        the meta-agent's round of hypotheses)."""
        batch: list[Candidate] = []
        while len(batch) < k and (candidate := self.propose(context)) is not None:
            batch.append(candidate)
        return batch

    def rebase(self, candidate: Candidate, old: str, new: str) -> Candidate | None:
        """`candidate`, drafted on champion `old`, after `new` was kept in its round: the same change applied to
        `new` (default: a three-way merge of the files), or None when it does not apply; it is then dropped."""
        from optimizer.base.diffs import merge

        merged = merge(old, new, candidate.source)
        return None if merged is None else dataclasses.replace(candidate, source=merged)

    def drop(self, candidate: Candidate, why: str) -> None:
        """A candidate that will not be judged (default: nothing to forget)."""

    def observe(self, candidate: Candidate, record: Any) -> None:
        """Learn from the verdict (default: nothing)."""

    def close(self) -> None:
        """Release resources; a run can be resumed afterwards."""
