"""Typed ledger entries (holdout/entries.py): every kind has a record, every payload a writer makes (or an older
version made) reads and writes back exactly, and the ledger's questions (holdout/queries.py) answer from them."""
from __future__ import annotations

import copy

import pytest

from holdout import entries, queries
from holdout.gate import lord, thresholdout
from holdout.hashing import canonical_json
from holdout.ledger import Kind, Ledger

SHA = "ab" * 32
_REF = {"ref": "exp-0001", "experiment": "exp-0001", "commit": "c" * 40, "policy_sha256": SHA}
_REASONS = [{"guard": "static", "passed": True, "figures": {}, "detail": "ok"}]
_MLFLOW = {"uri": "sqlite:///mlflow.db", "store": "mlflow.db", "experiment": "ratchet-ws", "run_id": "r1"}
_EXPERIMENT = {"experiment": "exp-0001", "number": 1, "proposer": "scripted", "hypothesis": "raise the threshold",
               "status": "kept", "kept": True, "parent_commit": "p" * 40, "commit": "c" * 40, "policy_sha256": SHA,
               "dev_metrics": {"net_savings": 1.5}, "gate": {"kind": "lord", "answer": 0.2}, "fit": {"rows": 10},
               "seconds": {"fit": 0.1}, "proposal": {"tokens": 3}, "decisions_sha256": {"dev": SHA},
               "scorer": {"version": "0.9", "sources_sha256": SHA}, "reasons": _REASONS,
               "evidence": {"champion/state.json": SHA}}

