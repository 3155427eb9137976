"""Is the candidate's gain over the champion real, or noise from a seed change or a lucky draw?

Both policies decide the same rows, so the test is paired: the per-row difference of
contributions is resampled (bootstrap) and the gain counts only when the lower confidence bound
of its mean clears `min_effect`.

Many looks: every experiment compared with the champion on the same dev rows is one more chance
to keep noise. Under the default holdout gate (`lord`) this test is a screen at the configured
confidence ("screen"): the run's error is controlled by the gate's holdout test stream (online FDR),
on rows the proposer never saw. With another gate the confidence is tightened with the look number k:

- "spending" (default): alpha_k = alpha * 6 / (pi^2 k^2). Since sum_k 1/k^2 = pi^2 / 6, the
  alphas over an unbounded run of looks add up to at most alpha, so the chance of ever keeping a
  pure-noise candidate stays below alpha however long the loop runs.
- "bonferroni": alpha_k = alpha / k. Looser per look, but its sum grows like log k, so it only
  controls the error for a run that stops at k looks.

Training randomness: resampling rows treats both models as fixed, so a change of random seed can
look significant on one dev sample. `model_sd` (how much the champion's dev score moves when it is
refitted, see optimizer/loop/experiment.py) widens the bound: a difference of two fits carries
sqrt(2) x model_sd of noise the rows cannot show.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from guards._bootstrap import bootstrap_means
from guards._result import GuardName, GuardResult

SPENDING_RULES = ("screen", "spending", "bonferroni", "none")


def adjusted_alpha(confidence: float, looks: int, rule: str = "spending") -> float:
    """The one-sided error allowed at look number `looks` (1-based) under `rule`."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    if looks < 1:
        raise ValueError(f"looks counts experiments so far and starts at 1; got {looks!r}")
    alpha = 1.0 - confidence
    if rule == "spending":
        return alpha * 6.0 / (math.pi**2 * looks**2)
    if rule == "bonferroni":
        return alpha / looks
    if rule in ("screen", "none"):  # a screen before a gate that controls the error; none: for studying the loop
        return alpha
    raise ValueError(f"alpha_spending must be one of {SPENDING_RULES}; got {rule!r}")


def paired_bootstrap(candidate: np.ndarray, champion: np.ndarray, *, higher_is_better: bool, min_effect: float,
                     confidence: float, n_boot: int = 2000, seed: int, looks: int = 1,
                     alpha_spending: str = "spending", metric: str = "the primary metric",
                     model_sd: float = 0.0) -> GuardResult:
    """Keep a gain only when its lower confidence bound, after the look adjustment, beats min_effect."""
    alpha = adjusted_alpha(confidence, looks, alpha_spending)
    cand = np.asarray(candidate, dtype=float)
    champ = np.asarray(champion, dtype=float)
    if cand.shape != champ.shape or cand.ndim != 1:
        return GuardResult(GuardName.SIGNIFICANCE, False, f"per-row contributions do not pair up: candidate has shape "
                           f"{cand.shape}, champion {champ.shape}; both must score the same rows",
                           {"n_candidate": int(cand.size), "n_champion": int(champ.size)})
    bad = ~(np.isfinite(cand) & np.isfinite(champ))
    if len(cand) < 2 or bad.any():
        return GuardResult(GuardName.SIGNIFICANCE, False, f"cannot test {metric}: {len(cand)} paired rows, "
                           f"{int(bad.sum())} of them NaN/inf", {"n": int(len(cand)), "non_finite": int(bad.sum())})
    diff = cand - champ if higher_is_better else champ - cand
    mean = float(diff.mean())
    means = bootstrap_means(diff, n_boot, np.random.default_rng(seed))
    boot_lower, boot_upper = (float(q) for q in np.quantile(means, [alpha, 1.0 - alpha]))
    # With 2,000 resamples a quantile below ~10/2,000 is just the extreme draw: cross-check with the
    # normal approximation and keep the more cautious bound.
    se = float(diff.std(ddof=1) / math.sqrt(len(diff)))
    z = float(stats.norm.isf(alpha))
    lower, upper = min(boot_lower, mean - z * se), max(boot_upper, mean + z * se)
    model_noise = z * math.sqrt(2.0) * max(float(model_sd), 0.0)
    if model_noise > 0:  # row noise and refit noise add in variance
        lower, upper = mean - math.hypot(mean - lower, model_noise), mean + math.hypot(upper - mean, model_noise)
    passed = bool(lower > min_effect)
    decided_by = "normal" if mean - z * se <= boot_lower else "bootstrap percentile"
    # The p-value of the bound that decided (its half-width is z of its standard errors, refit noise included),
    # so p <= alpha exactly when the bound clears min_effect: never a figure from a test that did not decide.
    half = mean - lower
    p_value = float(stats.norm.sf((mean - min_effect) * z / half)) if half > 0 else float(mean <= min_effect)
    figures = {
        "metric": metric, "test": f"paired {decided_by} lower bound" + (", widened by refit noise" if model_sd > 0
                                                                         else ""),
        "mean_diff": mean, "lower": lower, "upper": upper,
        "lower_bootstrap": boot_lower, "lower_normal": mean - z * se, "confidence_used": 1.0 - alpha,
        "n": int(len(diff)), "p_value": p_value, "min_effect": float(min_effect),
        "looks": int(looks), "alpha_spending": alpha_spending, "n_boot": int(n_boot), "seed": int(seed),
        "model_sd": float(model_sd),
    }
    conf = f"{100 * (1 - alpha):.4g}%"
    how = (f"{decided_by} bound, p {p_value:.2g}; " + ("dev screen" if alpha_spending == "screen" else
                                                       f"look {looks}, {alpha_spending} adjustment")
           + (f", refit noise {model_sd:.4g}" if model_sd > 0 else ""))
    if passed:
        detail = (f"{metric} gained {mean:+.6g} per row over the champion on {len(diff)} paired rows; lower {conf} "
                  f"bound {lower:+.6g} clears the minimum effect {min_effect:g} ({how})")
    else:
        detail = (f"{metric} gain {mean:+.6g} per row is not significant: lower {conf} bound {lower:+.6g} does not "
                  f"clear the minimum effect {min_effect:g} on {len(diff)} paired rows ({how})")
    return GuardResult(GuardName.SIGNIFICANCE, passed, detail, figures)
