"""Reseal: a spent holdout is retired, a fresh one sealed and checked for reuse, the gate budget resets."""
from __future__ import annotations

import shutil

import pytest

from optimizer.base.errors import RatchetError
from tests.conftest import BASELINE, mlflow_store


@pytest.fixture
def ws(weak_workspace, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(weak_workspace, copy)
    return copy


def test_reseal_resets_the_gate_and_audits_clean(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "own.db"))
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import source_root
    from optimizer.lifecycle.reseal import reseal
    from optimizer.loop.experiment import run_experiment
    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    ctx = load_context(ws)
    with Sandbox(memory_mb=2048) as sandbox:
        ensure_baseline(ctx, sandbox)
        first = run_experiment(ctx, sandbox, BASELINE, proposer="test", hypothesis="baseline")
        assert first.kept and len(ctx.gates()) == 1
        old_sha = ctx.manifest_sha256

        seen = r"reseal refused: (\d+) of \1 new holdout rows .* repeat the holdout sealed by ledger entry 1 \(seal"
        with pytest.raises(RatchetError, match=seen):
            reseal(ws, seed=ctx.config.data.seed)  # the same world again: every row was seen
        result = reseal(ws, seed=11)
        assert result.manifest_sha256 != old_sha and (ws / "retired" / "holdout-1" / "holdout.parquet").is_file()

        ctx = load_context(ws)
        assert ctx.gates() == [] and ctx.manifest_sha256 == result.manifest_sha256
        ensure_baseline(ctx, sandbox)  # the champion decides once on the new holdout
        assert ctx.champion().seal == result.manifest_sha256
        assert len(ctx.champion().holdout) == len(ctx.holdout_all)
        second = run_experiment(ctx, sandbox, BASELINE.replace("SEED = 0", "SEED = 3"), proposer="test",
                                hypothesis="seed")
        assert not second.kept
    from optimizer.tracking.sync import sync

    sync(ws)  # the experiments ran without a tracker: MLflow gets them from the ledger, else the audit is unverified
    report = audit(ws, source_root=source_root())
    assert report.ok, [c for c in report.checks if not c.passed]


def test_reseal_needs_exactly_one_source(ws):
    from optimizer.lifecycle.reseal import reseal

    with pytest.raises(RatchetError, match="exactly one"):
        reseal(ws)
