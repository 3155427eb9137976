"""`ratchet shadow report`: the challenger against the acting champion on the trial's live events.

A trial passes when, on at least `shadow.min_labeled` labelled events, the challenger is not worse with confidence
on the primary metric (the one-sided lower bound of the paired difference clears `-shadow.margin`), every guardrail
and segment holds against the champion on the same events, drift of the events from the sealed holdout is below
the alarm (or acknowledged), and each policy's decision latency p99 is within `shadow.max_p99_ms`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from domains import Decisions
from holdout.ledger import Kind
from optimizer.errors import RatchetError
from optimizer.runner import exclusive
from optimizer.shadow.trial import store_of, trial_dir

EXIT = {"passed": 0, "failed": 1, "pending": 3}


@dataclass(frozen=True)
class Report:
    trial: str
    status: str  # passed | failed | pending
    reasons: tuple[str, ...]  # why it is not passed (empty when passed)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT[self.status]

    def to_json(self) -> dict:
        return {"trial": self.trial, "status": self.status, "passed": self.status == "passed",
                "reasons": list(self.reasons), **self.figures}


@exclusive
def build_report(path: Path, trial: str, *, accept_drift: str | None = None, record: bool = True) -> Report:
    from optimizer.context import load_context

    ctx = load_context(path)
    store = store_of(ctx)
    entries = ctx.ledger.entries()
    started = next((e.data for e in entries if e.kind == Kind.SHADOW_TRIAL and e.data["trial"] == trial), None)
    if started is None:
        known = ", ".join(e.data["trial"] for e in entries if e.kind == Kind.SHADOW_TRIAL) or "none yet"
        raise RatchetError(f"{trial}: no such trial in {ctx.ws.root} (trials: {known}).")
    cols, shadow, cfg = ctx.domain.columns, ctx.domain.shadow, ctx.config.shadow
    events = pd.read_parquet(trial_dir(ctx, trial) / "events.parquet")
    ids = events[cols.id].astype(str)
    decided = {role: _decisions(ctx, store, trial, role, ids) for role in ("champion", "challenger")}
    outcomes = _outcomes(store, trial, ids)
    champ, chall = decided["champion"], decided["challenger"]
    stopped = ctx.domain.acted(champ) if shadow.blocks else np.zeros(len(ids), bool)
    arrived = outcomes["label"].notna().to_numpy()
    labeled = arrived & (~stopped | outcomes["reviewed"].fillna(False).to_numpy(dtype=bool))
    figures: dict[str, Any] = {"events": int(len(ids)), "labeled": int(labeled.sum()),
                               "labeled_share": float(labeled.mean()), "outcomes_arrived": int(arrived.sum()),
                               "champion": started["champion"], "challenger": started["challenger"],
                               "agreement": _agreement(ctx, champ, chall), "quarantined": started["quarantine_reasons"],
                               "decisions": {"champion": _distribution(champ), "challenger": _distribution(chall)}}
    hard: list[str] = []
    if shadow.blocks:
        figures["selective_labels"] = _selective(ctx, champ, chall, labeled)
        figures["alerts_per_day"], over = _volume(ctx, events, champ, chall)
        if over:
            hard.append(over)
    figures["latency_ms"] = _latency(store, trial)
    for role, lat in figures["latency_ms"].items():
        if lat["p99"] > cfg.max_p99_ms:
            hard.append(f"{role} decision latency p99 {lat['p99']:.1f} ms exceeds shadow.max_p99_ms {cfg.max_p99_ms:g}")
    figures["drift"] = _drift(ctx, events)
    alarms = [c for c, v in figures["drift"].items() if v["verdict"] == "alarm"]
    if alarms and not accept_drift:
        hard.append(f"events drifted from the sealed holdout (PSI alarm: {', '.join(alarms)}); pass --accept-drift "
                    "REASON to acknowledge it")
    figures["drift_accepted"] = accept_drift or None
    soft: list[str] = []
    if not shadow.measurable:
        hard.append(f"the primary metric is not measurable in shadow for {ctx.domain.name}: {shadow.why}")
    elif labeled.sum() >= 2:
        soft += _compare(ctx, events[labeled].reset_index(drop=True), outcomes[labeled].reset_index(drop=True),
                         _subset(champ, labeled), _subset(chall, labeled), figures)
    status = "failed" if hard else ("pending" if labeled.sum() < cfg.min_labeled else ("failed" if soft else "passed"))
    reasons = tuple(hard + (soft if status == "failed" else []))
    if status == "pending":
        reasons += (f"{int(labeled.sum())} of {cfg.min_labeled} labelled events needed (shadow.min_labeled) have "
                    "arrived; join more outcomes with `ratchet shadow outcomes`",)
    result = Report(trial, status, reasons, figures)
    if record:
        _record(ctx, result, started)
    return result


def _decisions(ctx, store, trial: str, role: str, ids: pd.Series) -> Decisions:
    rows = store.query("SELECT event_id, decision FROM decisions WHERE trial = ? AND policy = ? AND source = 'trial'",
                       [trial, role]).drop_duplicates("event_id").set_index("event_id")["decision"]
    text = rows.reindex(ids.to_numpy())
    constants = json.loads((trial_dir(ctx, trial) / f"{role}.json").read_text())["constants"]
    numeric = pd.to_numeric(text, errors="coerce")
    values = numeric.to_numpy() if numeric.notna().all() else text.to_numpy(dtype=object)
    return Decisions(values, constants)


def _subset(d: Decisions, mask: np.ndarray) -> Decisions:
    return Decisions(np.asarray(d.values)[mask], d.constants)


def _outcomes(store, trial: str, ids: pd.Series) -> pd.DataFrame:
    rows = store.query("SELECT event_id, label, known_at, reviewed, extra FROM outcomes WHERE trial = ? "
                       "ORDER BY batch", [trial]).drop_duplicates("event_id").set_index("event_id")
    return rows.reindex(ids.to_numpy()).reset_index(drop=True)


def _agreement(ctx, champ: Decisions, chall: Decisions) -> dict:
    """Share of events decided alike, and the confusion table (stop/let through, or the classes decided)."""
    if ctx.domain.shadow.blocks:
        a = np.where(ctx.domain.acted(champ), "block", "allow")
        b = np.where(ctx.domain.acted(chall), "block", "allow")
    else:
        a, b = np.asarray(champ.values).astype(str), np.asarray(chall.values).astype(str)
    table = pd.crosstab(pd.Series(a, name="champion"), pd.Series(b, name="challenger"))
    return {"share": float((a == b).mean()), "table": {f"champion {i}": {f"challenger {j}": int(table.at[i, j])
                                                                         for j in table.columns} for i in table.index}}


def _distribution(d: Decisions) -> dict:
    """Quantiles of numeric decisions (scores, prices), or the share of each class decided (teams)."""
    values = pd.Series(d.values)
    if pd.api.types.is_numeric_dtype(values):
        return {f"q{int(q * 100):02d}": float(values.quantile(q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)}
    return {str(k): float(v) for k, v in values.value_counts(normalize=True).items()}


def _selective(ctx, champ: Decisions, chall: Decisions, labeled: np.ndarray) -> dict:
    """Where the two disagree, how many events carry a label: what the champion let through is observed."""
    a, b = ctx.domain.acted(champ), ctx.domain.acted(chall)
    only_chall, only_champ = b & ~a, a & ~b
    share = lambda m: float(labeled[m].mean()) if m.any() else None  # noqa: E731
    return {"challenger_blocks_champion_allows": {"events": int(only_chall.sum()), "labeled_share": share(only_chall)},
            "champion_blocks_challenger_allows": {"events": int(only_champ.sum()), "labeled_share": share(only_champ)},
            "note": "what the champion blocked is labelled only where a review looked at it, so the events the "
                    "challenger would let through but the champion blocked have fewer labels than the reverse"}


def _volume(ctx, events: pd.DataFrame, champ: Decisions, chall: Decisions) -> tuple[dict, str | None]:
    """Alerts (stopped events) per day of each policy, against the domain's capacity limit."""
    from optimizer.stages.judge import guardrail_specs

    day = pd.to_datetime(events[ctx.domain.columns.time]).dt.date.astype(str)
    frame = pd.DataFrame({"day": day, "champion": ctx.domain.acted(champ), "challenger": ctx.domain.acted(chall)})
    daily = frame.groupby("day").agg(events=("champion", "size"), champion=("champion", "sum"),
                                     challenger=("challenger", "sum"))
    capacity = next((s for s in guardrail_specs(ctx) if s.kind == "capacity"), None)
    out = {d: {"events": int(r.events), "champion": int(r.champion), "challenger": int(r.challenger)}
           for d, r in daily.iterrows()}
    if capacity is None:
        return {"days": out}, None
    over = [d for d, r in daily.iterrows() if r.challenger / max(r.events, 1) > capacity.limit]
    summary = {"days": out, "limit": {capacity.metric: capacity.limit}, "days_over_limit": over}
    why = (f"the challenger's alerts exceed the {capacity.metric} capacity limit {capacity.limit:g} on {len(over)} of "
           f"{len(out)} days (first {over[0]})") if over else None
    return summary, why


