"""K evaluations at once on this machine: one sandbox (its own fork server) per thread.

The threads only wait on their sandbox's pipes; the work runs in the sandboxes' contained child processes, so
the GIL is not what limits a round. The first sandbox is the coordinator's own (warm already)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from optimizer.loop.executors.timing import timed
from optimizer.loop.stages import Evaluation

if TYPE_CHECKING:
    from optimizer.records.context import Context


class LocalExecutor:
    name = "local"

    def __init__(self, sandbox: Any, *, parallel: int, memory_mb: int) -> None:
        from optimizer.sandbox import Sandbox

        self.workers = max(1, int(parallel))
        self._own = sandbox
        self._extra = [Sandbox(memory_mb=memory_mb, broker=None) for _ in range(self.workers - 1)]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ratchet-evaluate") if self.workers > 1 else None

    @property
    def sandboxes(self) -> list[Any]:
        return [self._own, *self._extra]

    def evaluate_many(self, ctx: Context, sources: Sequence[str]) -> list[Evaluation]:
        from optimizer.loop.stages import Inputs

        inputs = Inputs.of(ctx)  # made once, in this thread, before the threads read it
        if self._pool is None or len(sources) == 1:
            return [timed(inputs, self._own, s) for s in sources]
        boxes = self.sandboxes

        def lane(j: int) -> list[Evaluation]:  # lane j evaluates sources j, j + K, ... in its own sandbox
            return [timed(inputs, boxes[j], s) for s in sources[j::self.workers]]

        lanes = [self._pool.submit(lane, j) for j in range(min(self.workers, len(sources)))]
        try:
            done = [f.result() for f in lanes]
        except BaseException:  # Ctrl-C: end what runs now, so the threads return at once (as crashes)
            for box in boxes:
                box.kill()
            for f in lanes:
                f.cancel()
            raise
        return [done[i % self.workers][i // self.workers] for i in range(len(sources))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for box in self._extra:
            box.close()
