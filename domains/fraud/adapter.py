"""The fraud domain's scorer side (locked: a candidate never sees or edits this file).

Primary metric: net savings per transaction = (fraud amount blocked - decline_cost x legitimate
transactions blocked) / transactions. Guardrails, as a fraud team sets them: the alert rate is a capacity
(at most what the review team can handle), the false-decline rate is a harm (not worse than the original
baseline by more than a tolerance, nor than the champion by more than a relative margin per step), and the
gap in false declines between new and established customers is a fairness limit.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from pydantic import Field

from domains._importing import TimeReading
from domains._memo import by_identity
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

from .data import MAPPING_KEYS, REQUIRED_KEYS

AMOUNT_BANDS = ((0.0, "low"), (20.0, "mid"), (100.0, "high"), (500.0, "very_high"))
ESTABLISHED_AFTER = 5  # a customer's 6th transaction in the evaluated stream counts as established


def _decline_rate(blocked: np.ndarray, fraud: np.ndarray) -> float:
    """Legitimate transactions blocked / legitimate transactions (0 when there are none)."""
    legit = ~fraud
    return float((blocked & legit).sum() / max(int(legit.sum()), 1))


@by_identity
def _factorized(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted names) of one segment family's labels, which are the same array on every experiment."""
    found: tuple[np.ndarray, np.ndarray] = pd.factorize(labels, sort=True)
    return found


