"""Off-policy evaluation: what would a new pricing policy have earned on the logged offers?

Reward r = (offered price - unit cost) x converted. For a deterministic candidate pi, row i counts
through its importance weight w_i = 1[a_i = pi(x_i)] / p_i, with p_i the logging propensity:

- IPS:   mean(w r)                       (unbiased, high variance)
- SNIPS: sum(w r) / sum(w)               (self-normalized: bounded, slightly biased)
- DR:    mean(q(x, pi(x)) + w (r - q(x, a)))   with an outcome model q fitted on train (by the
  scorer, never by the policy): unbiased when either q or the propensities are right.

Per-row terms are returned so the paired tests can compare two policies on the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

ID_LIKE = ("offer_id", "customer_id", "product_id")
MAX_LEVELS = 30  # categories kept per text feature (the rest become "other")


@dataclass(frozen=True)
class OutcomeModel:
    """P(buy | features, price multiplier): logistic, with the multiplier interacting with every feature."""

    numeric: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray
    levels: tuple[tuple[str, tuple[str, ...]], ...]
    model: Any  # a fitted sklearn LogisticRegression (imported where it is fitted: slow to import)

    def _base(self, rows: pd.DataFrame) -> np.ndarray:
        parts = [(rows[list(self.numeric)].to_numpy(dtype=float) - self.means) / self.scales] if self.numeric else []
        for col, values in self.levels:
            text = rows[col].astype("string").fillna("").to_numpy(dtype=object)
            parts.append(np.stack([text == v for v in values], axis=1).astype(float))
        return np.hstack(parts) if parts else np.zeros((len(rows), 0))

    @staticmethod
    def _design(base: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        r = (ratio - 1.0)[:, None]
        return np.hstack([base, r, base * r])

    def probability(self, rows: pd.DataFrame, *ratios: np.ndarray) -> list[np.ndarray]:
        """P(buy) for each row at each given array of price multipliers (the features are built once)."""
        base = self._base(rows)
        return [self.model.predict_proba(self._design(base, np.asarray(r, float)))[:, 1] for r in ratios]


def feature_columns(rows: pd.DataFrame, hidden: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Numeric and text feature columns of the logs (ids, time and hidden columns left out)."""
    skip = set(ID_LIKE) | set(hidden) | {"ts"}
    numeric = [c for c in rows.columns if c not in skip and pd.api.types.is_numeric_dtype(rows[c])
               and not pd.api.types.is_bool_dtype(rows[c])]
    text = [c for c in rows.columns if c not in skip and c not in numeric
            and (pd.api.types.is_string_dtype(rows[c]) or isinstance(rows[c].dtype, pd.CategoricalDtype))]
    return numeric, text


def fit_outcome_model(train: pd.DataFrame, *, label: str, price: str, reference: str,
                      hidden: tuple[str, ...]) -> OutcomeModel:
    numeric, text = feature_columns(train, hidden=(label, price, "propensity", *hidden))
    values = train[numeric].to_numpy(dtype=float)
    means = values.mean(axis=0) if numeric else np.zeros(0)
    scales = values.std(axis=0) if numeric else np.zeros(0)
    scales = np.where(scales > 0, scales, 1.0)
    levels = tuple((c, tuple(train[c].astype("string").fillna("").value_counts().index[:MAX_LEVELS].tolist()))
                   for c in text)
    from sklearn.linear_model import LogisticRegression

    shell = OutcomeModel(tuple(numeric), means, scales, levels, LogisticRegression(C=1.0, max_iter=2000))
    ratio = train[price].to_numpy(dtype=float) / train[reference].to_numpy(dtype=float)
    design = shell._design(shell._base(train), ratio)
    y = train[label].to_numpy()
    if len(np.unique(y)) < 2:  # a constant outcome: the model is that constant
        y = y.copy()
        y[0] = 1 - y[0]
    shell.model.fit(design, y)
    return shell


def grid_index(prices: np.ndarray, reference: np.ndarray, grid: np.ndarray, tol: float = 0.006) -> np.ndarray:
    """Index of each price in the grid of reference multiples (to the cent), -1 when off the grid."""
    candidates = reference[:, None] * grid[None, :]
    gap = np.abs(np.asarray(prices, float)[:, None] - candidates)
    best = gap.argmin(axis=1)
    ok = gap[np.arange(len(best)), best] <= tol + 1e-9 * np.abs(candidates[np.arange(len(best)), best])
    return np.where(ok, best, -1)


def weights(matched: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    return np.where(matched, 1.0 / propensity, 0.0)


def effective_sample_share(w: np.ndarray) -> float:
    """(sum w)^2 / sum w^2, as a share of the rows (0 when nothing matches)."""
    total = float((w ** 2).sum())
    return float(w.sum() ** 2 / total / len(w)) if total > 0 and len(w) else 0.0


def dr_terms(q_decided: npt.NDArray[np.float64], q_logged: npt.NDArray[np.float64], reward: npt.NDArray[np.float64],
             w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return q_decided + w * (reward - q_logged)


def snips_terms(reward: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-row terms whose mean is the SNIPS estimate."""
    mean_w = float(w.mean())
    return w * reward / mean_w if mean_w > 0 else np.zeros_like(reward)


def interval(terms: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-row terms (rows resampled)."""
    if len(terms) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.array([terms[rng.integers(0, len(terms), len(terms))].mean() for _ in range(n_boot)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