# One payload per kind, with the keys (and kinds of values) its writer puts in it.
WRITTEN: dict[Kind, dict] = {
    Kind.SEAL: {"evidence": {"data/train.parquet": SHA}, "manifest_sha256": SHA, "content_sha256": SHA,
                "fingerprint": {"file": "fingerprint.npy", "sha256": SHA}, "mlflow": _MLFLOW, "commit": "c" * 40,
                "drift": {"amount": "ok"}},
    Kind.RESEAL: {"manifest_sha256": SHA, "content_sha256": SHA, "replaces": "ef" * 32, "retired_to": "holdout-1",
                  "fingerprint": {"sha256": SHA}, "fingerprints_filled": {"ef" * 32: {"sha256": SHA}},
                  "mlflow": {"uri": "sqlite:///mlflow.db", "experiment": "ratchet-ws", "run_id": "r2"}},
    Kind.BASELINE: {"commit": "c" * 40, "dev_metrics": {"net_savings": 1.0}, "refit_sd": {"net_savings": 0.01},
                    "fit": {"rows": 10}, "seconds": {"fit": 0.2}, "decisions_sha256": {"dev": SHA},
                    "evidence": {"baseline/state.json": SHA, "champion/state.json": SHA}},
    Kind.CHAMPION_REFRESH: {"experiment": "exp-0001", "seal": SHA, "decisions_sha256": {"holdout": SHA},
                            "evidence": {"champion/state.json": SHA, "reference/state.json": SHA}},
    Kind.EXPERIMENT: _EXPERIMENT,
    Kind.GATE: {**lord(gain=0.3, se=0.1, test=1, discoveries=[], fdr=0.1, exponent=1.6, to_beat=0.0,
                       budget_left=20).to_dict(), "query": 1, "seed": 7, "seal": SHA, "experiment": "exp-0001"},
    Kind.KEEP_INTENT: {"experiment": "exp-0001", "parent_commit": "p" * 40, "policy_sha256": SHA,
                       "record": {k: v for k, v in _EXPERIMENT.items() if k != "evidence"},
                       "source": "def decide(): 1"},
    Kind.CONFIG: {"changes": {"gate.budget": {"old": 20, "new": 30}}, "approved_by": "A. Reviewer", "reason": "more",
                  "commit": "c" * 40, "evidence": {"ratchet.yaml": SHA}},
    Kind.AGENT_USAGE: {"model": "claude", "input_tokens": 10, "output_tokens": 5, "cache_write_tokens": 0,
                       "cache_read_tokens": 3, "cost_usd": 0.01, "spent_usd": 0.02},
    Kind.TASK_AGENT_USAGE: {"model": "claude", "phase": "decide", "row_sets": ["dev"], "clean": True, "requests": 3,
                            "sent": 2, "cached": 1, "refused": 0, "failed": 0, "input_tokens": 30, "output_tokens": 9,
                            "cost_usd": 0.003, "spent_usd": 0.004, "stopped": ""},
    Kind.CONTAMINATION_ALARM: {"guard": "contamination", "detail": "a canary in the prompt", "blocked": True,
                               "source": "task_agent", "phase": "fit"},
    Kind.SHADOW_TRIAL: {"trial": "trial-0001", "champion": _REF, "challenger": _REF, "events_file_sha256": SHA,
                        "events_sha256": SHA, "events": 100, "quarantined": 2, "quarantine_reasons": {"late": 2},
                        "decisions_sha256": {"champion": SHA, "challenger": SHA}, "store_sha256": {"events": SHA},
                        "files_sha256": {"events.parquet": SHA}, "seal": SHA},
    Kind.SHADOW_OUTCOMES: {"trial": "trial-0001", "batch": 1, "rows": 90, "new": 88, "corrections": 2, "ignored": 3,
                           "rows_sha256": SHA, "file_sha256": SHA},
    Kind.SHADOW_RESULT: {"trial": "trial-0001", "status": "passed", "passed": True, "reasons": [], "champion": _REF,
                         "challenger": _REF, "labeled": 80, "settled": 90, "events": 100, "outcome_batches": 1,
                         "primary": {"n": 80, "gain": 0.1, "lower_bound": 0.01, "upper_bound": 0.2},
                         "drift_accepted": False, "settings": {"shadow": {}, "scoring": {}}, "look": 1},
    Kind.MODEL: {"name": "ratchet-ws-abab", "experiment": "exp-0001", "commit": "c" * 40, "policy_sha256": SHA,
                 "model_sha256": SHA, "run_id": "r3", "version": 2},
    Kind.PROMOTION: {"name": "ratchet-ws-abab", "version": 2, "previous_version": 1, "experiment": "exp-0001",
                     "commit": "c" * 40, "policy_sha256": SHA, "trial": "trial-0001", "approved_by": "A. Reviewer",
                     "reason": ""},
    Kind.ROLLBACK: {"name": "ratchet-ws-abab", "version": 1, "previous_version": None, "rolled_back_version": 2,
                    "experiment": "baseline", "commit": "b" * 40, "policy_sha256": SHA, "approved_by": "A. Reviewer",
                    "reason": "regression"},
    Kind.UPGRADE: {"from_version": "0.8", "to_version": "0.9", "approved_by": "A. Reviewer", "reason": "",
                   "after": {"kind": "seal", "seq": 1}, "identical": False, "accepted_changes": True,
                   "changes": ["exp-0001: dev net_savings moved"], "looks_changed": False,
                   "modules": {"changed": ["holdout/gate.py"], "added": [], "removed": []},
                   "replayed": [{"policy": "exp-0001", "commit": "c" * 40, "kept_under": "0.8", "recorded": {}}],
                   "sources": {"old": {"holdout/gate.py": SHA}, "new": {"holdout/gate.py": "ef" * 32}},
                   "evidence": {"champion/state.json": SHA}},
}
# Payloads the other writers of a kind make: other keys, or none where one writer leaves it out.
ALSO_WRITTEN = [
    (Kind.GATE, {**thresholdout(dev_gain=0.1, holdout_gain=0.3, threshold=0.05, sigma=0.02, gamma=0.01,
                                budget_left=5, seed=7, query=2).to_dict(), "se": 0.02, "query": 2, "seed": 7,
                 "seal": SHA, "experiment": "exp-0002"}),
    (Kind.RESEAL, {k: v for k, v in WRITTEN[Kind.RESEAL].items() if k != "fingerprints_filled"}),
    (Kind.CONTAMINATION_ALARM, {"guard": "contamination", "detail": "holdout ids", "blocked": True}),
    (Kind.MODEL, {**WRITTEN[Kind.MODEL], "recovered": "from the registry"}),
    (Kind.UPGRADE, {k: v for k, v in WRITTEN[Kind.UPGRADE].items() if k != "evidence"}),
    (Kind.EXPERIMENT, {**{k: v for k, v in _EXPERIMENT.items() if k not in ("evidence", "scorer")},
                       "status": "crashed", "kept": False, "commit": None, "gate": None}),
]


def test_every_kind_has_a_record():
    assert set(entries.KINDS) == set(Kind)
    assert set(WRITTEN) == set(Kind)