@by_identity
def _segments(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Amount band, and customers' tenure where customers are known: fixed for a set of rows, so computed once."""
    edges = [lo for lo, _ in AMOUNT_BANDS[1:]]
    names = np.array([name for _, name in AMOUNT_BANDS])
    out = {"amount_band": names[np.searchsorted(edges, rows["amount"].to_numpy(dtype=float), side="right")]}
    if "customer_id" in rows.columns:
        out["customer_tenure"] = _tenure(rows)
    return out


def _tenure(rows: pd.DataFrame) -> np.ndarray:
    """Point-in-time tenure within the evaluated stream: how many earlier transactions we saw."""
    order = rows["ts"].argsort(kind="stable")
    seen = np.empty(len(rows), dtype=np.int64)
    seen[order] = rows.iloc[order].groupby("customer_id").cumcount().to_numpy()
    return np.where(seen < ESTABLISHED_AFTER, "new", "established")


class FraudScoring(ScoringSettings):
    """What a blocked legitimate transaction costs (friction, support, churn), per decline."""

    decline_cost: float = Field(5.0, ge=0, le=1e9)


class FraudDomain(Domain):
    name = "fraud"
    columns = Columns(
        id="tx_id",
        time="ts",
        label="is_fraud",
        decision_time=("tx_id", "ts", "customer_id", "terminal_id", "amount"),
        outcome_only=("fraud_scenario",),
        entity="customer_id",
        history=("customer_id", "terminal_id"),
    )
    primary = "net_savings"
    higher_is_better = True
    guardrails = (
        GuardrailSpec("false_decline_rate", higher_is_better=False, kind="harm", tolerance=0.01, margin=1.0),
        GuardrailSpec("alert_rate", higher_is_better=False, kind="capacity", limit=0.03),
        # Needs customer_id (tenure): skipped with a note on data without it, such as the public export.
        GuardrailSpec("false_decline_gap", higher_is_better=False, kind="fairness", limit=0.01, required=False),
    )
    constants = ("THRESHOLD",)
    scoring = FraudScoring
    import_keys = ImportKeys(tuple(MAPPING_KEYS), REQUIRED_KEYS)
    demo = DemoSettings(start={"THRESHOLD": 0.6, "N_ESTIMATORS": 60}, rows=200_000, workspace="demo-workspace",
                        shown=("net_savings", "false_decline_rate", "alert_rate", "fraud_recall", "precision",
                               "roc_auc", "pr_auc"))
    # Chargebacks arrive 30 to 90 days after a fraud; a legitimate payment is known good once 90 days pass without
    # one. A blocked payment gets no chargeback: only the share a review team looks at is labelled.
    shadow = ShadowSettings(True, delay_days=(30.0, 90.0), settle_days=90.0, blocks=True, review_share=0.2,
                            cost="decline_cost")
    # Large amounts are a fraud pattern by definition: amount's predictive power is reported, not refused.
    leakage_exempt = ("amount",)

    # --- data -------------------------------------------------------------------------------
    def generate(self, seed: int, size: int) -> pd.DataFrame:
        from .data import generate

        return generate(seed, size)

    def continue_population(self, seed: int, size: int, *, start: pd.Timestamp, days: float,
                            live_seed: int) -> pd.DataFrame:
        from .data import continue_population

        return continue_population(seed, size, start=start, days=days, live_seed=live_seed)

    def load(self, file: Path, mapping: Mapping[str, str], reading: TimeReading | None = None) -> pd.DataFrame:
        from .data import load

        return load(Path(file), mapping, reading)

    def check_contract(self, frame: pd.DataFrame, *, source: str) -> None:
        from .expectations import check_contract

        check_contract(frame, source=source, feature_columns=self._features(frame))

    def contract_suite(self, frame: pd.DataFrame) -> dict[str, Any]:
        from .expectations import suite_json

        return suite_json(frame, feature_columns=self._features(frame))

    @staticmethod
    def _features(frame: pd.DataFrame) -> list[str]:
        known = {"tx_id", "ts", "customer_id", "terminal_id", "amount", "is_fraud", "fraud_scenario"}
        return [c for c in frame.columns if c not in known]

    # --- scoring ----------------------------------------------------------------------------
    def check_decisions(self, decisions: Decisions, rows: pd.DataFrame, params: Mapping[str, Any]) -> str | None:
        values, n_rows = decisions.values, len(rows)
        if values.ndim != 1 or len(values) != n_rows:
            return f"decide() returned {values.shape} values for {n_rows} rows; expected one score per row"
        if not np.issubdtype(values.dtype, np.number):
            return f"decide() returned values of type {values.dtype}; expected float scores in [0, 1]"
        bad = ~np.isfinite(values)
        if bad.any():
            return f"decide() returned {int(bad.sum())} NaN/inf scores (first at row {int(np.argmax(bad))})"
        outside = (values < 0) | (values > 1)
        if outside.any():
            i = int(np.argmax(outside))
            return f"decide() returned {int(outside.sum())} scores outside [0, 1] (row {i}: {values[i]!r})"
        threshold = decisions.constants.get("THRESHOLD")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            return f"policy.py must define a numeric module constant THRESHOLD; got {threshold!r}"
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            return f"THRESHOLD must lie in [0, 1]; got {threshold!r}"
        return None

    def _blocked(self, decisions: Decisions) -> np.ndarray:
        return decisions.values >= float(decisions.constants["THRESHOLD"])

    def acted(self, decisions: Decisions) -> np.ndarray:
        """A payment scored at or above THRESHOLD is blocked."""
        return self._blocked(decisions)

    def contributions(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any]) -> np.ndarray:
        fraud = rows["is_fraud"].to_numpy() == 1
        amount = rows["amount"].to_numpy(dtype=float)
        blocked = self._blocked(decisions)
        return np.where(blocked & fraud, amount, 0.0) - np.where(blocked & ~fraud, float(params["decline_cost"]), 0.0)

    def _metrics(self, fraud: np.ndarray, blocked: np.ndarray, contrib: np.ndarray, *, new: np.ndarray | None = None,
                 scores: np.ndarray | None = None) -> dict[str, float]:
        """The metrics of one set of rows; `new` (customers' tenure) adds the fairness gap, `scores` the ranking."""
        caught = int((blocked & fraud).sum())
        out = {
            "net_savings": float(contrib.mean()) if len(contrib) else 0.0,
            "false_decline_rate": _decline_rate(blocked, fraud),
            "alert_rate": float(blocked.mean()) if len(blocked) else 0.0,
            "fraud_recall": caught / max(int(fraud.sum()), 1),
            "precision": caught / max(int(blocked.sum()), 1),
        }
        if new is not None:
            out["false_decline_gap"] = abs(_decline_rate(blocked[new], fraud[new])
                                           - _decline_rate(blocked[~new], fraud[~new]))
        if scores is not None and 0 < fraud.sum() < len(fraud):
            from domains._ranking import roc_pr_auc

            out["roc_auc"], out["pr_auc"] = roc_pr_auc(fraud, scores)
        return out

    def score(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], *,
              detail: bool = True) -> ScoreReport:
        contrib = self.contributions(rows, decisions, params)
        fraud = rows["is_fraud"].to_numpy() == 1
        blocked = self._blocked(decisions)
        families = self.segment_of(rows) if detail else {}
        tenure = families.get("customer_tenure")
        metrics = self._metrics(fraud, blocked, contrib, new=None if tenure is None else tenure == "new",
                                scores=decisions.values if detail else None)
        segments: dict[str, dict[str, dict[str, float]]] = {}
        for family, labels in families.items():
            codes, names = _factorized(labels)
            segments[family] = {}
            for code, seg in enumerate(names):
                mask = codes == code
                seg_metrics = self._metrics(fraud[mask], blocked[mask], contrib[mask])
                segments[family][str(seg)] = {
                    "n": float(mask.sum()),
                    **{k: v for k, v in seg_metrics.items() if k in ("net_savings", "false_decline_rate", "alert_rate")},
                }
        return ScoreReport(self.primary, self.higher_is_better, metrics, contrib, segments)

    def segment_of(self, rows: pd.DataFrame) -> Mapping[str, np.ndarray]:
        return dict(_segments(rows))

    def trace(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], limit: int = 20,
              report: ScoreReport | None = None) -> dict[str, Any]:
        fraud = rows["is_fraud"].to_numpy() == 1
        blocked = self._blocked(decisions)
        shown = [c for c in rows.columns if c not in ("is_fraud", *self.columns.outcome_only)]
        frame = rows[shown].assign(score=decisions.values)

        def worst(mask: np.ndarray, by: str, ascending: bool) -> list[dict[str, Any]]:
            picked = frame[mask].sort_values(by, ascending=ascending).head(limit)
            return [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in r.items()}
                    for r in picked.to_dict(orient="records")]

        report = report or self.score(rows, decisions, params)
        return {
            "metrics": dict(report.metrics),
            "segments": {f: dict(s) for f, s in report.segments.items()},
            "missed_fraud_largest": worst(fraud & ~blocked, "amount", False),
            "false_declines_highest_score": worst(~fraud & blocked, "score", False),
            "counts": {"rows": int(len(rows)), "fraud": int(fraud.sum()), "blocked": int(blocked.sum())},
        }
