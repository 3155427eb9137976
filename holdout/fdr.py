"""The holdout test stream: online false-discovery-rate control (LORD++) and selection-corrected estimates.

Every candidate that passes the dev guards is one test on the holdout: H0 "it is no better than the champion".
Test t gets the level (Javanmard & Montanari 2018; Ramdas, Yang, Wainwright & Jordan 2017)

    alpha_t = gamma_t W0 + (alpha - W0) gamma_{t - tau_1} + alpha sum_{j >= 2} gamma_{t - tau_j}

where tau_j is the test number of the j-th discovery (a pass) and gamma is a non-increasing sequence summing to
one. Each discovery earns back level for the tests after it, so a long run keeps finding gains instead of
starving (per-look spending gives look 700 a level of 1e-7). Over the whole stream, the expected share of
discoveries that are false stays under alpha.

A kept gain was selected by its holdout test: its raw holdout gain is biased upward (the winner's curse). The
estimate reported is the median-unbiased estimate given the selection (Z >= c, Z the gain in standard errors,
c the test's critical value), with its conditional interval (truncated normal; Lee, Sun, Sun & Taylor 2016;
Fithian, Sun & Taylor 2014). A gain that barely passed is reported far below its raw value; one far above the
bar keeps almost all of it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

from scipy import optimize, special

# gamma_j = j^-2 / zeta(2) = 6 / (pi^2 j^2), the per-look spending series, now counted in holdout tests (not dev
# looks) and restarted by every discovery: 61 % of a wealth unit goes to the first test after one.
GAMMA_EXPONENT = 2.0


@lru_cache(maxsize=None)
def _zeta(s: float) -> float:
    return float(special.zeta(s, 1))


def gamma(j: int, exponent: float = GAMMA_EXPONENT) -> float:
    """The j-th term (1-based) of the spending sequence; 0 for j < 1."""
    return j ** -exponent / _zeta(exponent) if j >= 1 else 0.0


def lord_level(test: int, discoveries: Sequence[int], *, alpha: float, exponent: float = GAMMA_EXPONENT) -> float:
    """LORD++'s level for test number `test` (1-based) given the test numbers of earlier discoveries."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"the false-discovery rate must lie in (0, 1); got {alpha!r}")
    if test < 1:
        raise ValueError(f"tests are numbered from 1; got {test!r}")
    earlier = sorted(d for d in discoveries if d < test)
    if len(earlier) != len(discoveries):
        raise ValueError(f"discoveries {list(discoveries)} must all come before test {test}")
    w0 = alpha / 2
    level = gamma(test, exponent) * w0
    for j, tau in enumerate(earlier):
        level += (alpha - w0 if j == 0 else alpha) * gamma(test - tau, exponent)
    return float(level)


def critical_z(level: float) -> float:
    """The gain in standard errors a one-sided test at `level` needs."""
    return float(-special.ndtri(level))


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


# The hybrid's first stage: theta lies within this many standard errors of z with probability 1 - HYBRID_BETA.
HYBRID_BETA = 0.005


def selected_estimate(z: float, c: float, *, confidence: float = 0.90, beta: float = HYBRID_BETA,
                      ) -> tuple[float, float, float]:
    """(median-unbiased estimate, lower, upper) of theta, the mean of Z ~ N(theta, 1) in standard errors, given
    Z = z was seen because it cleared c. Hybrid inference on a winner (Andrews, Kitagawa & McCloskey 2024): the
    selection-conditional law of Z, further truncated to |Z - theta| <= q (q the two-sided 1 - beta quantile),
    so a z just above c gives an estimate near z - q instead of one running off to minus infinity. The interval
    is two-sided at `confidence` (beta of it spent on the first stage)."""
    if z < c:
        raise ValueError(f"z {z:.6g} did not clear the critical value {c:.6g}: nothing was selected")
    q = critical_z(beta / 2)
    top = _cdf(q)

    def above(theta: float) -> float:  # P_theta(Z >= z | Z >= c, |Z - theta| <= q), 0 at z - q, 1 at z + q
        low = _cdf(max(c, theta - q) - theta)
        return (top - _cdf(z - theta)) / max(top - low, 1e-300)

    def solve(p: float) -> float:
        return float(optimize.brentq(lambda t: above(t) - p, z - q, z + q, xtol=1e-9))

    tail = (1 - confidence - beta) / (1 - beta) / 2
    return solve(0.5), solve(tail), solve(1 - tail)
