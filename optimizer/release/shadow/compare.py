"""The primary comparison of a shadow trial: anytime-valid, on settled events, with labels as they really arrive.

Which events are evidence. An outcome arrives late (a chargeback 30 to 90 days after the payment; "no chargeback"
only once the payment settled), so the first labels are a biased sample: the frauds. An event is *settled* once the
outcomes joined so far reach its time plus the domain's settle time (`shadow.settle_days`); settled events enter in
event-time order, which no label decides, and the comparison is a confidence sequence (guards.anytime) of the
per-event paired difference over them: it holds however often and whenever the report is read.

Selective labels. Where a domain's decision stops the event (a blocked payment), the event's outcome is observed only
when a review looked at it. With a known review rate (`shadow.review_rate`) each reviewed stopped event stands for
1 / rate such events (inverse probability weighting); without one, each unlabelled stopped event is filled with the
label that is worst for the challenger (and, for the best case, the best), and the trial passes only on the worst
case. Where both policies decide alike the difference is exactly zero whatever the label, so only disagreements
carry the comparison.

Before enough settled events (the interim view) the disagreements bound what is at stake: the realised mean gain
over all the trial's events lies between the worst and the best filling of every unknown label. It is arithmetic on
the trial's own events, not a statistical statement about the next ones: not evidence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from domains import Decisions
from guards.anytime import sequence
from holdout.gate import gain

COST_FACTORS = 9  # points of the decline cost's range the verdict is checked at (geometric, both ends included)


@dataclass(frozen=True)
class Paired:
    """Per event: the paired difference (challenger - champion, oriented so that higher is better) with the label as
    observed, and with every unknown label filled worst and best for the challenger; which events are settled and
    observed; who stopped what."""

    observed: np.ndarray  # bool: the event's label is known (and not hidden by the champion's block)
    settled: np.ndarray  # bool: the outcomes joined so far reach the event's settle time
    stopped: np.ndarray  # bool: the champion's decision stopped the event
    reviewed: np.ndarray  # bool: a review labelled it (read only where stopped)
    diff: np.ndarray  # observed difference (0 where unobserved)
    low: np.ndarray  # worst case for the challenger (the observed difference where observed)
    high: np.ndarray  # best case
    differ: np.ndarray  # bool: the two decided the event differently (block/allow, or another value)
    bounded: bool  # unknown labels can be filled (a binary numeric label); else unobserved events are left out


def rows_with(ctx, events: pd.DataFrame, outcomes: pd.DataFrame, label: Any = None) -> pd.DataFrame:
    """The trial's events with their outcomes as the scorer reads them (the label in the dev split's type and the
    outcome-only columns); `label` given: every event gets that label instead (a hypothetical filling)."""
    cols = ctx.domain.columns
    extra = pd.DataFrame([json.loads(x) if isinstance(x, str) else {} for x in outcomes["extra"]])
    rows = events.assign(**{cols.label: outcomes["label"].to_numpy() if label is None else label})
    for col in cols.outcome_only:
        rows[col] = extra[col].to_numpy() if col in extra.columns else np.nan
    dtype = ctx.dev[cols.label].dtype
    if pd.api.types.is_numeric_dtype(dtype):  # stored as text
        rows[cols.label] = pd.to_numeric(rows[cols.label])
        if rows[cols.label].notna().all():
            rows[cols.label] = rows[cols.label].astype(dtype)
    return rows


def _binary(ctx) -> bool:
    labels = ctx.dev[ctx.domain.columns.label]
    return pd.api.types.is_numeric_dtype(labels) and set(pd.unique(labels.dropna())) <= {0, 1}


def _contrib(ctx, rows: pd.DataFrame, d: Decisions, params: dict) -> np.ndarray:
    return np.asarray(ctx.domain.score(rows, d, params, detail=False).contributions, dtype=float)


def paired(ctx, events: pd.DataFrame, outcomes: pd.DataFrame, champ: Decisions, chall: Decisions,
           params: dict | None = None) -> Paired:
    """Every event's paired difference, observed and bounded (see the module's docstring)."""
    cols, shadow = ctx.domain.columns, ctx.domain.shadow
    params = ctx.config.scoring.model_dump() if params is None else params
    higher = ctx.domain.higher_is_better
    n = len(events)
    stopped = ctx.domain.acted(champ) if shadow.blocks else np.zeros(n, bool)
    reviewed = outcomes["reviewed"].fillna(False).to_numpy(dtype=bool)
    observed = outcomes["label"].notna().to_numpy() & (~stopped | reviewed)
    known_at = pd.to_datetime(outcomes["known_at"])
    asof = known_at.max()
    ts = pd.to_datetime(events[cols.time]).reset_index(drop=True)
    settled = (ts + pd.Timedelta(days=shadow.settle_days) <= asof).to_numpy() if pd.notna(asof) else np.zeros(n, bool)
    diff = np.zeros(n)
    differ = disagree(ctx, champ, chall)
    if not shadow.measurable:  # the primary cannot be computed on live outcomes: agreement only
        return Paired(observed, settled, stopped, reviewed, diff, diff, diff, differ, False)
    if observed.any():
        rows = rows_with(ctx, events[observed].reset_index(drop=True), outcomes[observed].reset_index(drop=True))
        sub = lambda d: Decisions(np.asarray(d.values)[observed], d.constants)  # noqa: E731
        diff[observed] = gain(_contrib(ctx, rows, sub(chall), params), _contrib(ctx, rows, sub(champ), params),
                              higher_is_better=higher)
    bounded = _binary(ctx)
    low, high = diff.copy(), diff.copy()
    if bounded and not observed.all():
        filled = []
        for value in (0, 1):
            rows = rows_with(ctx, events, outcomes, label=value)
            filled.append(gain(_contrib(ctx, rows, chall, params), _contrib(ctx, rows, champ, params),
                               higher_is_better=higher))
        low[~observed] = np.minimum(*filled)[~observed]
        high[~observed] = np.maximum(*filled)[~observed]
    return Paired(observed, settled, stopped, reviewed, diff, low, high, differ, bounded)


def disagree(ctx, champ: Decisions, chall: Decisions) -> np.ndarray:
    """Per event, whether the two decided differently: block or allow where the domain blocks, else the value."""
    if ctx.domain.shadow.blocks:
        return ctx.domain.acted(champ) != ctx.domain.acted(chall)
    return np.asarray(champ.values).astype(str) != np.asarray(chall.values).astype(str)


def evidence(p: Paired, review_rate: float | None, min_reviewed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The settled events' per-event differences the verdict reads, worst and best case, and how labels were used.

    With a review rate, once `min_reviewed` of the settled events the champion stopped and the challenger would
    not have are reviewed, each reviewed one stands for 1 / rate of them (Horvitz-Thompson). Before that the
    weighted mean rests on a handful of amounts multiplied by 1 / rate, whose spread the sample cannot show yet
    (benchmarks/shadow_peeking.py: 11 % false passes on generated data at a 0.2 rate without this floor), so the
    unknown labels are filled worst and best case as without a rate."""
    use = p.settled if p.bounded else p.settled & p.observed
    at_stake = use & p.stopped & p.differ
    reviewed = int((at_stake & p.reviewed & p.observed).sum())
    if review_rate is not None and at_stake.any() and reviewed >= min_reviewed:
        weighted = np.where(p.stopped, np.where(p.reviewed & p.observed, p.diff / review_rate, 0.0), p.low)
        best = np.where(p.stopped, weighted, p.high)
        how = (f"stopped events weighted by the inverse review rate 1/{review_rate:g} (shadow.review_rate; "
               f"{reviewed} of {int(at_stake.sum())} stopped disagreements reviewed); other unknown labels filled "
               "worst case")
        return weighted[use], best[use], how
    if not p.bounded or p.observed[use].all():
        return p.low[use], p.high[use], "observed labels"
    why = ("shadow.review_rate is not set" if review_rate is None else
           f"{reviewed} of {int(at_stake.sum())} stopped disagreements reviewed, fewer than the {min_reviewed} "
           "(shadow.min_changed) weighting needs")
    return p.low[use], p.high[use], f"every unknown label filled worst case for the challenger ({why})"