@pytest.mark.parametrize("kind", list(Kind), ids=str)
def test_a_written_payload_round_trips(kind):
    payload = copy.deepcopy(WRITTEN[kind])
    record = entries.KINDS[kind].from_payload(payload)
    assert record.to_payload() == payload
    assert canonical_json(record.to_payload()) == canonical_json(WRITTEN[kind])
    assert not record.extra, f"{kind}: keys its writer puts in the payload are not declared: {set(record.extra)}"
    assert not record.absent or kind == Kind.GATE  # one record for the three gates: each writes its own fields


@pytest.mark.parametrize("kind,payload", ALSO_WRITTEN, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_the_other_writers_payloads_round_trip(kind, payload):
    record = entries.KINDS[kind].from_payload(payload)
    assert record.to_payload() == payload
    assert not record.extra


def test_a_record_built_by_a_writer_gives_its_payload():
    alarm = entries.ContaminationAlarm(guard="contamination", detail="holdout ids", blocked=True)
    assert alarm.to_payload() == {"guard": "contamination", "detail": "holdout ids", "blocked": True}
    fields = {k: v for k, v in WRITTEN[Kind.PROMOTION].items()}
    assert entries.Promotion(**fields).to_payload() == WRITTEN[Kind.PROMOTION]


def test_an_old_payload_with_keys_missing_and_one_unknown_reads_and_round_trips():
    old = {"manifest_sha256": SHA, "mlflow": {"uri": "./mlruns"}, "commit": None, "written_by": "ratchet 0.1"}
    seal = entries.Seal.from_payload(old)
    assert seal.manifest_sha256 == SHA and seal.content_sha256 is None and seal.commit is None
    assert seal.extra == {"written_by": "ratchet 0.1"}
    assert seal.to_payload() == old
    experiment = entries.Experiment.from_payload({"experiment": "exp-0001", "kept": True, "legacy": [1, 2]})
    assert experiment.scorer is None and experiment.to_payload() == {"experiment": "exp-0001", "kept": True,
                                                                     "legacy": [1, 2]}
    # An explicit null where the writer leaves the key out is kept as it was.
    assert entries.Reseal.from_payload({"manifest_sha256": SHA, "fingerprints_filled": None}).to_payload() == {
        "manifest_sha256": SHA, "fingerprints_filled": None}


def test_a_payload_without_a_required_key_is_refused_as_a_key_error_but_a_ledger_entry_reads_as_it_is(tmp_path):
    with pytest.raises(KeyError, match="lacks trial"):
        entries.ShadowTrial.from_payload({"events": 3})
    with pytest.raises(TypeError):
        entries.ShadowTrial(events=3)  # type: ignore[call-arg]  # a writer cannot leave it out
    ledger = Ledger(tmp_path / "ledger.duckdb")
    ledger.append(Kind.SEAL, {"mani_sha256": SHA})  # as an edit of the file, or a forged append, may leave it
    forged = ledger.append(Kind.SHADOW_TRIAL, {"events": 3})
    seal, trial = entries.typed(ledger.entries()[0]), entries.view(forged, entries.ShadowTrial)
    assert isinstance(seal, entries.Seal) and seal.manifest_sha256 is None and "manifest_sha256" in seal.absent
    assert trial.trial is None and trial.to_payload() == {"events": 3}
    assert queries.model_name(ledger.entries(), "ws") == "ratchet-ws-None"  # as the audit named it before


def test_typed_view_of_ledger_entries(tmp_path):
    ledger = Ledger(tmp_path / "ledger.duckdb")
    written = [ledger.append(kind, WRITTEN[kind]) for kind in Kind]
    for entry in ledger.entries():
        record = entries.typed(entry)
        assert type(record) is entries.KINDS[Kind(entry.kind)] and record.seq == entry.seq
        assert canonical_json(record.to_payload()) == entry.payload
    assert entries.view(written[0], entries.Seal).manifest_sha256 == SHA
    with pytest.raises(TypeError):
        entries.view(written[0], entries.Gate)
    assert [t.trial for t in entries.of(ledger.entries(), entries.ShadowTrial)] == ["trial-0001"]


def _ledger(tmp_path, *payloads):
    ledger = Ledger(tmp_path / "ledger.duckdb")
    for kind, payload in payloads:
        ledger.append(kind, payload)
    return ledger.entries()


def _gate(query, left):
    return Kind.GATE, {**WRITTEN[Kind.GATE], "query": query, "budget_left": left}


def test_gate_budget_and_queries_since_the_latest_seal(tmp_path):
    es = _ledger(tmp_path, (Kind.SEAL, WRITTEN[Kind.SEAL]), _gate(1, 19), _gate(2, 18))
    assert queries.budget_left(es, 20) == 18 and [g.query for g in queries.gates(es)] == [1, 2]
    assert queries.next_query(es) == 3
    assert queries.tracking_experiment(es) == "ratchet-ws"
    es = _ledger(tmp_path, (Kind.RESEAL, WRITTEN[Kind.RESEAL]))
    assert queries.gates(es) == [] and queries.budget_left(es, 20) == 20
    assert queries.seal_in_force(es).retired_to == "holdout-1" and queries.tracking_experiment(es) == "ratchet-ws"
    assert queries.next_query(es) == 3  # numbered over the whole ledger


def test_trials_looks_batches(tmp_path):
    other = {**WRITTEN[Kind.SHADOW_TRIAL], "trial": "trial-0002"}
    es = _ledger(tmp_path, (Kind.SEAL, WRITTEN[Kind.SEAL]), (Kind.SHADOW_TRIAL, WRITTEN[Kind.SHADOW_TRIAL]),
                 (Kind.SHADOW_TRIAL, other), (Kind.SHADOW_OUTCOMES, WRITTEN[Kind.SHADOW_OUTCOMES]),
                 (Kind.SHADOW_RESULT, {**WRITTEN[Kind.SHADOW_RESULT], "trial": "trial-0002"}),
                 (Kind.SHADOW_RESULT, WRITTEN[Kind.SHADOW_RESULT]),
                 (Kind.SHADOW_RESULT, {**WRITTEN[Kind.SHADOW_RESULT], "look": 2}))
    assert queries.trial_ids(es) == ["trial-0001", "trial-0002"]
    started = queries.trial(es, "trial-0002")
    assert started is not None and started.seq == 3 and queries.trial(es, "trial-0003") is None
    assert [r.look for r in queries.looks(es, "trial-0001")] == [1, 2]
    assert [b.batch for b in queries.outcome_batches(es, "trial-0001")] == [1]
    assert queries.outcome_batches(es, "trial-0002") == []


def test_moves_models_spend_and_pending_keeps(tmp_path):
    es = _ledger(tmp_path, (Kind.SEAL, WRITTEN[Kind.SEAL]))
    assert queries.latest_move(es) is None and queries.aliases_set(es) == (None, None)
    es = _ledger(tmp_path, (Kind.MODEL, {**WRITTEN[Kind.MODEL], "experiment": "baseline", "version": 1}),
                 (Kind.MODEL, WRITTEN[Kind.MODEL]), (Kind.MODEL, {**WRITTEN[Kind.MODEL], "name": "other"}),
                 (Kind.PROMOTION, WRITTEN[Kind.PROMOTION]), (Kind.ROLLBACK, WRITTEN[Kind.ROLLBACK]),
                 (Kind.AGENT_USAGE, WRITTEN[Kind.AGENT_USAGE]), (Kind.AGENT_USAGE, {"model": "claude"}),
                 (Kind.TASK_AGENT_USAGE, WRITTEN[Kind.TASK_AGENT_USAGE]),
                 (Kind.KEEP_INTENT, WRITTEN[Kind.KEEP_INTENT]),
                 (Kind.KEEP_INTENT, {**WRITTEN[Kind.KEEP_INTENT], "experiment": "exp-0002"}),
                 (Kind.EXPERIMENT, WRITTEN[Kind.EXPERIMENT]))
    assert [m.version for m in queries.models(es, "ratchet-ws-abab")] == [1, 2] and len(queries.models(es)) == 3
    assert queries.model_name(es, "ws") == "ratchet-ws-abab"
    assert [e.kind for e in queries.moves(es)] == ["promotion", "rollback"]
    last = queries.latest_move(es)
    assert isinstance(last, entries.Rollback) and last.rolled_back_version == 2
    assert queries.aliases_set(es) == (1, None)
    assert queries.spent_usd(es, Kind.AGENT_USAGE) == pytest.approx(0.01)
    assert queries.spent_usd(es, Kind.TASK_AGENT_USAGE) == pytest.approx(0.003)
    assert [k.experiment for k in queries.pending_keeps(es)] == ["exp-0002"]
    assert queries.experiment_ids(es) == {"exp-0001"}
    assert [e.seq for e in queries.kept(es)] == [len(es)]
