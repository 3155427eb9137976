"""`ratchet shadow report`: the challenger against the acting champion on the trial's live events.

A trial passes when, on at least `shadow.min_labeled` labelled events, the challenger is not worse with confidence
on the primary metric (the one-sided lower bound of the paired difference clears `-shadow.margin`), every guardrail
and segment holds against the champion on the same events, drift of the events from the sealed holdout is below
the alarm (or acknowledged), and each policy's decision latency p99 is within `shadow.max_p99_ms`.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains import Decisions
from holdout import queries
from holdout.entries import ShadowResult
from holdout.ledger import Kind
from optimizer import __version__ as VERSION
from optimizer.base.errors import RatchetError
from optimizer.release.shadow import compare
from optimizer.release.shadow.live import live_metrics
from optimizer.release.shadow.trial import store_of, trial_dir
from optimizer.workspace.runner import exclusive

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
    from optimizer.records.context import load_context

    ctx = load_context(path)
    entries = ctx.ledger.entries()
    start = queries.trial(entries, trial)
    if start is None:
        known = ", ".join(queries.trial_ids(entries)) or "none yet"
        raise RatchetError(f"{trial}: no such trial in {ctx.ws.root} (trials: {known}).")
    from optimizer.release.shadow.integrity import verify_trial

    verify_trial(ctx, trial, entries)  # the store's rows and the trial's files are the ones the ledger bound
    started = start.to_payload()  # compute and the look read the start as its payload
    result = compute(ctx, trial, started, accept_drift=accept_drift)
    if record:
        _record(ctx, result, started, entries)
    return result


def compute(ctx, trial: str, started: dict, *, accept_drift: str | None = None, batches: int | None = None,
            live: bool = True) -> Report:
    """The report of `trial` on the outcomes of its first `batches` batches (all: None); writes nothing. `live`:
    with each policy's live metrics (a bootstrap; a replay of the verdict leaves them out)."""
    store = store_of(ctx)
    cols, shadow, cfg = ctx.domain.columns, ctx.domain.shadow, ctx.config.shadow
    events = pd.read_parquet(trial_dir(ctx, trial) / "events.parquet")
    ids = events[cols.id].astype(str)
    decided = {role: _decisions(ctx, store, trial, role, ids) for role in ("champion", "challenger")}
    outcomes = _outcomes(store, trial, ids, batches)
    champ, chall = decided["champion"], decided["challenger"]
    pair = compare.paired(ctx, events, outcomes, champ, chall)
    figures: dict[str, Any] = {"events": int(len(ids)), "labeled": int(pair.observed.sum()),
                               "labeled_share": float(pair.observed.mean()),
                               "outcomes_arrived": int(outcomes["label"].notna().sum()),
                               "settled": int(pair.settled.sum()), "outcome_batches": _batches(outcomes),
                               "corrections": int(outcomes["corrected"].sum()),
                               "champion": started["champion"], "challenger": started["challenger"],
                               "agreement": _agreement(ctx, champ, chall), "quarantined": started["quarantine_reasons"],
                               "decisions": {"champion": _distribution(champ), "challenger": _distribution(chall)}}
    hard: list[str] = []
    if shadow.blocks:
        figures["selective_labels"] = _selective(ctx, champ, chall, pair.observed)
        figures["alerts_per_day"], over = _volume(ctx, events, champ, chall)
        if over:
            hard.append(over)
    figures["latency_ms"] = _latency(store, trial)
    unmeasured = [role for role in ("champion", "challenger") if role not in figures["latency_ms"]]
    if unmeasured:
        hard.append(f"no single-event latency was measured for the {' and the '.join(unmeasured)} "
                    "(shadow.latency_sample was 0 when the trial started): the p99 limit cannot be checked")
    for role, lat in figures["latency_ms"].items():
        if lat["p99"] > cfg.max_p99_ms:
            hard.append(f"{role} decision latency p99 {lat['p99']:.1f} ms exceeds shadow.max_p99_ms {cfg.max_p99_ms:g}")
    figures["drift"] = _drift(ctx, events)
    alarms = [c for c, v in figures["drift"].items() if v["verdict"] == "alarm"]
    if alarms and not accept_drift:
        hard.append(f"events drifted from the sealed holdout (PSI alarm: {', '.join(alarms)}); pass --accept-drift "
                    "REASON to acknowledge it")
    figures["drift_accepted"] = accept_drift or None
    figures["interim"] = compare.interim(pair)
    if live and shadow.measurable:  # beside each policy's offline figures; not read by the verdict
        figures["live_metrics"] = live_metrics(ctx, events, outcomes, pair, decided,
                                                {role: started[role] for role in decided})
    if not shadow.measurable:
        hard.append(f"the primary metric is not measurable in shadow for {ctx.domain.name}: {shadow.why}")
        return _verdict(trial, "failed", hard, figures)
    alpha, tuned = 1.0 - cfg.confidence, max(cfg.min_labeled, len(ids))  # fixed when the trial started
    measured = compare.primary(pair, review_rate=cfg.review_rate, min_reviewed=cfg.min_changed, alpha=alpha,
                               tuned_for=tuned)
    p = figures["primary"] = {"metric": ctx.domain.primary, **measured, "confidence": cfg.confidence,
                              "margin": cfg.margin}
    figures["cost_range"] = compare.cost_range(ctx, events, outcomes, champ, chall, alpha=alpha, tuned_for=tuned,
                                               margin=cfg.margin)
    if hard:
        return _verdict(trial, "failed", hard, figures)
    if p["n"] < cfg.min_labeled:
        return _verdict(trial, "pending", [
            f"{p['n']} of {cfg.min_labeled} settled events needed (shadow.min_labeled) are in; the interim view "
            f"bounds what is at stake ({figures['interim']['disagreements']} disagreements); join more outcomes with "
            "`ratchet shadow outcomes`"], figures)
    if p["changed"] < cfg.min_changed:
        return _verdict(trial, "pending", [
            f"{p['changed']} of the {p['n']} settled events are decided differently by the two, and a verdict needs "
            f"{cfg.min_changed} (shadow.min_changed): the variance of the gain comes from them; join more outcomes"],
            figures)
    soft = _guards(ctx, events, outcomes, pair, champ, chall, figures)
    gain = (f"gain {p['gain']:+.4f}, anytime {cfg.confidence:.0%} bounds {p['lower_bound']:+.4f} to "
            f"{p['upper_bound']:+.4f}")
    bar = f"{0.0 - cfg.margin:g}"
    if p["upper_bound"] < -cfg.margin:
        return _verdict(trial, "failed", [f"{ctx.domain.primary}: the challenger is shown worse ({gain}; even the "
                                          f"best case's upper bound is below {bar})", *soft], figures)
    if soft:
        return _verdict(trial, "failed", soft, figures)
    if p["lower_bound"] >= -cfg.margin:
        return _verdict(trial, "passed", [], figures)
    return _verdict(trial, "pending", [
        f"{ctx.domain.primary}: not decided yet ({gain}; passes once the lower bound reaches {bar}, fails once the "
        f"upper bound falls below it); join more outcomes with `ratchet shadow outcomes`"], figures)


