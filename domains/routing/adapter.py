"""The support-routing domain's scorer side (locked: a candidate never sees or edits this file).

A policy names a team per ticket; the scorer replays the evaluated stream through a queue
simulation (queue.py) with the configured agents per team. Primary: SLA-weighted mean time to
resolution in hours (lower is better; urgent tickets weigh most). Guardrails: no team's
utilization above a bound (dumping tickets on one team fails), the high-priority misroute rate,
and the gap in resolution time between customer tiers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from domains._importing import TimeReading
from domains.contract import (
    Columns,
    Decisions,
    DemoSettings,
    Domain,
    GuardrailSpec,
    ImportKeys,
    ScoreReport,
    ScoringSettings,
    ShadowSettings,
)

from .importer import MAPPING_KEYS, REQUIRED_KEYS
from .queue import QueueResult, simulate

HIGH = ("high", "urgent")


class RoutingScoring(ScoringSettings):
    """The queue simulation behind routing's score."""

    teams: dict[str, int] = Field(  # team -> agents working its queue in parallel
        default_factory=lambda: {"billing": 5, "technical": 7, "accounts": 3, "logistics": 4, "returns": 4},
        min_length=1)
    sla_hours: dict[str, float] = Field(default_factory=lambda: {"urgent": 2.0, "high": 8.0, "normal": 24.0,
                                                                 "low": 72.0})
    priority_weight: dict[str, float] = Field(default_factory=lambda: {"urgent": 4.0, "high": 2.0, "normal": 1.0,
                                                                       "low": 0.5})
    # the wrong team's time spent before handing a ticket on, and the delay before it reaches the right queue
    triage_minutes: float = Field(10.0, ge=0, le=525_600)
    reassign_minutes: float = Field(30.0, ge=0, le=525_600)

    @model_validator(mode="after")
    def _consistent(self) -> "RoutingScoring":
        if any(not 1 <= a <= 100_000 for a in self.teams.values()):
            raise ValueError(f"every team needs 1 to 100000 agents, got {self.teams}")
        if any(not 0 < h <= 87_600 for h in self.sla_hours.values()):
            raise ValueError(f"sla_hours must be in (0, 87600] hours, got {self.sla_hours}")
        if any(not 0 <= w <= 1e6 for w in self.priority_weight.values()):
            raise ValueError(f"priority_weight must be in [0, 1e6], got {self.priority_weight}")
        if set(self.sla_hours) != set(self.priority_weight):
            raise ValueError("sla_hours and priority_weight must name the same priorities")
        return self


