"""The ledger in spans: the sources in force, what a replay must reproduce, and the upgrade entries the audit refuses."""
from __future__ import annotations

from holdout import upgrades
from holdout.hashing import canonical_json
from holdout.ledger import Entry, Kind

OLD = {"guards/significance.py": "a" * 64, "holdout/gate.py": "b" * 64}
NEW = {"guards/significance.py": "c" * 64, "holdout/gate.py": "b" * 64, "optimizer/workspace/layout.py": "d" * 64}
MANIFEST = {"tool_version": "0.1.0", "scorer_sha256": OLD}
DEV = {"net_savings": 1.25, "recall": 0.5}


def _entry(seq: int, kind: str, data: dict) -> Entry:
    return Entry(seq, "2026-12-07T00:00:00Z", kind, canonical_json(data), "0" * 64, f"{seq:064d}")


def _ledger(*extra: Entry) -> list[Entry]:
    return [_entry(1, Kind.SEAL, {"manifest_sha256": "m1"}),
            _entry(2, Kind.BASELINE, {"commit": "c0", "dev_metrics": {"net_savings": 0.0},
                                      "decisions_sha256": {"dev": "d0", "holdout": "h0"}}),
            _entry(3, Kind.EXPERIMENT, {"experiment": "exp-0001", "kept": True, "commit": "c1", "dev_metrics": DEV,
                                        "decisions_sha256": {"dev": "d1", "holdout": "h1"}, "gate": {"seal": "m1"},
                                        "scorer": {"version": "0.1.0", "sources_sha256": upgrades.digest(OLD)}}),
            *extra]


def _upgrade(seq: int, before: list[Entry], *, identical: bool = True, dev: dict | None = None,
             old: dict | None = None, recorded: dict | None = None) -> Entry:
    want = upgrades.expected(before, "c1")
    item = {"policy": "exp-0001", "commit": "c1", "decisions_sha256": {"dev": "d1", "holdout": "h1"},
            "dev_metrics": dev or DEV, "seal": "m1", "recorded": recorded if recorded is not None else want}
    return _entry(seq, Kind.UPGRADE, {"from_version": "0.1.0", "to_version": "0.2.0", "identical": identical,
                                      "accepted_changes": not identical, "approved_by": "A. Reviewer",
                                      "sources": {"old": old or OLD, "new": NEW}, "replayed": [item],
                                      "changes": [] if identical else ["exp-0001: dev net_savings moved"]})


def test_the_seal_then_each_upgrade_is_in_force():
    entries = _ledger()
    assert upgrades.in_force(entries, MANIFEST).sources == OLD
    up = _upgrade(4, entries)
    span = upgrades.in_force([*entries, up], MANIFEST)
    assert span.sources == NEW and span.version == "0.2.0" and "approved by A. Reviewer" in span.name


def test_what_a_policy_must_reproduce_follows_the_ledger():
    entries = _ledger()
    assert upgrades.expected(entries, "c1") == {"decisions_sha256": {"dev": "d1", "holdout": "h1"}, "dev_metrics": DEV}
    resealed = [*entries, _entry(4, Kind.RESEAL, {"manifest_sha256": "m2"})]
    assert upgrades.expected(resealed, "c1")["decisions_sha256"] == {"dev": "d1"}  # its holdout was retired
    refreshed = [*resealed, _entry(5, Kind.CHAMPION_REFRESH, {"experiment": "exp-0001", "seal": "m2",
                                                              "decisions_sha256": {"dev": "d1", "holdout": "h2"}})]
    assert upgrades.expected(refreshed, "c1")["decisions_sha256"] == {"dev": "d1", "holdout": "h2"}
    moved = _upgrade(4, entries, identical=False, dev={"net_savings": 1.3, "recall": 0.5})
    assert upgrades.expected([*entries, moved], "c1")["dev_metrics"] == {"net_savings": 1.3, "recall": 0.5}
    assert upgrades.expected(entries, "unknown") == {}


def test_a_faithful_upgrade_has_no_problem():
    entries = _ledger()
    ledger = [*entries, _upgrade(4, entries)]
    assert upgrades.problems(ledger, upgrades.spans(".", ledger, MANIFEST)) == []


def test_an_upgrade_that_says_identical_but_moved_is_refused():
    entries = _ledger()
    ledger = [*entries, _upgrade(4, entries, dev={"net_savings": 1.26, "recall": 0.5})]
    found = upgrades.problems(ledger, upgrades.spans(".", ledger, MANIFEST))
    assert any("upgrade entry 4 says the replay was identical" in p and "net_savings" in p for p in found), found


def test_edited_figures_an_unaccepted_change_and_a_wrong_start_are_refused():
    entries = _ledger()
    edited = _upgrade(4, entries, recorded={"dev_metrics": {"net_savings": 9.0}})
    found = upgrades.problems([*entries, edited], upgrades.spans(".", [*entries, edited], MANIFEST))
    assert any("its figures were edited" in p for p in found), found
    wrong_start = _upgrade(4, entries, old={**OLD, "holdout/gate.py": "e" * 64})
    found = upgrades.problems([*entries, wrong_start], upgrades.spans(".", [*entries, wrong_start], MANIFEST))
    assert any("not in force since seal entry 1" in p and "holdout/gate.py" in p for p in found), found
    payload = {**_upgrade(4, entries, identical=False).data, "accepted_changes": False}
    unaccepted = _entry(4, Kind.UPGRADE, payload)
    found = upgrades.problems([*entries, unaccepted], upgrades.spans(".", [*entries, unaccepted], MANIFEST))
    assert any("nobody accepted" in p for p in found), found


def test_an_experiment_judged_by_other_sources_than_its_span_is_found():
    entries = _ledger()
    up = _upgrade(4, entries)
    late = _entry(5, Kind.EXPERIMENT, {"experiment": "exp-0002", "kept": False,
                                       "scorer": {"version": "0.1.0", "sources_sha256": upgrades.digest(OLD)}})
    ledger = [*entries, up, late]
    found = upgrades.problems(ledger, upgrades.spans(".", ledger, MANIFEST))
    assert found == [f"ledger entry 5 (exp-0002) was judged by scorer sources {upgrades.digest(OLD)[:12]}, not those "
                     "in force since upgrade entry 4 (ratchet 0.2.0, approved by A. Reviewer)"]
