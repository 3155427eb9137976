"""Executors: where the evaluate stages of a round run while the coordinator waits.

The coordinator (optimizer.loop.run) proposes a round of candidates, hands their sources to an executor, and gets one
Evaluation back per source, in the order given. Judge, gate and record then run in the coordinator, in proposal
order, so the verdicts do not depend on which evaluation finished first. An executor writes nothing: no git, no
ledger, no MLflow.

- `local`: K sandboxes (K fork servers) in this process, one thread each;
- `dask`: the tasks of a Dask `distributed` cluster (a LocalCluster started here, or `--scheduler ADDRESS`), each
  worker with its own sandbox. Only the policy views travel (train with its label, dev and holdout without).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from optimizer.base.errors import RatchetError
from optimizer.loop.stages import Evaluation

if TYPE_CHECKING:
    from optimizer.records.context import Context

EXECUTORS = ("local", "dask")


class Executor(Protocol):
    name: str
    workers: int  # how many evaluations run at once

    def evaluate_many(self, ctx: Context, sources: Sequence[str]) -> list[Evaluation]:
        """One evaluation per source, in the order given."""

    def close(self) -> None:
        """Stop what was started (a Ctrl-C ends the evaluations in flight as crashes)."""


def make_executor(name: str, *, sandbox: Any, parallel: int, memory_mb: int, scheduler: str | None = None) -> Executor:
    """The executor named on the command line; `sandbox` is the coordinator's own (refits, baseline)."""
    if name == "local":
        if scheduler:
            raise RatchetError("--scheduler is an address of a Dask scheduler; use it with --executor dask.")
        from optimizer.loop.executors.local import LocalExecutor

        return LocalExecutor(sandbox, parallel=parallel, memory_mb=memory_mb)
    if name == "dask":
        from optimizer.loop.executors.cluster import DaskExecutor

        return DaskExecutor(sandbox, parallel=parallel, memory_mb=memory_mb, scheduler=scheduler)
    raise RatchetError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}.")
