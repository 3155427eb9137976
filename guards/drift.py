"""Distribution drift: PSI and the two-sample KS test, with the usual PSI bands.

PSI bands (industry convention, see FIELD-NOTES): < 0.1 stable, 0.1 to 0.25 watch, > 0.25 alarm.
Numeric columns are binned at the reference's quantiles; anything else (strings, booleans,
categories such as routing teams) is compared by per-category shares. Missing values form
their own bin, so a column that starts arriving empty drifts too.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from guards._columns import datetime_seconds
from guards._result import GuardName, GuardResult

EPSILON = 1e-4  # share given to an empty bin so the log ratio stays finite


def _values(x: npt.ArrayLike) -> tuple[np.ndarray, bool]:
    """(array, is_numeric): numbers and datetimes as floats (NaN for missing), anything else as objects."""
    s = pd.Series(x) if not isinstance(x, pd.Series) else x
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=object), False
    if pd.api.types.is_datetime64_any_dtype(s):
        return datetime_seconds(s), True
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan), True
    return s.to_numpy(dtype=object), False


def _shares(counts: np.ndarray) -> np.ndarray:
    shares = counts / max(counts.sum(), 1)
    return np.where(shares == 0, EPSILON, shares)


def _psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r, c = _shares(ref_counts), _shares(cur_counts)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class _Sample:
    """What PSI and KS need of a numeric reference sample: its sorted values, quantile bins and their counts."""

    values: np.ndarray  # ascending, missing dropped
    missing: int
    edges: np.ndarray  # interior quantile edges (tied quantiles collapse into one)
    spikes: np.ndarray  # edges that hold a whole bin's share (e.g. amount 0): their own bin, or ties would hide them
    counts: np.ndarray  # the sample's count per bin, missing last

    @classmethod
    def of(cls, values: np.ndarray, bins: int) -> "_Sample":
        ok = np.sort(values[~np.isnan(values)])
        edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(ok) else np.array([])
        spikes = edges[[np.mean(ok == e) >= 1.0 / bins for e in edges]] if len(edges) else edges
        sample = cls(ok, len(values) - len(ok), edges, spikes, np.array([]))
        sample = replace(sample, counts=sample.count(values))
        for array in (sample.values, sample.edges, sample.spikes, sample.counts):
            array.flags.writeable = False  # shared by every experiment judged against this reference
        return sample

    def count(self, values: np.ndarray) -> np.ndarray:
        """Counts of `values` in this sample's bins (missing last)."""
        ok = values[~np.isnan(values)]
        binned = 2 * np.searchsorted(self.edges, ok, side="left") + np.isin(ok, self.spikes)
        return np.append(np.bincount(binned, minlength=2 * len(self.edges) + 2), len(values) - len(ok))


_SAMPLES: dict[tuple[str, int], _Sample] = {}  # the champion's decisions are the reference of every experiment


