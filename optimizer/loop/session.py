"""A runner's session on a workspace: what `ratchet run` and `ratchet try` hold while they judge candidates.

One set-up for both, so a candidate `try` judges meets the workspace the loop would judge it in: the runner lock
held for the whole session, the workspace loaded and verified (a keep a stop interrupted completed or rolled back
first), a task-agent workspace's model broker, a per-phase budget given on the command line, the tracking store,
and a sandbox started on the last kept policy.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from optimizer.base.errors import RatchetError
from optimizer.records.context import Context, load_context
from optimizer.tracking.runs import Tracker, open_tracker
from optimizer.workspace.runner import hold

if TYPE_CHECKING:
    from optimizer.llm.task_agent import TaskAgentBroker
    from optimizer.sandbox import Sandbox


@dataclass(frozen=True)
class Session:
    """The verified workspace, its model broker (None unless task_agent is enabled) and its tracking store, for as
    long as `open_session` holds the runner lock."""

    ctx: Context
    broker: TaskAgentBroker | None
    tracker: Tracker

    @contextmanager
    def sandbox(self) -> Iterator[Sandbox]:
        """A sandbox for the session's candidates, on the last kept policy: whatever an earlier crash left in
        policy.py is not part of the champion."""
        from optimizer.sandbox import Sandbox

        self.ctx.ws.revert()
        with Sandbox(memory_mb=self.ctx.config.sandbox.memory_mb, broker=self.broker) as sandbox:
            yield sandbox


@contextmanager
def open_session(path: Path, *, budget: float | None = None, rounds: bool = False) -> Iterator[Session]:
    """Hold the runner lock of the workspace at `path` and open its session. `budget`: wall-clock seconds per
    sandbox phase instead of the config's. `rounds`: candidates will be evaluated several at a time, or elsewhere,
    which a task-agent workspace refuses before anything else is opened."""
    from optimizer.llm.task_agent import open_broker

    with hold(path):
        ctx = load_context(path)
        broker = open_broker(ctx)  # refuses a task-agent workspace without an API key, before any sandbox work
        if rounds and broker is not None:
            raise RatchetError(f"{path}: a task-agent workspace runs one experiment at a time (its model broker "
                               "lives in this process); drop --parallel and --executor.")
        if budget is not None:
            sandbox = ctx.config.sandbox.model_copy(update={"budget_s": budget})
            ctx.config = ctx.config.model_copy(update={"sandbox": sandbox})
        yield Session(ctx, broker, open_tracker(ctx))