def primary(p: Paired, *, review_rate: float | None, min_reviewed: int, alpha: float, tuned_for: int) -> dict:
    """The confidence sequence of the mean gain, worst case (the verdict) and best case, on the settled events."""
    worst, best, how = evidence(p, review_rate, min_reviewed)
    lo, hi = sequence(worst, alpha=alpha, tuned_for=tuned_for), sequence(best, alpha=alpha, tuned_for=tuned_for)
    return {"n": lo.n, "changed": int(np.count_nonzero(worst)), "gain": lo.mean, "lower_bound": lo.lower,
            "upper_bound": hi.upper,
            "best_case": {"gain": hi.mean, "lower_bound": hi.lower, "upper_bound": hi.upper},
            "labels": how, "tuned_for": tuned_for, "alpha": alpha,
            "method": "confidence sequence (normal mixture; valid at every look)"}


def interim(p: Paired) -> dict:
    """What is at stake before the evidence is in: disagreements, and the bounds of the realised mean gain over all
    the trial's events (unknown labels filled worst and best). Not evidence."""
    differ = p.differ
    out: dict[str, Any] = {"disagreements": int(differ.sum()), "events": int(len(differ)),
                           "unknown_in_disagreements": int((differ & ~p.observed).sum()),
                           "note": "not evidence: the realised gain over this trial's events lies in these bounds "
                                   "whatever the unknown labels turn out to be; it says nothing of later events"}
    if p.bounded:
        out["gain_bounds"] = [float(p.low.mean()), float(p.high.mean())] if len(differ) else [0.0, 0.0]
    return out


def cost_range(ctx, events: pd.DataFrame, outcomes: pd.DataFrame, champ: Decisions, chall: Decisions, *,
               alpha: float, tuned_for: int, margin: float) -> dict | None:
    """The verdict's lower bound over a range of the domain's business cost (fraud: the decline cost), from
    `shadow.cost_range[0]` to `[1]` times the configured value: where the challenger stays not worse."""
    name = ctx.domain.shadow.cost
    params = ctx.config.scoring.model_dump()
    if not name or name not in params:
        return None
    low, high = ctx.config.shadow.cost_range
    points = []
    for factor in np.geomspace(low, high, COST_FACTORS):
        p = paired(ctx, events, outcomes, champ, chall, {**params, name: float(params[name]) * factor})
        lower = primary(p, review_rate=ctx.config.shadow.review_rate, min_reviewed=ctx.config.shadow.min_changed,
                        alpha=alpha, tuned_for=tuned_for)["lower_bound"]
        points.append({"factor": float(factor), name: float(params[name]) * factor, "lower_bound": lower,
                       "not_worse": bool(lower >= -margin)})
    holds = [pt["factor"] for pt in points if pt["not_worse"]]
    return {"parameter": name, "configured": float(params[name]), "points": points,
            "not_worse_from": min(holds) if holds else None, "not_worse_to": max(holds) if holds else None}