class RoutingDomain(Domain):
    name = "routing"
    columns = Columns(
        id="ticket_id",
        time="ts",
        label="resolved_by",
        decision_time=("ticket_id", "ts", "customer_id", "channel", "tier", "product", "priority", "subject", "body"),
        outcome_only=("handling_minutes", "issue_type"),
        entity="customer_id",
    )
    primary = "weighted_resolution_hours"
    higher_is_better = False
    guardrails = (
        GuardrailSpec("max_team_utilization", higher_is_better=False, kind="capacity", limit=0.9),
        GuardrailSpec("high_priority_misroute_rate", higher_is_better=False, kind="harm", limit=0.3,
                      tolerance=0.05, margin=0.5),
        GuardrailSpec("tier_resolution_gap", higher_is_better=False, kind="fairness", limit=1.0),
    )
    scoring = RoutingScoring
    import_keys = ImportKeys(tuple(MAPPING_KEYS), REQUIRED_KEYS)
    demo = DemoSettings(start={"C": 0.01, "SUBJECT_WEIGHT": 1, "OUTAGE_RULE": False}, rows=30_000,  # a timid model
                        shown=("weighted_resolution_hours", "mean_resolution_hours", "first_team_resolution_rate",
                               "sla_compliance", "high_priority_misroute_rate", "max_team_utilization",
                               "tier_resolution_gap"))
    # Which team resolved a ticket, and how long it took, are known once it is closed, whoever it was routed to; the
    # queue simulation replays both policies' routing of the same tickets.
    shadow = ShadowSettings(True, delay_days=(0.1, 3.0), settle_days=3.0)
    variants = {"llm": "policy_llm.py"}  # Claude routes each ticket through the parent's model broker

    # --- data -------------------------------------------------------------------------------
    def generate(self, seed: int, size: int) -> pd.DataFrame:
        from .data import generate

        return generate(seed, size)

    def continue_population(self, seed: int, size: int, *, start: pd.Timestamp, days: float,
                            live_seed: int) -> pd.DataFrame:
        from .data import continue_population

        return continue_population(seed, size, start=start, days=days, live_seed=live_seed)

    def load(self, file: Path, mapping: Mapping[str, str], reading: TimeReading | None = None) -> pd.DataFrame:
        from .importer import load

        return load(Path(file), mapping, reading)

    def check_contract(self, frame: pd.DataFrame, *, source: str) -> None:
        from .expectations import check_contract

        check_contract(frame, source=source)

    def contract_suite(self, frame: pd.DataFrame) -> dict[str, Any]:
        from .expectations import suite_json

        return suite_json(frame)

    # --- scoring ----------------------------------------------------------------------------
    def prepared(self, train: pd.DataFrame, params: Mapping[str, Any]) -> "RoutingDomain":
        unknown = sorted(set(train["resolved_by"].astype(str)) - set(params["teams"]))
        if unknown:
            from domains.errors import RatchetError

            raise RatchetError(f"scoring.teams has no entry for team(s) {', '.join(unknown)} found in the "
                               "resolved_by column; add them with their number of agents to the config")
        return self

    def check_decisions(self, decisions: Decisions, rows: pd.DataFrame, params: Mapping[str, Any]) -> str | None:
        values, n_rows = decisions.values, len(rows)
        if values.ndim != 1 or len(values) != n_rows:
            return f"decide() returned {values.shape} values for {n_rows} rows; expected one team name per row"
        if values.dtype.kind != "U":
            return f"decide() returned values of type {values.dtype}; expected team names (strings)"
        teams = set(params["teams"])
        bad = ~np.isin(values, list(teams))
        if bad.any():
            i = int(np.argmax(bad))
            return (f"decide() returned {int(bad.sum())} names that are not teams (row {i}: {str(values[i])!r}); "
                    f"teams: {', '.join(sorted(teams))} (scoring.teams)")
        return None

    def _simulate(self, rows: pd.DataFrame, routed: np.ndarray, params: Mapping[str, Any]) -> QueueResult:
        hours = (rows["ts"] - rows["ts"].min()).dt.total_seconds().to_numpy() / 3600.0 if len(rows) else np.zeros(0)
        return simulate(hours, routed, rows["resolved_by"].astype(str).to_numpy(),
                        rows["handling_minutes"].to_numpy(dtype=float) / 60.0, dict(params["teams"]),
                        triage_hours=params["triage_minutes"] / 60.0, reassign_hours=params["reassign_minutes"] / 60.0)

    def score(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], *,
              detail: bool = True) -> ScoreReport:
        routed = np.asarray(decisions.values).astype(str)
        sim = self._simulate(rows, routed, params)
        # Imported histories may lack a priority: every ticket then counts as normal.
        priority = rows["priority"].astype(str).to_numpy() if "priority" in rows.columns else np.full(len(rows), "normal")
        weight = pd.Series(priority).map(params["priority_weight"]).fillna(1.0).to_numpy(dtype=float)
        contrib = weight * sim.resolution_hours
        right = routed == rows["resolved_by"].astype(str).to_numpy()
        high = np.isin(priority, HIGH)
        sla = pd.Series(priority).map(params["sla_hours"]).fillna(np.inf).to_numpy(dtype=float)
        span = max(sim.span_hours, 1e-9)
        utilization = {t: sim.busy_hours[t] / (n * span) for t, n in params["teams"].items()}
        tiers = pd.Series(sim.resolution_hours).groupby(rows["tier"].astype(str).to_numpy()).mean() \
            if "tier" in rows.columns and len(rows) else pd.Series(dtype=float)
        metrics = {
            "weighted_resolution_hours": float(contrib.mean()) if len(rows) else 0.0,
            "mean_resolution_hours": float(sim.resolution_hours.mean()) if len(rows) else 0.0,
            "first_team_resolution_rate": float(right.mean()) if len(rows) else 0.0,
            "sla_compliance": float((sim.resolution_hours <= sla).mean()) if len(rows) else 0.0,
            "high_priority_misroute_rate": float((~right[high]).mean()) if high.any() else 0.0,
            "max_team_utilization": float(max(utilization.values())) if utilization else 0.0,
            "tier_resolution_gap": float(tiers.max() / tiers.min() - 1.0) if len(tiers) > 1 and tiers.min() > 0 else 0.0,
        }
        if detail:
            metrics.update({f"utilization_{t}": float(u) for t, u in utilization.items()})
            metrics.update({f"sla_compliance_{p}": float((sim.resolution_hours[priority == p] <= sla[priority == p]).mean())
                            for p in params["sla_hours"] if (priority == p).any()})
        segments: dict[str, dict[str, dict[str, float]]] = {}
        for family, labels in (self.segment_of(rows) if detail else {}).items():
            segments[family] = {str(seg): {"n": float((labels == seg).sum()),
                                           "weighted_resolution_hours": float(contrib[labels == seg].mean()),
                                           "first_team_resolution_rate": float(right[labels == seg].mean())}
                                for seg in sorted(set(labels))}
        return ScoreReport(self.primary, self.higher_is_better, metrics, contrib, segments)

    def segment_of(self, rows: pd.DataFrame) -> Mapping[str, np.ndarray]:
        return {c: rows[c].astype("string").fillna("(missing)").to_numpy(dtype=object).astype(str)
                for c in ("priority", "channel", "tier") if c in rows.columns}

    def trace(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], limit: int = 20,
              report: ScoreReport | None = None) -> dict[str, Any]:
        report = report or self.score(rows, decisions, params)
        routed = np.asarray(decisions.values).astype(str)
        truth = rows["resolved_by"].astype(str).to_numpy()
        wrong = rows.loc[routed != truth, ["ticket_id", "priority", "channel", "subject", "body"]].assign(
            routed_to=routed[routed != truth], resolved_by=truth[routed != truth],
            weighted_hours=report.contributions[routed != truth])
        confusion = pd.crosstab(pd.Series(truth, name="resolved_by"), pd.Series(routed, name="routed_to"))
        return {
            "metrics": dict(report.metrics),
            "segments": {f: dict(s) for f, s in report.segments.items()},
            "confusion": {r: {c: int(v) for c, v in row.items()} for r, row in confusion.iterrows()},
            "costliest_misroutes": wrong.sort_values("weighted_hours", ascending=False).head(limit)
            .to_dict(orient="records"),
            "counts": {"rows": int(len(rows)), "misrouted": int((routed != truth).sum())},
        }
