"""Each policy's metrics on the trial's live events, estimated without the bias of selective labels.

Not a verdict input: it says whether a policy behaves on live events as it did offline (its holdout metrics), which
is what training-serving skew, a changed population or a broken feed would break.

Which events. Where a domain's decision stops an event (a blocked payment), the stopped events are labelled only
where a review looked, so metrics over the labelled events overweight what the acting champion let through (its
recall reads near zero). With a known review rate r (`shadow.review_rate`) the sample is every settled event the
review labelled among the stopped ones, and a seeded draw of r of the settled events it let through: every event is
in it with probability r, whatever either policy decided, so each metric on it estimates the metric on all the
trial's settled events. Where nothing is stopped, every settled labelled event is in the sample. Without a review
rate in a domain that stops events there is no unbiased sample, and the report says so instead of a figure.

The interval is a percentile bootstrap of the sample's events (`RESAMPLES` draws, seeded): it measures the
sampling error of the trial's own events, not the offline figure's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from domains import Decisions
from holdout import queries
from holdout.entries import Baseline, Experiment, typed
from optimizer.release.shadow import compare

if TYPE_CHECKING:
    from optimizer.records.context import Context

RESAMPLES = 200


def live_metrics(ctx: Context, events: pd.DataFrame, outcomes: pd.DataFrame, pair: compare.Paired,
                 decided: dict[str, Decisions], policies: dict[str, dict]) -> dict[str, Any]:
    """Per policy, each metric on the unbiased sample with its bootstrap interval at `shadow.confidence`, beside the
    dev figure the ledger recorded for it (`policies`: role -> the trial's record of the policy, with its commit)."""
    shadow, cfg = ctx.domain.shadow, ctx.config.shadow
    known = pair.settled & outcomes["label"].notna().to_numpy()
    if shadow.blocks and cfg.review_rate is None:
        return {"events": 0, "sample": None, "note": "not estimated: what the champion stopped is labelled only "
                "where reviewed; set shadow.review_rate to the review team's share to estimate each policy's metrics"}
    if shadow.blocks and cfg.review_rate is not None:
        draw = np.random.default_rng([ctx.config.seed, 0x11FE]).random(len(events)) < cfg.review_rate
        chosen = known & np.where(pair.stopped, pair.reviewed, draw)
        sample = (f"settled events in the review's share: the stopped ones a review labelled and a seeded "
                  f"{cfg.review_rate:g} of the others")
    else:
        chosen = known
        sample = "every settled event with its outcome"
    out: dict[str, Any] = {"events": int(chosen.sum()), "sample": sample, "confidence": cfg.confidence}
    if not chosen.any():
        return out
    rows = compare.rows_with(ctx, events[chosen].reset_index(drop=True), outcomes[chosen].reset_index(drop=True))
    params, entries = ctx.config.scoring.model_dump(), ctx.ledger.entries()
    for role, decisions in decided.items():
        dev = recorded_dev(entries, policies[role]["commit"])
        picked = Decisions(np.asarray(decisions.values)[chosen], decisions.constants)
        found = bootstrap(ctx.domain, rows, picked, params, confidence=cfg.confidence, seed=ctx.config.seed)
        out[role] = {name: {**m, "dev": _number(dev.get(name))} for name, m in found.items()}
    return out


def bootstrap(domain: Any, rows: pd.DataFrame, decisions: Decisions, params: dict, *, confidence: float,
              seed: int) -> dict[str, dict[str, float | None]]:
    """Each metric of `decisions` on `rows`, with a percentile bootstrap interval (None where fewer than half the
    resamples give the metric a finite value, e.g. a recall on resamples without a fraud)."""
    rng = np.random.default_rng([seed, 0xB007])
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(RESAMPLES)]
    values, tail = np.asarray(decisions.values), (1.0 - confidence) / 2
    point = domain.score(rows, decisions, params).metrics
    again = [domain.score(rows.iloc[i].reset_index(drop=True), Decisions(values[i], decisions.constants), params,
                          detail=False).metrics for i in draws]
    out = {}
    for name, value in point.items():
        spread = np.array([m[name] for m in again if name in m and np.isfinite(m[name])], dtype=float)
        low, high = np.quantile(spread, [tail, 1.0 - tail]) if len(spread) >= RESAMPLES // 2 else (None, None)
        out[name] = {"value": _number(value), "low": _number(low), "high": _number(high)}
    return out


def recorded_dev(entries: list, commit: str) -> dict[str, float]:
    """The dev metrics the ledger recorded for the policy at `commit` (the baseline, or the experiment that kept it;
    a kept policy's are biased upward: the loop chose it on dev)."""
    base = queries.baseline(entries)
    for e in reversed([*([base] if base else []), *queries.kept(entries)]):  # the latest record of that commit
        record = typed(e)
        if isinstance(record, (Baseline, Experiment)) and record.commit == commit:
            return dict(record.dev_metrics or {})
    return {}


def _number(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
