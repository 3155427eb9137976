"""Seeded, memory-bounded bootstrap of a mean (shared by significance and segments)."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

# About 32 MB of int64 indices per chunk: 2,000 resamples of 60k rows never hold 1 GB at once.
MAX_CELLS = 4_000_000


def _dense(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    out = np.empty(n_boot, dtype=float)
    chunk = max(1, MAX_CELLS // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start:start + size] = values[idx].mean(axis=1)
    return out


def _sparse(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Same distribution, drawing only the nonzero rows: a resample holds Binomial(n, m/n) of them.

    Paired differences between a candidate and its champion are mostly exact zeros (the rows both
    decide alike), so this is many times cheaper than drawing every row.
    """
    n = len(values)
    nonzero = values[values != 0]
    counts = rng.binomial(n, len(nonzero) / n, size=n_boot)
    out = np.empty(n_boot, dtype=float)
    ends = np.cumsum(counts)
    start = 0
    while start < n_boot:
        # As many resamples as fit in MAX_CELLS drawn values (at least one).
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + MAX_CELLS, side="right")))
        picks = nonzero[rng.integers(0, len(nonzero), size=int(ends[stop - 1] - base))]
        cums = np.concatenate([[0.0], np.cumsum(picks)])
        bounds = np.concatenate([[0], ends[start:stop] - base])
        out[start:stop] = (cums[bounds[1:]] - cums[bounds[:-1]]) / n
        start = stop
    return out


def _grouped(levels: npt.NDArray[np.float64], counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Same distribution, drawing how many of the n picks land on each distinct value: a resample's mean depends
    on nothing else. Per-row contributions take few distinct values (a decline cost, a fraud's amount), so this
    costs resamples x distinct values instead of resamples x rows (1 s -> 35 ms for 29k changed rows of 58k)."""
    n = int(counts.sum())
    return rng.multinomial(n, counts / n, size=n_boot) @ levels / n


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `values`."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0 or n_boot < 1:
        raise ValueError(f"bootstrap needs rows and resamples; got {n} rows, {n_boot} resamples")
    nonzero = np.count_nonzero(values)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) * 4 < nonzero:  # measured: a multinomial cell costs about 4 row draws
        return _grouped(levels, counts, n_boot, rng)
    if nonzero * 2 < n:
        return _sparse(values, n_boot, rng)
    return _dense(values, n_boot, rng)