def _latency(store, trial: str) -> dict:
    lat = store.query("SELECT policy, quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.99) AS p99 "
                      "FROM decisions WHERE trial = ? AND source = 'trial' GROUP BY policy", [trial])
    return {r.policy: {"p50": float(r.p50), "p99": float(r.p99)} for r in lat.itertuples()}


def _drift(ctx, events: pd.DataFrame) -> dict:
    """PSI (and KS) of each numeric decision-time column, events against the sealed holdout. Identifiers (the id, the
    entity and the history keys: new customers and terminals arrive by design) are names, not a distribution."""
    from guards.drift import drift_report

    cols = ctx.domain.columns
    reference = ctx.domain.policy_view(ctx.holdout, with_label=False)
    names = {cols.id, cols.time, cols.entity, *cols.history_keys}
    numeric = [c for c in reference.columns if c not in names and c in events.columns
               and pd.api.types.is_numeric_dtype(reference[c])]
    return drift_report(reference, events, numeric, watch=ctx.config.seal.drift_watch,
                        alarm=ctx.config.seal.drift_alarm)


def _compare(ctx, events: pd.DataFrame, outcomes: pd.DataFrame, champ: Decisions, chall: Decisions,
             figures: dict) -> list[str]:
    """Score both on the labelled events; the paired difference of the primary, guardrails, segments."""
    from guards.guardrails import check_guardrails
    from guards.segments import check_segments
    from optimizer.stages.judge import guardrail_specs

    cols, cfg, d = ctx.domain.columns, ctx.config.shadow, ctx.config.decision
    extra = pd.DataFrame([json.loads(x) if isinstance(x, str) else {} for x in outcomes["extra"]])
    rows = events.assign(**{cols.label: outcomes["label"].to_numpy()})
    for col in cols.outcome_only:
        rows[col] = extra[col].to_numpy() if col in extra.columns else np.nan
    if pd.api.types.is_numeric_dtype(ctx.dev[cols.label]):  # stored as text
        rows[cols.label] = pd.to_numeric(rows[cols.label]).astype(ctx.dev[cols.label].dtype)
    params = ctx.config.scoring.model_dump()
    a, b = ctx.domain.score(rows, champ, params), ctx.domain.score(rows, chall, params)
    sign = 1.0 if ctx.domain.higher_is_better else -1.0
    diff = sign * (b.contributions - a.contributions)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    low = float(diff.mean() - stats.norm.ppf(cfg.confidence) * se)
    figures["metrics"] = {"champion": dict(a.metrics), "challenger": dict(b.metrics)}
    figures["primary"] = {"metric": ctx.domain.primary, "gain": float(diff.mean()), "se": se,
                          "lower_bound": low, "confidence": cfg.confidence, "margin": cfg.margin}
    problems = []
    if not low >= -cfg.margin:
        problems.append(f"{ctx.domain.primary}: the challenger is not shown to be not worse (gain {diff.mean():+.4f}, "
                        f"{cfg.confidence:.0%} lower bound {low:+.4f} < -{cfg.margin:g})")
    # Guardrails hold against the acting champion on the same events (it is the baseline a trial compares with).
    rails = check_guardrails(dict(b.metrics), dict(a.metrics), dict(a.metrics), guardrail_specs(ctx))
    segments = check_segments(b.contributions, a.contributions, ctx.domain.segment_of(rows),
                              higher_is_better=ctx.domain.higher_is_better, min_rows=d.segment_min_rows,
                              tolerance=d.segment_tolerance, confidence=d.confidence, seed=ctx.config.seed)
    figures["guards"] = {r.name: {"passed": r.passed, "detail": r.detail} for r in (rails, segments)}
    return problems + [f"{r.name}: {r.detail}" for r in (rails, segments) if not r.passed]


