"""The holdout gate: the only way the loop learns anything from the holdout.

Thresholdout (Dwork et al., Science 2015) on the *gain* over the seal's reference policy (the
baseline; after a reseal, the champion of that moment): t is the gain on dev, h the gain on the
holdout. When they agree within a noisy threshold the gate answers t (the holdout reveals
nothing); otherwise it answers h plus Laplace noise and spends one unit of budget. The loop keeps
a candidate only when its answer beats the answer kept with the champion by a Ladder step
(Blum & Hardt 2015), so the holdout is compared through answers, never raw, and noise has to
clear the step (two standard errors by default) before it can replace a champion.
Threshold, noise and step are multiples of the holdout gain's standard error (`gain_se`), measured
per query, so an answer is accurate to about a standard error of what the holdout can tell:
business metrics are heavy-tailed (a handful of caught frauds decide a seed change), so fixed
units are either far below the noise or far above the gains.
Every draw is returned so the ledger can record it and an audit can replay the answer exactly.

The default gate (`lord`) is a test instead: each candidate that passed the dev guards is one test of its holdout
gain over the champion, at the level online FDR control (holdout/fdr.py) gives it; a pass is kept with its gain
corrected for having been selected. It answers pass or fail and, for a pass only, that corrected estimate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

import numpy as np

G = TypeVar("G", float, np.ndarray)  # a gain of one figure, or of each row's contribution


@dataclass(frozen=True)
class GateAnswer:
    kind: str
    dev_gain: float  # t
    holdout_gain: float  # h
    threshold: float  # T
    sigma: float
    eta: float  # Lap(4 sigma), fresh each query
    gamma: float  # Lap(2 sigma), redrawn after each overflow
    xi: float  # Lap(sigma), used only on overflow
    overflow: bool
    answer: float
    budget_left: int
    next_gamma: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_gamma(seed: int, query: int, sigma: float) -> float:
    return float(np.random.default_rng([seed, query, 2]).laplace(0.0, 2 * sigma)) if sigma > 0 else 0.0


def thresholdout(*, dev_gain: float, holdout_gain: float, threshold: float, sigma: float, gamma: float,
                 budget_left: int, seed: int, query: int) -> GateAnswer:
    """One Thresholdout query; draws come from (seed, query) so a replay gives the same answer."""
    rng = np.random.default_rng([seed, query, 1])
    eta = float(rng.laplace(0.0, 4 * sigma)) if sigma > 0 else 0.0
    xi = float(rng.laplace(0.0, sigma)) if sigma > 0 else 0.0
    overflow = abs(holdout_gain - dev_gain) > threshold + gamma + eta
    if overflow:
        answer, left, nxt = holdout_gain + xi, budget_left - 1, draw_gamma(seed, query, sigma)
    else:
        answer, left, nxt = dev_gain, budget_left, gamma
    return GateAnswer("thresholdout", dev_gain, holdout_gain, threshold, sigma, eta, gamma, xi if overflow else 0.0,
                      overflow, float(answer), left, nxt)


@dataclass(frozen=True)
class LordAnswer:
    """One test of the holdout stream: its inputs (gain, se, test number, earlier discoveries, FDR level) and
    everything derived from them, so a replay recomputes it exactly."""

    kind: str
    gain: float  # holdout gain over the champion (raw: never shown for a candidate that fails)
    se: float
    test: int
    discoveries: list[int]
    fdr: float
    exponent: float
    level: float
    critical_z: float
    z: float
    p_value: float
    passed: bool
    estimate: float | None  # the gain over the champion corrected for selection (a pass only)
    lower: float | None
    upper: float | None
    to_beat: float
    answer: float | None  # to_beat + estimate: the candidate's gain over the gate's reference
    budget_left: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lord(*, gain: float, se: float, test: int, discoveries: list[int], fdr: float, exponent: float,
         to_beat: float, budget_left: int) -> LordAnswer:
    """Test `gain` (over the champion, in metric units) at LORD++'s level for this test of the stream."""
    from scipy import stats

    from holdout.fdr import critical_z, lord_level, selected_estimate

    level = lord_level(test, discoveries, alpha=fdr, exponent=exponent)
    c = critical_z(level)
    z = gain / se if se > 0 else (0.0 if gain <= 0 else float("inf"))
    z = min(z, 1e6)  # a gain with no spread at all (every changed row helps): far past any bar
    p = float(stats.norm.sf(z))
    passed = bool(z >= c)
    estimate = lower = upper = answer = None
    if passed:
        if se > 0:
            estimate, lower, upper = (v * se for v in selected_estimate(z, c))
        else:  # no spread: the gain is known exactly
            estimate = lower = upper = float(gain)
        answer = to_beat + estimate
    return LordAnswer("lord", float(gain), float(se), int(test), [int(d) for d in discoveries], float(fdr),
                      float(exponent), level, c, float(z), p, passed, estimate, lower, upper, float(to_beat), answer,
                      int(budget_left) - 1)


