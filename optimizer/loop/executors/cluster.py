"""The evaluate stages on a Dask `distributed` cluster: a LocalCluster of process workers started here, or the
scheduler at `--scheduler ADDRESS`.

Each worker runs its own sandbox (a WorkerPlugin starts it with the worker and closes it with the worker), so the
wall-clock budget is enforced on the worker by killing the candidate's process group: Dask cannot cancel a task
that runs. The inputs are scattered once per session to every worker; they hold the policy views only (train with
its label, as fit sees it; dev and holdout without labels), never the scorer's labels. A fitted model comes back
as bytes and is adopted by the coordinator's sandbox. A worker lost mid-evaluation (killed, out of memory, its
machine gone) fails the task at once (`allowed-failures` 0 on a cluster started here) and the experiment is
recorded as crashed with the reason; the loop carries on.
"""
from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Any, Sequence

from distributed import Client, LocalCluster, WorkerPlugin, get_worker

from guards import GuardName, GuardResult
from optimizer.base.errors import RatchetError
from optimizer.loop.executors.timing import timed
from optimizer.loop.stages import Evaluation, Inputs
from optimizer.sandbox import SandboxStatus

if TYPE_CHECKING:
    from optimizer.records.context import Context

CONNECT_S = 10  # how long to wait for a scheduler before saying it cannot be reached


class SandboxPlugin(WorkerPlugin):
    """A sandbox per worker, started with the worker and closed with it."""

    name = "ratchet-sandbox"

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb

    def setup(self, worker: Any) -> None:
        from optimizer.sandbox import Sandbox

        worker.ratchet_sandbox = Sandbox(memory_mb=self.memory_mb)
        worker.ratchet_sandbox.start()

    def teardown(self, worker: Any) -> None:
        box = getattr(worker, "ratchet_sandbox", None)
        if box is not None:
            box.close()


def remote_evaluate(inputs: Inputs, source: str) -> tuple[Evaluation, bytes | None]:
    """Runs on a worker: the evaluation, and the fitted model's bytes (the handle is local to this worker)."""
    sandbox = get_worker().ratchet_sandbox  # type: ignore[attr-defined]  # set on the worker by SandboxPlugin.setup
    evaluation = timed(inputs, sandbox, source)
    if evaluation.model is None:
        return evaluation, None
    data = evaluation.model.path.read_bytes()
    evaluation.model.path.unlink(missing_ok=True)
    return dataclasses.replace(evaluation, model=None), data


def lost(why: str) -> Evaluation:
    """An evaluation the cluster could not finish: a crash under the sandbox guard, with the reason."""
    return Evaluation((GuardResult(GuardName.SANDBOX, False,
                                   f"the Dask worker evaluating this candidate was lost: {why}",
                                   {"phase": "evaluate", "status": SandboxStatus.CRASH}),))


class DaskExecutor:
    name = "dask"

    def __init__(self, sandbox: Any, *, parallel: int, memory_mb: int, scheduler: str | None = None) -> None:
        import dask

        self._own = sandbox
        self._cluster = None
        self._held: tuple[Inputs, Any] | None = None
        # A task whose worker died is not retried on another one: the experiment is a crash, said once.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            if scheduler:
                try:
                    self.client = Client(scheduler, timeout=f"{CONNECT_S}s")
                except (OSError, TimeoutError) as exc:
                    raise RatchetError(f"--scheduler {scheduler}: no Dask scheduler answered within {CONNECT_S} s "
                                       f"({type(exc).__name__}). Start one (`dask scheduler`) or drop --scheduler "
                                       "to start a local cluster.") from None
            else:
                self._cluster = LocalCluster(n_workers=max(1, parallel), threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.ERROR)
                self.client = Client(self._cluster)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]))
        self.client.register_plugin(SandboxPlugin(memory_mb), name=SandboxPlugin.name)

    def _inputs(self, inputs: Inputs) -> Any:
        if self._held is None or self._held[0] is not inputs:
            self._held = (inputs, self.client.scatter(inputs, broadcast=True, hash=False))
        return self._held[1]

    def evaluate_many(self, ctx: Context, sources: Sequence[str]) -> list[Evaluation]:
        held = self._inputs(Inputs.of(ctx))
        futures = [self.client.submit(remote_evaluate, held, source, key=f"ratchet-evaluate-{uuid.uuid4().hex}",
                                      pure=False, retries=0) for source in sources]
        out = []
        try:
            for future in futures:
                try:
                    evaluation, data = future.result()
                except Exception as exc:  # KilledWorker, a lost connection, a worker without the plugin
                    evaluation, data = lost(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"), None
                if data is not None:
                    evaluation = dataclasses.replace(evaluation, model=self._own.adopt(data))
                out.append(evaluation)
        except BaseException:
            self.client.cancel(futures)  # queued ones never start; a running one ends at its budget
            raise
        return out

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