def _verdict(trial: str, status: str, reasons: list[str], figures: dict) -> Report:
    return Report(trial, status, tuple(reasons), figures)


def _batches(outcomes: pd.DataFrame) -> int:
    return int(outcomes["batch"].max()) if outcomes["batch"].notna().any() else 0


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


def _outcomes(store, trial: str, ids: pd.Series, batches: int | None = None) -> pd.DataFrame:
    """Each event's outcome as of batch `batches` (all: None): the latest batch's, a later batch correcting an
    earlier one; `corrected` marks those an earlier batch had said otherwise."""
    sql = "SELECT batch, event_id, label, known_at, reviewed, extra FROM outcomes WHERE trial = ?"
    rows = store.query(sql + ("" if batches is None else " AND batch <= ?") + " ORDER BY batch",
                       [trial] if batches is None else [trial, batches])
    firsts = rows.drop_duplicates("event_id", keep="first").set_index("event_id")
    rows = rows.drop_duplicates("event_id", keep="last").set_index("event_id")
    firsts = firsts.reindex(rows.index)
    rows = rows.assign(corrected=(firsts["label"].astype(str) != rows["label"].astype(str))
                       | (firsts["reviewed"] != rows["reviewed"]))
    out = rows.reindex(ids.to_numpy()).reset_index(drop=True)
    return out.assign(corrected=out["corrected"].fillna(False).astype(bool))


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
    from optimizer.loop.stages.judge import guardrail_specs

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
    """Per policy, p50 and p99 of its single-event calls (the events decided only in a batch have no latency)."""
    lat = store.query("SELECT policy, count(latency_ms) AS n, quantile_cont(latency_ms, 0.5) AS p50, "
                      "quantile_cont(latency_ms, 0.99) AS p99 FROM decisions WHERE trial = ? AND source = 'trial' "
                      "GROUP BY policy", [trial])
    return {r.policy: {"p50": float(r.p50), "p99": float(r.p99), "calls": int(r.n)} for r in lat.itertuples()
            if r.n > 0}


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


