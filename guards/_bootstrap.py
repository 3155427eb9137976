"""Seeded, memory-bounded bootstrap of a mean (shared by significance and segments)."""
from __future__ import annotations

import numpy as np

# About 32 MB of int64 indices per chunk: 2,000 resamples of 60k rows never hold 1 GB at once.
MAX_CELLS = 4_000_000


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `values`, drawn in chunks."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0 or n_boot < 1:
        raise ValueError(f"bootstrap needs rows and resamples; got {n} rows, {n_boot} resamples")
    out = np.empty(n_boot, dtype=float)
    chunk = max(1, MAX_CELLS // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start:start + size] = values[idx].mean(axis=1)
    return out
