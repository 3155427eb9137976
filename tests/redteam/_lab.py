"""A red-team lab: a copy of a sealed workspace with its baseline evaluated and one warm sandbox."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from guards import GuardName


@contextmanager
def open_lab(workspace: Path, root: Path) -> Iterator[tuple]:
    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    shutil.copytree(workspace, root)
    ctx = load_context(root)
    # A roomy budget: the suite runs on busy hosts (the timeout attempt sets its own).
    ctx.config = ctx.config.model_copy(update={"sandbox": ctx.config.sandbox.model_copy(
        update={"budget_s": 90.0, "memory_mb": 2048})})
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        ensure_baseline(ctx, sandbox)
        yield ctx, sandbox


def judge(lab: tuple, source: str, hypothesis: str = "attempt"):
    """Run one candidate through the real pipeline; a rejected one must leave the champion as it was."""
    from optimizer.loop.experiment import run_experiment

    ctx, sandbox = lab
    before = ctx.ws.head()
    record = run_experiment(ctx, sandbox, source, proposer="redteam", hypothesis=hypothesis)
    failed = {r.name: r.detail for r in record.verdict.failures}
    if not record.kept:
        assert ctx.ws.head() == before and ctx.ws.policy.read_text() == ctx.ws.champion_source()
    return record, failed


def caught(lab: tuple, source: str, name: str, guard: GuardName) -> dict:
    """A gaming attempt: rejected, and by `guard` (the failures are returned for the caller's own checks)."""
    record, failed = judge(lab, source, name)
    assert not record.kept
    assert guard in failed, f"{name}: expected guard '{guard}', failed: {failed}"
    return failed
