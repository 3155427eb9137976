"""The keep's repair (records/recovery.py), one case at a time: a keep cut at each of its steps (and the other
stops a run can leave) on a bare workspace (git, ledger and state folders, no data), what `diagnose` calls it, and
what its one repair does. The whole command, killed for real at each point: tests/optimizer/test_crash_safety*.py."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from guards import GuardResult, Verdict
from holdout.hashing import canonical_json, sha256_bytes
from holdout.ledger import Kind, Ledger
from optimizer.base.errors import IntegrityError
from optimizer.records import keep, recovery
from optimizer.records.experiment_record import ExperimentRecord, ExperimentStatus
from optimizer.records.policy_state import PolicyState
from optimizer.workspace.layout import Workspace

OLD = "THRESHOLD = 0.3\n"
NEW = "THRESHOLD = 0.35\n"
EXP = "exp-0001"


class _Stop(BaseException):
    """A stop at a step of the keep (what SIGKILL or a power cut does, minus the process)."""


def _state(experiment: str, commit: str) -> PolicyState:
    return PolicyState(experiment, commit, np.zeros(4), np.ones(3), {"k": 1}, {"cost": 2.0}, 0.0)


def _bench(tmp_path, *, baseline: bool = True) -> SimpleNamespace:
    """The parts of a Context a keep and its repair touch: the workspace's git and folders, the ledger, the state
    folders; the baseline evaluated and recorded (unless `baseline` is False: its files written, not recorded)."""
    root = tmp_path / "ws"
    root.mkdir()
    for name, text in (("policy.py", OLD), ("program.md", "direction\n"), ("ratchet.yaml", "domain: fraud\n")):
        (root / name).write_text(text)
    ws = Workspace(root)
    ws.init_repo()
    ctx = SimpleNamespace(ws=ws, ledger=Ledger(ws.ledger), champion_dir=root / "champion",
                          baseline_dir=root / "baseline")
    ctx.ledger.append(Kind.SEAL, {"manifest_sha256": "sealed"})
    for folder in (ctx.baseline_dir, ctx.champion_dir):
        _state("baseline", ws.head()).save(folder)
    if baseline:
        ctx.ledger.append(Kind.BASELINE, {"commit": ws.head()})
    return ctx


def _kept(parent: str) -> ExperimentRecord:
    results = (GuardResult("integrity", True, "verified"), GuardResult("significance", True, "z 3.1", {"z": 3.1}),
               GuardResult("holdout_gate", True, "passed", {"answer": 0.02}))
    return ExperimentRecord(
        experiment=EXP, number=1, proposer="test", hypothesis="THRESHOLD 0.3 -> 0.35", status=ExperimentStatus.KEPT,
        verdict=Verdict(results), parent_commit=parent, commit=None, policy_sha256=sha256_bytes(NEW.encode()),
        diff="", dev_metrics={"cost": 1.5}, gate={"kind": "lord", "query": 1, "experiment": EXP, "answer": 0.02},
        fit={"rows": 10}, seconds={"total": 1.0}, proposal={"tokens": 3}, decisions_sha256={"dev": "a"},
        scorer={"version": "0.0", "sources_sha256": "c"})


def _cut(ctx, step: str) -> dict:
    """Judge NEW as kept (its holdout query first, as the gate asks it) and stop its keep right after `step`;
    returns the payload the keep was given."""
    payload = _kept(ctx.ws.head()).to_payload()
    ctx.ledger.append(Kind.GATE, {"experiment": EXP, "query": 1, "kind": "lord"})
    ctx.ws.stage(NEW)

    def stop(reached: str) -> None:
        if reached == step:
            raise _Stop(step)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(_Stop):
        patch.setattr(keep, "_reached", stop)
        keep.keep(ctx, payload, NEW, _state(EXP, ""), f"{EXP}: keep")
    return payload


def _mid_swap(ctx) -> None:
    """A keep cut between the swap's two renames: champion/ already champion.prev/, champion.next/ not moved."""
    _cut(ctx, "state")
    ctx.champion_dir.rename(ctx.champion_dir.with_name("champion.prev"))


def _edit_history(ctx) -> None:
    ctx.ws.stage("THRESHOLD = 0.9\n")
    ctx.ws.keep("edited by hand")


def _history_changed(ctx) -> None:
    _cut(ctx, "commit")
    _edit_history(ctx)


def _reverted_without_folder(ctx) -> None:
    """A verdict without a keep in the ledger, the run stopped before its folder (the candidate still staged)."""
    verdict = Verdict((GuardResult("integrity", True, "verified"), GuardResult("significance", False, "z 0.2")))
    rec = ExperimentRecord(
        experiment=EXP, number=1, proposer="test", hypothesis="", status=ExperimentStatus.REVERTED, verdict=verdict,
        parent_commit=ctx.ws.head(), commit=None, policy_sha256=sha256_bytes(NEW.encode()), diff="",
        dev_metrics={}, gate=None, fit={}, seconds={})
    ctx.ws.stage(NEW)
    ctx.ledger.append(Kind.EXPERIMENT, rec.to_payload())