def _record(ctx, result: Report, started: dict) -> None:
    """The report in the ledger (the promotion gate reads it) and as an MLflow run."""
    from holdout.records import Tag
    from optimizer.loop import open_tracker

    ctx.ledger.append(Kind.SHADOW_RESULT, {"trial": result.trial, "status": result.status,
                                           "passed": result.status == "passed", "reasons": list(result.reasons),
                                           "champion": started["champion"], "challenger": started["challenger"],
                                           "labeled": result.figures["labeled"], "events": result.figures["events"],
                                           "drift_accepted": result.figures["drift_accepted"]})
    tracker = open_tracker(ctx)
    with tracker.run(f"shadow {result.trial}", tags={Tag.KIND: "shadow", Tag.SEAL: ctx.manifest_sha256,
                                                     Tag.COMMIT: started["challenger"]["commit"]}):
        metrics = {"events": result.figures["events"], "labeled": result.figures["labeled"],
                   "agreement": result.figures["agreement"]["share"], "passed": float(result.status == "passed")}
        if "primary" in result.figures:
            metrics.update(primary_gain=result.figures["primary"]["gain"],
                           primary_lower_bound=result.figures["primary"]["lower_bound"])
        for role, lat in result.figures["latency_ms"].items():
            metrics.update({f"{role}_latency_p50_ms": lat["p50"], f"{role}_latency_p99_ms": lat["p99"]})
        tracker.mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        tracker.log_json(result.to_json(), "shadow_report.json")