def not_worse(*, dev_gain: float, holdout_gain: float, tolerance: float, budget_left: int) -> GateAnswer:
    """The plain check: the holdout gain is not negative beyond a tolerance (reveals h every time)."""
    return GateAnswer("not_worse", dev_gain, holdout_gain, tolerance, 0.0, 0.0, 0.0, 0.0, False, holdout_gain,
                      budget_left, 0.0)


def replay(entry: dict[str, Any], *, seed: int, query: int) -> GateAnswer | LordAnswer:
    """Recompute a recorded answer from its recorded inputs (for the audit)."""
    if entry["kind"] == "lord":
        return lord(gain=entry["gain"], se=entry["se"], test=entry["test"], discoveries=entry["discoveries"],
                    fdr=entry["fdr"], exponent=entry["exponent"], to_beat=entry["to_beat"],
                    budget_left=entry["budget_left"] + 1)
    if entry["kind"] == "not_worse":
        return not_worse(dev_gain=entry["dev_gain"], holdout_gain=entry["holdout_gain"],
                         tolerance=entry["threshold"], budget_left=entry["budget_left"])
    before = entry["budget_left"] + (1 if entry["overflow"] else 0)
    return thresholdout(dev_gain=entry["dev_gain"], holdout_gain=entry["holdout_gain"], threshold=entry["threshold"],
                        sigma=entry["sigma"], gamma=entry["gamma"], budget_left=before, seed=seed, query=query)


def gain(value: G, over: G, *, higher_is_better: bool) -> G:
    """How much better `value` is than `over`, in the metric's units: positive is an improvement whichever way the
    metric points (a cost that fell gained), so the gate, its replay and a shadow trial test one sign. Elementwise
    on arrays (per-row contributions)."""
    return cast(G, (1.0 if higher_is_better else -1.0) * (value - over))  # numpy's operators return Any


def gain_se(dev_a: np.ndarray, dev_b: np.ndarray, hold_a: np.ndarray, hold_b: np.ndarray) -> float:
    """Standard error of the holdout gain of policy a over b: the variance of the paired per-row differences,
    pooled over dev and holdout (both samples of the same pair; one heavy-tailed sample alone can be far off),
    over the holdout's rows."""
    d_dev = np.asarray(dev_a, dtype=float) - np.asarray(dev_b, dtype=float)
    d_hold = np.asarray(hold_a, dtype=float) - np.asarray(hold_b, dtype=float)
    if len(d_hold) == 0:
        return 0.0
    pooled = np.concatenate([d_dev - d_dev.mean(), d_hold - d_hold.mean()]) if len(d_dev) else d_hold - d_hold.mean()
    return float(np.sqrt(np.mean(pooled ** 2) / len(d_hold)))


def ladder_round(value: float, step: float) -> float:
    """Report a best score rounded to the Ladder step (Blum & Hardt 2015), never the raw maximum."""
    if step <= 0 or not np.isfinite(step):
        return float(value)
    return float(np.floor(value / step) * step)
