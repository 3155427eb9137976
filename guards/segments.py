"""Segments: an average gain may hide a segment the candidate made clearly worse.

For every segment family (e.g. amount_band) and segment (e.g. high) with enough rows, the paired
per-row difference is bootstrapped; the segment fails when even the upper confidence bound of its
mean change is below -tolerance (significantly hurt by more than the tolerance). The confidence
is split across the segments tested (Bonferroni), so an honest candidate is not failed just
because one of many segments drew unlucky noise. Read repeatedly as data arrives (a shadow
trial), the bound is the anytime-valid confidence sequence of guards.anytime instead
(`anytime_for`: where it is tightest), so looking often does not fail more honest candidates.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from domains._memo import by_identity
from guards._bootstrap import bootstrap_means
from guards._result import GuardName, GuardResult
from guards.anytime import sequence


@by_identity
def _factorized(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, names) of a segment family's labels: the dev labels are the same array on every experiment."""
    found: tuple[np.ndarray, np.ndarray] = pd.factorize(np.asarray(labels, dtype=object), use_na_sentinel=False)
    return found


def check_segments(candidate_contrib: np.ndarray, champion_contrib: np.ndarray, segments: Mapping[str, np.ndarray],
                   *, higher_is_better: bool, min_rows: int = 200, tolerance: float, confidence: float = 0.95,
                   seed: int, n_boot: int = 2000, metric: str = "the primary metric",
                   anytime_for: int | None = None) -> GuardResult:
    """Fail when some segment with >= min_rows rows is significantly worse by more than `tolerance` per row."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    cand = np.asarray(candidate_contrib, dtype=float)
    champ = np.asarray(champion_contrib, dtype=float)
    if cand.shape != champ.shape or cand.ndim != 1:
        return GuardResult(GuardName.SEGMENT, False, f"per-row contributions do not pair up: candidate {cand.shape}, "
                           f"champion {champ.shape}", {"n_candidate": int(cand.size), "n_champion": int(champ.size)})
    for family, labels in segments.items():
        if len(labels) != len(cand):
            return GuardResult(GuardName.SEGMENT, False, f"segment family {family} labels {len(labels)} rows but the "
                               f"contributions cover {len(cand)}", {"family": family, "n_labels": int(len(labels))})
    bad = ~(np.isfinite(cand) & np.isfinite(champ))
    if bad.any():
        return GuardResult(GuardName.SEGMENT, False, f"{int(bad.sum())} per-row contributions are NaN/inf "
                           f"(first at row {int(np.argmax(bad))})", {"non_finite": int(bad.sum())})
    diff = cand - champ if higher_is_better else champ - cand

    groups: list[tuple[str, str, np.ndarray]] = []
    skipped = 0
    for family, labels in segments.items():
        codes, names = _factorized(labels)
        for code, name in enumerate(names):
            mask = codes == code
            if mask.sum() >= min_rows:
                groups.append((str(family), str(name), diff[mask]))
            else:
                skipped += 1
    alpha = (1.0 - confidence) / max(len(groups), 1)
    rng = np.random.default_rng(seed)
    figures: dict[str, float | int | str] = {"metric": metric, "segments_tested": len(groups),
                                             "segments_skipped": skipped, "confidence_used": 1.0 - alpha,
                                             "tolerance": float(tolerance), "min_rows": int(min_rows)}
    hurt: list[str] = []
    worded = "fell" if higher_is_better else "rose"
    conf = f"{100 * (1 - alpha):.4g}%"
    for family, name, d in groups:
        mean = float(d.mean())
        upper = (sequence(d, alpha=alpha, tuned_for=anytime_for).upper if anytime_for
                 else float(np.quantile(bootstrap_means(d, n_boot, rng), 1.0 - alpha)))
        key = f"{family}={name}"
        figures.update({f"{key}.n": int(len(d)), f"{key}.mean_diff": mean, f"{key}.upper": upper})
        if upper < -tolerance:
            hurt.append(f"segment {key}: {metric} per row {worded} by {abs(mean):.6g} ({conf} upper bound of the gain "
                        f"{upper:+.6g}, tolerance {tolerance:g}, {len(d)} rows)")
    figures["segments_hurt"] = len(hurt)
    if hurt:
        return GuardResult(GuardName.SEGMENT, False, "; ".join(hurt), figures)
    return GuardResult(GuardName.SEGMENT, True, f"no segment significantly hurt beyond tolerance {tolerance:g} "
                       f"({len(groups)} segments tested, {skipped} below {min_rows} rows skipped)", figures)