def _guards(ctx, events: pd.DataFrame, outcomes: pd.DataFrame, pair, champ: Decisions, chall: Decisions,
            figures: dict) -> list[str]:
    """Guardrails (point limits, on the settled events whose label is observed) and segments (a segment fails only
    when even its best case is shown hurt by more than the tolerance, with an anytime bound, Bonferroni over the
    segments) against the acting champion on the same events."""
    from guards.guardrails import check_guardrails
    from guards.segments import check_segments
    from optimizer.loop.stages.judge import guardrail_specs

    cfg, d = ctx.config.shadow, ctx.config.decision
    seen = pair.settled & pair.observed
    rows = compare.rows_with(ctx, events[seen].reset_index(drop=True), outcomes[seen].reset_index(drop=True))
    params = ctx.config.scoring.model_dump()
    a, b = ctx.domain.score(rows, _subset(champ, seen), params), ctx.domain.score(rows, _subset(chall, seen), params)
    figures["metrics"] = {"champion": dict(a.metrics), "challenger": dict(b.metrics), "events": int(seen.sum())}
    rails = check_guardrails(dict(b.metrics), dict(a.metrics), dict(a.metrics), guardrail_specs(ctx))
    _, best, _ = compare.evidence(pair, cfg.review_rate, cfg.min_changed)
    use = pair.settled if pair.bounded else seen
    segments = check_segments(best, np.zeros_like(best), {k: np.asarray(v)[use] for k, v in
                                                          ctx.domain.segment_of(events).items()},
                              higher_is_better=True, min_rows=d.segment_min_rows, tolerance=d.segment_tolerance,
                              confidence=cfg.confidence, seed=ctx.config.seed, anytime_for=cfg.min_labeled)
    figures["guards"] = {r.name: {"passed": r.passed, "detail": r.detail} for r in (rails, segments)}
    return [f"{r.name}: {r.detail}" for r in (rails, segments) if not r.passed]


