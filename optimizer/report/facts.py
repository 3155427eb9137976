"""The numbers behind the run report and `ratchet history`, read from the ledger and the workspace's files.

Nothing here reads the holdout: its only figures are the gate's own answers, Ladder-rounded (Blum & Hardt 2015),
and the seal's facts (hashes, time, rows and how many canaries, never their values). Segment metrics are dev's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from guards import GuardName
from holdout.gate import ladder_round
from holdout.ledger import Entry, Kind
from optimizer.records.experiment_record import ExperimentStatus


def at_gate(record: Any) -> bool:
    """A reverted experiment that passed every dev guard and was stopped by the holdout gate."""
    return record.status == ExperimentStatus.REVERTED and record.verdict.failed_guards == (GuardName.HOLDOUT_GATE,)


def gate_answer(gate: Mapping[str, Any] | None) -> float | None:
    """The holdout gate's answer as a person may see it: rounded down to the gate's Ladder step."""
    if not gate or gate.get("answer") is None:
        return None
    return ladder_round(float(gate["answer"]), float(gate.get("step") or 0.0))


def records(entries: Iterable[Entry]) -> list[Any]:
    """Every experiment the ledger holds, in ledger order, as validated ExperimentRecords."""
    from optimizer.records.experiment_record import ExperimentRecord

    return [ExperimentRecord.from_payload({**e.data, "ledger_seq": e.seq}) for e in entries
            if e.kind == Kind.EXPERIMENT]


@dataclass(frozen=True)
class Point:
    """One experiment on the trajectory."""

    number: int
    experiment: str
    outcome: str  # its status: kept, would_keep, reverted or crashed (records.experiment_record.ExperimentStatus)
    at_gate: bool  # reverted by the holdout gate after every dev guard passed
    value: float | None  # its dev value of the primary metric (None when it crashed before scoring)
    best: float | None  # the champion's dev value after it: the running best of what was kept
    hypothesis: str
    failed_guards: tuple[str, ...]
    gate: float | None  # the gate's Ladder-rounded answer, when the holdout was asked


def trajectory(recs: Iterable[Any], *, primary: str, baseline: float | None) -> tuple[Point, ...]:
    best, out = baseline, []
    for r in recs:
        value = r.dev_metrics.get(primary)
        if r.kept and value is not None:
            best = float(value)
        out.append(Point(r.number, r.experiment, str(r.status), at_gate(r), None if value is None else float(value),
                         best, r.hypothesis, r.verdict.failed_guards, gate_answer(r.gate)))
    return tuple(out)


@dataclass(frozen=True)
class Rejection:
    guard: str
    count: int
    last_experiment: str
    last_reason: str


def rejections(recs: Iterable[Any]) -> tuple[Rejection, ...]:
    """Per guard: how many experiments it refused, and its last reason (most refusals first)."""
    seen: dict[str, list] = {}
    for r in recs:
        for failure in r.verdict.failures:
            count = seen.get(failure.name, [0])[0]
            seen[failure.name] = [count + 1, r.experiment, failure.detail]
    rows = [Rejection(g, c, e, d) for g, (c, e, d) in seen.items()]
    return tuple(sorted(rows, key=lambda x: (-x.count, x.guard)))


@dataclass(frozen=True)
class GuardrailSeries:
    metric: str
    kind: str
    higher_is_better: bool
    points: tuple[tuple[int, float], ...]  # (experiment number, dev value)
    limit: float | None  # the absolute limit, when the guardrail has one
    tolerance_bound: float | None  # harm: the baseline's value moved by the tolerance (the bound for every step)
    baseline: float | None


def guardrails(recs: Iterable[Any], specs: Iterable[Any], baseline: Mapping[str, float]) -> tuple[GuardrailSeries, ...]:
    recs = list(recs)
    out = []
    for spec in specs:
        base = baseline.get(spec.metric)
        bound = None
        if spec.tolerance is not None and base is not None:
            bound = base - spec.tolerance if spec.higher_is_better else base + spec.tolerance
        points = tuple((r.number, float(r.dev_metrics[spec.metric])) for r in recs if spec.metric in r.dev_metrics)
        out.append(GuardrailSeries(spec.metric, spec.kind, spec.higher_is_better, points, spec.limit, bound, base))
    return tuple(out)


@dataclass(frozen=True)
class SegmentRow:
    family: str
    segment: str
    rows: int
    baseline: float
    champion: float

    @property
    def change(self) -> float:
        return self.champion - self.baseline


def segments(base: Mapping[str, Mapping[str, Mapping[str, float]]],
             champ: Mapping[str, Mapping[str, Mapping[str, float]]], primary: str) -> tuple[SegmentRow, ...]:
    """The primary metric per dev segment, champion vs baseline (ScoreReport.segments of each)."""
    return tuple(SegmentRow(family, seg, int(figures.get("n", 0)), float(figures[primary]),
                            float(champ[family][seg][primary]))
                 for family, segs in base.items() for seg, figures in segs.items()
                 if primary in figures and primary in champ.get(family, {}).get(seg, {}))


@dataclass(frozen=True)
class Holdout:
    """The seal and the gate, as a report may show them."""

    sealed_at: str
    resealed: int
    domain: str
    rows: int
    canaries: int
    manifest_sha256: str
    content_sha256: str
    files: Mapping[str, str]
    boundaries: Mapping[str, str]
    gate_kind: str
    budget: int
    used: int
    drift: Mapping[str, Any]  # reports/drift.json: per column psi, ks and verdict, with the bands

    @property
    def left(self) -> int:
        return max(self.budget - self.used, 0)


def holdout(root: Path, manifest: Mapping[str, Any], entries: list[Entry], gate: Any) -> Holdout:
    marks = [i for i, e in enumerate(entries) if e.kind in (Kind.SEAL, Kind.RESEAL)]
    seals = [entries[i] for i in marks]
    used = sum(e.kind == Kind.GATE for e in entries[(marks or [0])[-1]:])  # a reseal starts a fresh budget
    drift_file = root / "reports" / "drift.json"
    drift = json.loads(drift_file.read_text()) if drift_file.is_file() else {}
    return Holdout(seals[-1].time if seals else "", len(seals) - 1 if seals else 0, str(manifest.get("domain", "")),
                   int(manifest.get("rows", 0)), len(manifest.get("canaries", ())),
                   seals[-1].data.get("manifest_sha256", "") if seals else "", str(manifest.get("content_sha256", "")),
                   dict(manifest.get("files", {})), dict(manifest.get("boundaries", {})), str(gate.kind),
                   int(gate.budget), used, drift)


@dataclass(frozen=True)
class Kept:
    experiment: str
    hypothesis: str
    diff: str
    metrics: Mapping[str, float]
    gate: float | None
    passed: tuple[str, ...]
    commit: str


def kept_changes(root: Path, recs: Iterable[Any]) -> tuple[Kept, ...]:
    out = []
    for r in recs:
        if r.kept:
            patch = root / "experiments" / r.experiment / "diff.patch"
            out.append(Kept(r.experiment, r.hypothesis, patch.read_text() if patch.is_file() else "(diff missing)",
                            dict(r.dev_metrics), gate_answer(r.gate), tuple(x.name for x in r.verdict.results),
                            r.commit or ""))
    return tuple(out)


@dataclass(frozen=True)
class Event:
    """A shadow trial, its result, a promotion, a rollback or a config change, as one line of the story."""

    seq: int
    time: str
    kind: str
    what: str
    approved_by: str


def events(entries: Iterable[Entry]) -> tuple[Event, ...]:
    from holdout.audit import describe_change

    out = []
    for e in entries:
        d = e.data
        if e.kind == Kind.SHADOW_TRIAL:
            what = (f"{d['trial']}: {_ref(d['challenger'])} shadows {_ref(d['champion'])} on {d['events']:,} events "
                    f"({d['quarantined']:,} quarantined)")
        elif e.kind == Kind.SHADOW_RESULT:
            look = f" look {d['look']}" if d.get("look") else ""
            what = f"{d['trial']}{look}: {d['status']}" + (f" ({'; '.join(d['reasons'])})" if d.get("reasons") else "")
        elif e.kind in (Kind.PROMOTION, Kind.ROLLBACK):
            what = (f"champion -> version {d.get('version')} ({_ref(d)})"
                    + (f", previous version {d['previous_version']}" if d.get("previous_version") else "")
                    + (f", on {d['trial']}" if d.get("trial") else "") + (f": {d['reason']}" if d.get("reason") else ""))
        elif e.kind == Kind.CONFIG:
            what = describe_change(e)
        elif e.kind == Kind.UPGRADE:
            modules = d.get("modules") or {}
            what = (f"ratchet {d.get('from_version')} -> {d.get('to_version')}: "
                    + ", ".join(f"{len(v)} module(s) {k}" for k, v in modules.items() if v)
                    + f"; {len(d.get('replayed', ()))} policies replayed, "
                    + ("identical" if d.get("identical") else f"{len(d.get('changes', ()))} change(s) accepted: "
                       + "; ".join(d.get("changes", ())[:3]))
                    + (f": {d['reason']}" if d.get("reason") else ""))
        else:
            continue
        out.append(Event(e.seq, e.time, str(e.kind), what, str(d.get("approved_by", ""))))
    return tuple(out)


def _ref(d: Mapping[str, Any]) -> str:
    return str(d.get("experiment") or str(d.get("commit", ""))[:12] or "?")
