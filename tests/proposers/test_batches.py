"""Batches of proposals: Optuna asks K distinct points before any is told; a candidate drafted on an older champion
is rebased on the one kept before it (Optuna: its constants on the new file; default: a three-way merge) or
dropped."""
from __future__ import annotations

from optimizer.base.diffs import merge
from optimizer.base.tunables import parse
from optimizer.proposers import Candidate, OptunaProposer, PatchesProposer, ProposalContext
from optimizer.proposers._base import Proposer

POLICY = '''"""A policy with two tunables."""
import numpy as np

THRESHOLD = 0.5  # tune: float 0.1..0.9
DEPTH = 3  # tune: int 2..8


def fit(train):
    return None


def decide(model, rows):
    return np.full(len(rows), THRESHOLD)
'''


def test_optuna_batch_is_distinct_and_rebases_its_constants(tmp_path):
    prop = OptunaProposer(tmp_path / "study.journal", seed=0, primary="m")
    batch = prop.propose_batch(ProposalContext(POLICY, "", []), 4)
    points = [tuple(t.value for t in parse(c.source)) for c in batch]
    assert len(batch) == 4 and len(set(points)) == 4
    new = POLICY.replace("return None", "return 1")  # a champion kept earlier in the round
    rebased = prop.rebase(batch[1], POLICY, new)
    assert "return 1" in rebased.source and tuple(t.value for t in parse(rebased.source)) == points[1]
    assert prop.rebase(batch[2], POLICY, new.replace("  # tune: int 2..8", "")) is None  # DEPTH no longer tuned
    prop.drop(batch[2], "test")
    prop.close()
    states = sorted(str(t.state) for t in prop.study.trials)
    assert states.count("TrialState.FAIL") == 4 and not any("RUNNING" in s for s in states)


def test_default_rebase_merges_or_drops():
    class Fixed(Proposer):
        name = "fixed"

        def propose(self, context):
            return None

    edited = POLICY.replace("return np.full", "return 0 * np.full")
    kept = POLICY.replace("THRESHOLD = 0.5", "THRESHOLD = 0.6")
    merged = Fixed().rebase(Candidate(edited, "h"), POLICY, kept)
    assert "THRESHOLD = 0.6" in merged.source and "0 * np.full" in merged.source
    assert Fixed().rebase(Candidate(POLICY.replace("0.5", "0.7"), "h"), POLICY, kept) is None  # same line changed
    assert merge(POLICY, POLICY, POLICY) == POLICY
    assert Fixed().propose_batch(ProposalContext(POLICY, "", []), 3) == []


def test_patches_are_judged_as_written(tmp_path):
    (tmp_path / "a.py").write_text(POLICY)
    prop = PatchesProposer(tmp_path)
    [candidate] = prop.propose_batch(ProposalContext(POLICY, "", []), 2)
    assert prop.rebase(candidate, POLICY, "anything") is candidate
