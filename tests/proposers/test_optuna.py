"""The Optuna proposer resumes its study: no set of constants is proposed twice, across restarts too."""
from __future__ import annotations

from pathlib import Path

from optimizer.base.tunables import parse
from optimizer.proposers import ProposalContext
from optimizer.proposers._optuna import OptunaProposer

POLICY = (Path(__file__).resolve().parents[2] / "domains" / "fraud" / "policy.py").read_text()


def _constants(source: str) -> tuple:
    return tuple((t.name, t.value) for t in parse(source))


def _session(study: Path, n: int, source: str = POLICY) -> list[tuple]:
    """One run: `n` proposals, then stopped (open trials closed, as the loop's close does)."""
    proposer = OptunaProposer(study, seed=0, primary="net_savings")
    proposed = [_constants(proposer.propose(ProposalContext(source, "", [])).source) for _ in range(n)]
    proposer.close()
    return proposed


def test_a_restarted_study_never_proposes_a_point_again(tmp_path):
    study = tmp_path / "study.journal"
    runs = [_session(study, 3) for _ in range(3)]  # three runs of the same workspace, stopped and resumed
    everything = [p for run in runs for p in run]
    assert len(set(everything)) == len(everything) == 9
    again = [_session(tmp_path / "other.journal", 3) for _ in range(3)]  # reproducible from the same seed
    assert again == runs


def test_a_tiny_search_space_still_proposes(tmp_path):
    tiny = POLICY.replace("# tune: int 50..800 log", "").replace("# tune: int 2..10", "")
    for marker in ("# tune: float 0.01..0.3 log", "# tune: float 0.5..1.0", "# tune: float 0.4..1.0",
                   "# tune: float 0.5..20.0 log", "# tune: float 1.0..50.0 log", "# tune: float 0.05..0.95"):
        tiny = tiny.replace(marker, "")
    assert [t.name for t in parse(tiny)] == ["REFERENCE_DAYS"]  # four choices
    study = tmp_path / "tiny.journal"
    seen = [dict(p)["REFERENCE_DAYS"] for _ in range(2) for p in _session(study, 3, tiny)]
    assert len(seen) == 6 and len(set(seen)) == 4  # every choice once, then repeats rather than nothing