def _completed_but_cleanup(ctx) -> None:
    """A keep stopped after its completion entry, its record folder written since: only champion.prev/ is left."""
    _cut(ctx, "complete")
    data = ctx.ledger.entries(Kind.EXPERIMENT)[-1].data
    keep.write_record(ctx.ws, data, NEW, "", None)


def _gate_only(ctx) -> None:
    ctx.ledger.append(Kind.GATE, {"experiment": EXP, "query": 1, "kind": "lord"})
    ctx.ws.stage(NEW)


CASES = [
    ("nothing stopped", lambda ctx: None, recovery.Clean),
    ("a keep's cleanup left", _completed_but_cleanup, recovery.CleanupLeft),
    ("a holdout query without its experiment", _gate_only, recovery.UnrecordedGate),
    ("a kept experiment without its folder", lambda ctx: _cut(ctx, "cleanup"), recovery.MissingFolder),
    ("a reverted experiment without its folder", _reverted_without_folder, recovery.MissingFolder),
    ("cut after the intent", lambda ctx: _cut(ctx, "intent"), recovery.RollBack),
    ("cut after the commit", lambda ctx: _cut(ctx, "commit"), recovery.RollBack),
    ("cut after the new state was written", lambda ctx: _cut(ctx, "state"), recovery.RollBack),
    ("cut inside the swap", _mid_swap, recovery.RollBack),
    ("cut after the swap", lambda ctx: _cut(ctx, "swap"), recovery.RollForward),
    ("cut, then the history changed by hand", _history_changed, recovery.HistoryChanged),
]


def _snapshot(ctx) -> tuple:
    files = sorted(str(p.relative_to(ctx.ws.root)) for p in ctx.ws.root.rglob("*") if ".git" not in p.parts)
    return ctx.ws.head(), ctx.ws.policy.read_text(), len(ctx.ledger.entries()), files


@pytest.mark.parametrize("name, make, case", CASES, ids=[c[0] for c in CASES])
def test_the_diagnosis_names_each_case_and_changes_nothing(tmp_path, name, make, case):
    ctx = _bench(tmp_path)
    make(ctx)
    before = _snapshot(ctx)
    assert type(recovery.diagnose(ctx)) is case
    assert _snapshot(ctx) == before


def test_the_diagnosis_names_a_baseline_never_recorded(tmp_path):
    ctx = _bench(tmp_path, baseline=False)
    assert recovery.diagnose(ctx) == recovery.NoBaseline()


def test_a_baseline_never_recorded_is_forgotten(tmp_path):
    ctx = _bench(tmp_path, baseline=False)
    ctx.champion_dir.with_name("champion.next").mkdir()
    assert recovery.forget_baseline(ctx) is None
    assert not [p.name for p in ctx.ws.root.iterdir() if p.name.startswith(("baseline", "champion"))]


def test_a_completed_keeps_cleanup_is_finished(tmp_path):
    ctx = _bench(tmp_path)
    _completed_but_cleanup(ctx)
    entries = len(ctx.ledger.entries())
    recovery.finish_cleanup(ctx)
    assert not ctx.champion_dir.with_name("champion.prev").exists()
    assert PolicyState.load(ctx.champion_dir).experiment == EXP and len(ctx.ledger.entries()) == entries


def test_a_holdout_query_without_its_experiment_is_recorded_as_crashed(tmp_path):
    ctx = _bench(tmp_path)
    _gate_only(ctx)
    stop = recovery.diagnose(ctx)
    parent = ctx.ws.head()
    assert recovery.record_stopped(ctx, stop) == f"{EXP}: stopped after its holdout query; recorded as crashed"
    gate = stop.gate.data
    detail = (f"the run stopped after this experiment's holdout query (gate query {gate.get('query')}) and "
              "before its verdict was recorded; recorded as crashed on the next load, the query stays counted")
    as_before = {"experiment": EXP, "number": 1, "proposer": "unknown", "hypothesis": "", "status": "crashed",
                 "kept": False, "parent_commit": parent, "commit": None, "policy_sha256": sha256_bytes(NEW.encode()),
                 "dev_metrics": {}, "gate": dict(gate), "fit": {}, "seconds": {}, "proposal": {},
                 "decisions_sha256": {}, "reasons": [{"guard": "record", "passed": False, "figures": {},
                                                      "detail": detail}]}
    written = ctx.ledger.entries(Kind.EXPERIMENT)[-1].data
    assert written == as_before and canonical_json(written) == canonical_json(as_before)
    assert ctx.ws.policy.read_text() == OLD and (ctx.ws.experiments / EXP / "policy.py").read_text() == NEW