def _sample(values: np.ndarray, bins: int, *, remember: bool = False) -> _Sample:
    """`values` as a reference sample; `remember`: kept by content (digest), so a reference used again is free."""
    if not remember:
        return _Sample.of(values, bins)
    key = (hashlib.sha256(np.ascontiguousarray(values).data).hexdigest(), bins)
    if key not in _SAMPLES:
        while len(_SAMPLES) >= 4:
            del _SAMPLES[next(iter(_SAMPLES))]
        _SAMPLES[key] = _Sample.of(values, bins)
    return _SAMPLES[key]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`."""
    ref, ref_num = _values(reference)
    cur, cur_num = _values(current)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError(f"psi needs values on both sides; got {len(ref)} reference, {len(cur)} current")
    if ref_num and cur_num:
        sample = _sample(ref, bins)
        return _psi_from_counts(sample.counts, sample.count(cur))
    ref_s = pd.Series(ref, dtype=object).astype(str)
    cur_s = pd.Series(cur, dtype=object).astype(str)
    cats = sorted(set(ref_s) | set(cur_s))
    return _psi_from_counts(ref_s.value_counts().reindex(cats, fill_value=0).to_numpy(),
                            cur_s.value_counts().reindex(cats, fill_value=0).to_numpy())


ASYMPTOTIC_N = 10_000  # effective sample size n*m/(n+m) from which the KS p-value is the asymptotic one


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (numeric values, missing dropped)."""
    ref, ref_num = _values(reference)
    cur, cur_num = _values(current)
    if not (ref_num and cur_num):
        raise ValueError("ks needs numeric values on both sides; use psi for categories")
    return _ks(np.sort(ref[~np.isnan(ref)]), cur[~np.isnan(cur)])


def _ks(a: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """KS of `current` against the sorted reference `a` (missing dropped on both sides)."""
    if len(a) == 0 or len(current) == 0:
        return float("nan"), float("nan")
    effective = len(a) * len(current) / (len(a) + len(current))
    if effective < ASYMPTOTIC_N:
        res = stats.ks_2samp(a, current)
        return float(res.statistic), float(res.pvalue)
    # Large samples: the same statistic, and the p-value from the limiting Kolmogorov distribution (within ~1 % of
    # scipy's finite-n one there, which costs ~20 ms on 58k rows a side; every experiment records one).
    b = np.sort(current)
    pooled = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, pooled, "right") / len(a) - np.searchsorted(b, pooled, "right") / len(b))))
    return d, float(stats.kstwobign.sf(d * np.sqrt(effective)))


def band(value: float, *, watch: float = 0.1, alarm: float = 0.25) -> str:
    """'stable' below watch, 'watch' up to alarm, 'alarm' above it."""
    if np.isnan(value) or value > alarm:
        return "alarm"
    return "stable" if value < watch else "watch"


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, columns: Iterable[str], *,
                 watch: float = 0.1, alarm: float = 0.25) -> dict[str, dict[str, Any]]:
    """Per column: psi, ks statistic and p-value (numeric only), verdict stable/watch/alarm."""
    report: dict[str, dict[str, Any]] = {}
    for col in columns:
        for side, frame in (("reference", reference), ("current", current)):
            if col not in frame.columns:
                raise ValueError(f"drift report: column {col!r} is missing from the {side} frame")
        value = psi(reference[col], current[col])
        numeric = _values(reference[col])[1] and _values(current[col])[1]
        stat, p = ks(reference[col], current[col]) if numeric else (None, None)
        report[col] = {"psi": value, "ks": stat, "ks_pvalue": p, "verdict": band(value, watch=watch, alarm=alarm)}
    return report


def check_score_drift(champion_scores: np.ndarray, candidate_scores: np.ndarray, *, watch: float = 0.1,
                      alarm: float = 0.25) -> GuardResult:
    """Fail when the candidate's decisions moved beyond the alarm band from the champion's (PSI)."""
    ref, ref_num = _values(champion_scores)
    cur, cur_num = _values(candidate_scores)
    numeric = ref_num and cur_num and len(ref) > 0 and len(cur) > 0
    sample = _sample(ref, 10, remember=True) if numeric else None
    value = _psi_from_counts(sample.counts, sample.count(cur)) if sample else psi(champion_scores, candidate_scores)
    verdict = band(value, watch=watch, alarm=alarm)
    figures: dict[str, float | int | str] = {"psi": value, "verdict": verdict, "watch": watch, "alarm": alarm,
                                             "n_champion": int(len(champion_scores)),
                                             "n_candidate": int(len(candidate_scores))}
    if sample:
        figures["ks"], figures["ks_pvalue"] = _ks(sample.values, cur[~np.isnan(cur)])
    if verdict == "alarm":
        return GuardResult(GuardName.DRIFT, False,
                           f"candidate decisions drifted from the champion's: PSI {value:.4f} is "
                           f"above the alarm level {alarm:g}", figures)
    where = f"in the watch band ({watch:g} to {alarm:g}), noted" if verdict == "watch" else f"stable (below {watch:g})"
    return GuardResult(GuardName.DRIFT, True,
                       f"candidate decisions vs the champion's: PSI {value:.4f}, {where}", figures)
