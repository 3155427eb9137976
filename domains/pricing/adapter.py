"""The pricing domain's scorer side (locked: a candidate never sees or edits this file).

A policy prices each logged offer; the scorer estimates the profit per offer it would have made
by off-policy evaluation on the logs (doubly robust by default, see ope.py), with an outcome
model the scorer fits on train. Guardrails: conversion must not collapse relative to the logging
policy, prices must not differ between protected groups beyond a bound, no price may stray
too far from the reference price; the `support` guard refuses estimates the logs cannot back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

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

from . import ope
from .importer import MAPPING_KEYS, REQUIRED_KEYS

SHOWN = ("offer_id", "segment", "channel", "region", "loyalty_tier", "ref_price", "unit_cost", "offered_price",
         "converted")


class PricingScoring(ScoringSettings):
    """Off-policy evaluation of a pricing policy on logged offers."""

    price_grid: list[float] = Field(default_factory=lambda: [0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
                                    min_length=1)  # allowed prices, as multiples of the reference price
    estimator: Literal["dr", "snips"] = "dr"  # doubly robust (default) or self-normalized IPS
    max_price_deviation: float = Field(0.45, gt=0, le=100)  # a price further than this from the reference is extreme
    min_ess_share: float = Field(0.05, ge=0, le=1)  # effective sample size / rows, below: untrustworthy
    min_supported_share: float = Field(0.9, ge=0, le=1)  # share of decisions at prices the logs tried
    min_logged_share: float = Field(0.04, ge=0, le=1)  # a price offered on fewer logged rows is unsupported
    interval_bootstrap: int = Field(200, ge=50, le=100_000)  # resamples for the reported confidence interval

    @model_validator(mode="after")
    def _grid_positive(self) -> "PricingScoring":
        if any(not (0 < m <= 100) for m in self.price_grid) or len(set(self.price_grid)) != len(self.price_grid):
            raise ValueError(f"price_grid must hold distinct multipliers in (0, 100], got {self.price_grid}")
        return self


class PricingDomain(Domain):
    name = "pricing"
    columns = Columns(
        id="offer_id",
        time="ts",
        label="converted",
        decision_time=("offer_id", "ts", "customer_id", "product_id", "segment", "channel", "loyalty_tier",
                       "basket_value", "region", "day_of_week", "season", "ref_price", "unit_cost"),
        train_only=("offered_price", "propensity"),
        outcome_only=("protected_group",),
        entity="customer_id",
    )
    primary = "profit"
    higher_is_better = True
    guardrails = (
        # Limits are business rules (configs/pricing.yaml); conversion is relative to the logging policy.
        GuardrailSpec("conversion_ratio", higher_is_better=True, kind="harm", limit=0.8),
        GuardrailSpec("price_gap_protected", higher_is_better=False, kind="fairness", limit=0.05),
        GuardrailSpec("extreme_price_share", higher_is_better=False, kind="harm", limit=0.0),
    )
    # The offered price drives conversion by design: its strength is reported, not refused.
    leakage_exempt = ("offered_price",)
    scoring = PricingScoring
    shadow = ShadowSettings(False, "a challenger's price was never shown to the customer, so its outcome is unknown; it "
                            "can be estimated off-policy only where the acting policy randomizes its prices, and the "
                            "champion does not. The report shows agreement and the price distribution instead",
                            delay_days=(0.0, 1.0), settle_days=1.0)
    import_keys = ImportKeys(tuple(MAPPING_KEYS), REQUIRED_KEYS)
    demo = DemoSettings(start={"MAX_MULTIPLIER": 1.0}, rows=200_000,  # never prices above the reference
                        shown=("profit", "profit_ci_low", "profit_ci_high", "conversion_ratio", "price_gap_protected",
                               "extreme_price_share", "ess_share", "supported_share", "mean_price_ratio"))

    def __init__(self, outcome: ope.OutcomeModel | None = None) -> None:
        self._outcome = outcome

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

        check_contract(frame, source=source, feature_columns=self._features(frame))

    def contract_suite(self, frame: pd.DataFrame) -> dict[str, Any]:
        from .expectations import suite_json

        return suite_json(frame, feature_columns=self._features(frame))

    def _features(self, frame: pd.DataFrame) -> list[str]:
        ours = {self.columns.id, self.columns.time, self.columns.label, "customer_id", "product_id", "ref_price",
                "unit_cost", *self.columns.train_only, *self.columns.outcome_only}
        return [c for c in frame.columns if c not in ours]

    # --- scoring ----------------------------------------------------------------------------
    def prepared(self, train: pd.DataFrame, params: Mapping[str, Any]) -> "PricingDomain":
        return PricingDomain(ope.fit_outcome_model(train, label="converted", price="offered_price",
                                                   reference="ref_price", hidden=self.columns.outcome_only))

    def check_decisions(self, decisions: Decisions, rows: pd.DataFrame, params: Mapping[str, Any]) -> str | None:
        values, n_rows = decisions.values, len(rows)
        if values.ndim != 1 or len(values) != n_rows:
            return f"decide() returned {values.shape} values for {n_rows} rows; expected one price per row"
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.bool_):
            return f"decide() returned values of type {values.dtype}; expected prices (floats)"
        bad = ~np.isfinite(values)
        if bad.any():
            return f"decide() returned {int(bad.sum())} NaN/inf prices (first at row {int(np.argmax(bad))})"
        grid = np.asarray(params["price_grid"], dtype=float)
        off = ope.grid_index(values, rows["ref_price"].to_numpy(dtype=float), grid) < 0
        if off.any():
            i = int(np.argmax(off))
            return (f"decide() returned {int(off.sum())} prices off the allowed grid (row {i}: {values[i]!r} for "
                    f"reference price {float(rows['ref_price'].iloc[i])!r}); a price must be the reference price "
                    f"times one of {grid.tolist()}, rounded to the cent (scoring.price_grid)")
        return None

    def _outcome_model(self) -> ope.OutcomeModel:
        if self._outcome is None:
            from domains.errors import RatchetError

            raise RatchetError("pricing: the scorer has no outcome model; score with domain.prepared(train, params)")
        return self._outcome

    def evaluate(self, rows: pd.DataFrame, prices: np.ndarray, params: Mapping[str, Any]) -> dict[str, Any]:
        """Per-row terms and aggregate estimates for `prices` on logged `rows`."""
        grid = np.asarray(params["price_grid"], dtype=float)
        ref = rows["ref_price"].to_numpy(dtype=float)
        cost = rows["unit_cost"].to_numpy(dtype=float)
        logged_price = rows["offered_price"].to_numpy(dtype=float)
        bought = rows["converted"].to_numpy(dtype=float)
        logged_idx = ope.grid_index(logged_price, ref, grid)
        decided_idx = ope.grid_index(prices, ref, grid)
        matched = (decided_idx == logged_idx) & (decided_idx >= 0)
        w = ope.weights(matched, rows["propensity"].to_numpy(dtype=float))
        model = self._outcome_model()
        p_decided, p_logged = model.probability(rows, prices / ref, logged_price / ref)
        reward = (logged_price - cost) * bought
        profit_dr = ope.dr_terms((prices - cost) * p_decided, (logged_price - cost) * p_logged, reward, w)
        profit_snips = ope.snips_terms(reward, w)
        conversion_dr = ope.dr_terms(p_decided, p_logged, bought, w)
        logged_share = np.bincount(logged_idx[logged_idx >= 0], minlength=len(grid)) / max(len(rows), 1)
        supported = (decided_idx >= 0) & (logged_share[np.maximum(decided_idx, 0)] >= params["min_logged_share"])
        return {"profit_dr": profit_dr, "profit_snips": profit_snips, "conversion_dr": conversion_dr, "w": w,
                "matched": matched, "supported": supported, "reward": reward, "ratio": prices / ref}

    def score(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], *,
              detail: bool = True) -> ScoreReport:
        prices = np.asarray(decisions.values, dtype=float)
        ev = self.evaluate(rows, prices, params)
        contrib = ev["profit_dr"] if params["estimator"] == "dr" else ev["profit_snips"]
        n = max(len(rows), 1)
        logged_conversion = float(rows["converted"].mean()) if len(rows) else 0.0
        conversion = float(ev["conversion_dr"].mean()) if len(rows) else 0.0
        metrics = {
            "profit": float(contrib.mean()) if len(rows) else 0.0,
            "profit_dr": float(ev["profit_dr"].mean()) if len(rows) else 0.0,
            "profit_snips": float(ev["profit_snips"].mean()) if len(rows) else 0.0,
            "profit_ips": float((ev["w"] * ev["reward"]).sum() / n),
            "logged_profit": float(ev["reward"].mean()) if len(rows) else 0.0,
            "conversion_rate": conversion,
            "logged_conversion_rate": logged_conversion,
            "conversion_ratio": conversion / logged_conversion if logged_conversion > 0 else 0.0,
            "price_gap_protected": _group_gap(rows, ev["ratio"]),
            "extreme_price_share": float((np.abs(ev["ratio"] - 1.0) > params["max_price_deviation"] + 1e-9).mean())
            if len(rows) else 0.0,
            "mean_price_ratio": float(ev["ratio"].mean()) if len(rows) else 0.0,
            "ess_share": ope.effective_sample_share(ev["w"]),
            "match_share": float(ev["matched"].mean()) if len(rows) else 0.0,
            "supported_share": float(ev["supported"].mean()) if len(rows) else 0.0,
        }
        segments: dict[str, dict[str, dict[str, float]]] = {}
        if detail:
            metrics["profit_ci_low"], metrics["profit_ci_high"] = ope.interval(
                contrib, n_boot=int(params["interval_bootstrap"]), seed=len(rows))
            for family, labels in self.segment_of(rows).items():
                segments[family] = {}
                for seg in sorted(set(labels)):
                    mask = labels == seg
                    segments[family][str(seg)] = {"n": float(mask.sum()), "profit": float(contrib[mask].mean()),
                                                  "mean_price_ratio": float(ev["ratio"][mask].mean())}
        return ScoreReport(self.primary, self.higher_is_better, metrics, contrib, segments)

    def support_limits(self, params: Mapping[str, Any]) -> Mapping[str, float]:
        """Off-policy estimates need logs that tried the prices decided: the `support` guard's limits."""
        return {k: params[k] for k in ("min_ess_share", "min_supported_share", "min_logged_share")}

    def segment_of(self, rows: pd.DataFrame) -> Mapping[str, np.ndarray]:
        return {c: rows[c].astype("string").fillna("(missing)").to_numpy(dtype=object).astype(str)
                for c in ("segment", "channel") if c in rows.columns}

    def trace(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], limit: int = 20,
              report: ScoreReport | None = None) -> dict[str, Any]:
        report = report or self.score(rows, decisions, params)
        ratio = np.asarray(decisions.values, float) / rows["ref_price"].to_numpy(dtype=float)
        frame = rows[[c for c in SHOWN if c in rows.columns]].assign(price=decisions.values,
                                                                   contribution=report.contributions)
        worst = frame.sort_values("contribution").head(limit)
        mix = pd.Series(np.round(ratio, 3)).value_counts().sort_index()
        return {
            "metrics": dict(report.metrics),
            "segments": {f: dict(s) for f, s in report.segments.items()},
            "price_mix": {f"{k:g}x": int(v) for k, v in mix.items()},
            "lowest_contributions": worst.to_dict(orient="records"),
            "counts": {"rows": int(len(rows)), "matched_logged_price": int(round(report.metrics["match_share"]
                                                                                * len(rows)))},
        }


def _group_gap(rows: pd.DataFrame, ratio: np.ndarray) -> float:
    """Largest / smallest mean price ratio over protected groups, minus 1 (0 with fewer than two groups)."""
    if "protected_group" not in rows.columns or len(rows) == 0:
        return 0.0
    means = pd.Series(ratio).groupby(rows["protected_group"].astype("string").fillna("(missing)").to_numpy()).mean()
    return float(means.max() / means.min() - 1.0) if len(means) > 1 and means.min() > 0 else 0.0