def test_a_kept_experiments_folder_is_rewritten_from_its_intent(tmp_path):
    ctx = _bench(tmp_path)
    _cut(ctx, "cleanup")
    stop = recovery.diagnose(ctx)
    assert stop.intent is not None
    assert recovery.rewrite_folder(ctx, stop) == f"{EXP}: its record folder was rewritten from the ledger"
    assert (ctx.ws.experiments / EXP / "policy.py").read_text() == NEW and ctx.ws.champion_source() == NEW


def test_a_reverted_experiments_folder_is_rewritten_from_the_working_copy(tmp_path):
    ctx = _bench(tmp_path)
    _reverted_without_folder(ctx)
    stop = recovery.diagnose(ctx)
    assert stop.intent is None
    recovery.rewrite_folder(ctx, stop)
    assert (ctx.ws.experiments / EXP / "policy.py").read_text() == NEW and ctx.ws.policy.read_text() == OLD


def test_a_keep_cut_after_the_swap_is_rolled_forward(tmp_path):
    ctx = _bench(tmp_path)
    payload = _cut(ctx, "swap")
    stop = recovery.diagnose(ctx)
    head = ctx.ws.head()
    assert recovery.roll_forward(ctx, stop) == f"{EXP}: the interrupted keep was completed (commit {head[:12]})"
    written = ctx.ledger.entries(Kind.EXPERIMENT)[-1].data
    assert written["commit"] == head and {k: v for k, v in written.items() if k not in ("commit", "evidence")} == \
        {k: v for k, v in payload.items() if k != "commit"}
    assert PolicyState.load(ctx.champion_dir).experiment == EXP
    assert not ctx.champion_dir.with_name("champion.prev").exists() and (ctx.ws.experiments / EXP).is_dir()


@pytest.mark.parametrize("make", [lambda ctx: _cut(ctx, "intent"), lambda ctx: _cut(ctx, "commit"),
                                  lambda ctx: _cut(ctx, "state"), _mid_swap],
                         ids=["after the intent", "after the commit", "after the state", "inside the swap"])
def test_a_keep_cut_before_its_state_was_in_place_is_rolled_back(tmp_path, make):
    ctx = _bench(tmp_path)
    parent = ctx.ws.head()
    make(ctx)
    payload = ctx.ledger.entries(Kind.KEEP_INTENT)[-1].data["record"]
    stop = recovery.diagnose(ctx)
    assert recovery.roll_back(ctx, stop, "a test stopped it") == \
        f"{EXP}: the interrupted keep was rolled back to {parent[:12]}"
    as_before = {**payload, "status": "crashed", "kept": False, "commit": None,
                 "reasons": [*payload["reasons"], {"guard": "record", "passed": False, "figures": {},
                                                   "detail": "the keep was interrupted (a test stopped it) and rolled "
                                                             "back; the holdout query it spent stays counted"}]}
    written = ctx.ledger.entries(Kind.EXPERIMENT)[-1].data
    assert written == as_before and canonical_json(written) == canonical_json(as_before)
    assert ctx.ws.head() == parent and ctx.ws.policy.read_text() == OLD
    assert PolicyState.load(ctx.champion_dir).experiment == "baseline"
    assert not ctx.champion_dir.with_name("champion.prev").exists()
    assert not ctx.champion_dir.with_name("champion.next").exists()


def test_a_rollback_without_a_reason_says_where_it_stopped(tmp_path):
    ctx = _bench(tmp_path)
    _cut(ctx, "commit")
    recovery.roll_back(ctx, recovery.diagnose(ctx))
    assert "(stopped before the new champion state was in place)" in \
        ctx.ledger.entries(Kind.EXPERIMENT)[-1].data["reasons"][-1]["detail"]


def test_a_changed_history_is_refused_with_the_swap_finished(tmp_path):
    ctx = _bench(tmp_path)
    _mid_swap(ctx)
    _edit_history(ctx)
    stop = recovery.diagnose(ctx)
    assert isinstance(stop, recovery.HistoryChanged) and stop.mid_swap
    with pytest.raises(IntegrityError, match="changed by hand"):
        recovery.refuse_changed_history(ctx, stop)
    assert PolicyState.load(ctx.champion_dir).experiment == "baseline"


@pytest.mark.parametrize("name, make, case", CASES, ids=[c[0] for c in CASES])
def test_reconcile_is_the_diagnosis_then_its_repair(tmp_path, name, make, case):
    """Whatever the stop, one reconcile leaves nothing for a second to do (a changed history excepted: a person
    decides that one)."""
    ctx = _bench(tmp_path)
    make(ctx)
    if case is recovery.HistoryChanged:
        with pytest.raises(IntegrityError):
            recovery.reconcile(ctx)
        return
    done = recovery.reconcile(ctx)
    assert (done is None) == (case in (recovery.Clean, recovery.CleanupLeft))
    assert recovery.diagnose(ctx) == recovery.Clean()
    assert ctx.ws.policy.read_text() == ctx.ws.champion_source()