def _record(ctx, result: Report, started: dict, entries: list) -> None:
    """A look at the trial: a ledger entry (the promotion gate reads the last; the audit replays each) and a step of
    the trial's one MLflow report run. Reading the same outcomes again with the same verdict records nothing."""
    from holdout.records import Tag
    from optimizer.tracking.runs import open_tracker

    f = result.figures
    primary = ({k: _finite(f["primary"][k]) for k in ("n", "gain", "lower_bound", "upper_bound")}
               if "primary" in f else None)
    look = {"trial": result.trial, "status": result.status, "passed": result.status == "passed",
            "reasons": list(result.reasons), "champion": started["champion"], "challenger": started["challenger"],
            "labeled": f["labeled"], "settled": f["settled"], "events": f["events"],
            "outcome_batches": f["outcome_batches"], "primary": primary, "drift_accepted": f["drift_accepted"],
            "settings": {"shadow": ctx.config.shadow.model_dump(mode="json"),
                         "scoring": ctx.config.scoring.model_dump(mode="json")}}
    looks = queries.looks(entries, result.trial)
    if looks and all(looks[-1].to_payload().get(k) == v for k, v in look.items()):
        return
    number = len(looks) + 1
    ctx.ledger.append(Kind.SHADOW_RESULT, ShadowResult(**look, look=number).to_payload())
    tracker = open_tracker(ctx)
    found = tracker.client.search_runs([tracker.experiment_id], max_results=1, filter_string=(
        f"tags.`{Tag.KIND}` = 'shadow_report' AND tags.`{Tag.TRIAL}` = '{result.trial}'"))
    run = (tracker.mlflow.start_run(run_id=found[0].info.run_id) if found else
           tracker.mlflow.start_run(experiment_id=tracker.experiment_id, run_name=f"shadow {result.trial} report",
                                    tags={Tag.KIND: "shadow_report", Tag.TRIAL: result.trial, Tag.VERSION: VERSION,
                                          Tag.SEAL: ctx.manifest_sha256, Tag.COMMIT: started["challenger"]["commit"]}))
    with run:
        metrics = {"events": f["events"], "labeled": f["labeled"], "settled": f["settled"],
                   "agreement": f["agreement"]["share"], "passed": float(result.status == "passed")}
        if primary:
            metrics.update(primary_gain=primary["gain"], primary_lower_bound=primary["lower_bound"],
                           primary_upper_bound=primary["upper_bound"])
        for role, lat in f["latency_ms"].items():
            metrics.update({f"{role}_latency_p50_ms": lat["p50"], f"{role}_latency_p99_ms": lat["p99"]})
        for role in ("champion", "challenger"):
            metrics.update({f"{role}_live_{name}": m["value"]
                            for name, m in f.get("live_metrics", {}).get(role, {}).items()})
        tracker.mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)},
                                   step=number)
        tracker.mlflow.set_tag("ratchet.status", result.status)
        tracker.log_json(result.to_json(), "shadow_report.json")
        tracker.log_text(json.dumps(result.to_json(), indent=2, sort_keys=True, default=str),
                         f"looks/look-{number:04d}.json")


def replay_looks(ctx, trial: str, entries: list, *, last_only: bool = False, after: int = 0) -> list[str]:
    """Every recorded look at `trial` (or its last) recomputed from the store as it stood then (its first
    `outcome_batches` batches) under the settings it was made with; a line per look whose verdict or bounds differ.
    `after`: only looks recorded after that ledger entry (an upgrade that accepted changed looks)."""
    start = queries.trial(entries, trial)
    if start is None:
        raise RatchetError(f"{trial}: no such trial in the ledger")  # callers name trials the ledger started
    started = start.to_payload()
    looks = [r.to_payload() for r in queries.looks(entries, trial) if (r.seq or 0) > after]
    problems = []
    for look in looks[-1:] if last_only else looks:
        if "settings" not in look:  # recorded before looks carried their settings: nothing to replay them with
            continue
        at = copy.copy(ctx)
        at.config = ctx.config.model_copy(update={
            "shadow": ctx.config.shadow.model_copy(update=look["settings"]["shadow"]),
            "scoring": ctx.config.scoring.model_copy(update=look["settings"]["scoring"])})
        again = compute(at, trial, started, accept_drift=look["drift_accepted"], batches=look["outcome_batches"],
                        live=False)
        bounds = ({k: _finite(again.figures["primary"][k]) for k in ("n", "gain", "lower_bound", "upper_bound")}
                  if "primary" in again.figures else None)
        if again.status != look["status"] or not _same(bounds, look["primary"]):
            problems.append(f"{trial} look {look.get('look', '?')}: recorded {look['status']} {look['primary']}, "
                            f"replayed {again.status} {bounds}")
    return problems


def _same(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return all((a[k] is None and b.get(k) is None) or (a[k] is not None and b.get(k) is not None
                                                       and np.isclose(a[k], b[k], rtol=1e-9, atol=1e-12)) for k in a)


def _finite(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None
