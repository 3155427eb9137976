"""Pricing data: seeded logs of offers made by a randomized logging policy.

Each row is one offer: who was offered what (customer and context features, the product's
reference price and unit cost), the price the logging policy drew from the grid with its
propensity, and whether the customer bought. Conversion follows a hidden logit demand model whose
price sensitivity depends on the customer segment; `conversion_probability` exposes it so tests
can compare off-policy estimates with the true expected profit. The protected attribute is an
outcome-only column: the fairness guardrail reads it, a policy never sees it.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from domains.errors import RatchetError

START = np.datetime64("2025-01-06T00:00:00", "ns")
DAYS = 182
DAY_SECONDS = 86_400
GRID = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)  # price = reference price x multiplier
# The logging policy: mostly near the reference price, rarely far above it (low support there).
LOGGING = {
    "web": (0.10, 0.20, 0.28, 0.20, 0.12, 0.07, 0.02, 0.01),
    "app": (0.12, 0.20, 0.25, 0.20, 0.13, 0.07, 0.02, 0.01),
    "store": (0.05, 0.15, 0.40, 0.20, 0.12, 0.05, 0.02, 0.01),
}
SEGMENTS = ("bargain", "regular", "premium")
SEGMENT_SHARE = (0.35, 0.45, 0.20)
CHANNELS = ("web", "app", "store")
CHANNEL_SHARE = (0.5, 0.3, 0.2)
REGIONS = ("north", "south", "east", "west")
SEASONS = ("winter", "spring", "summer", "autumn")
N_PRODUCTS = 40

# Hidden demand model: logit P(buy) = base + effects - sensitivity[segment] x (multiplier - 1) x 10.
BASE = {"bargain": -0.2, "regular": 0.0, "premium": 0.3}
SENSITIVITY = {"bargain": 0.55, "regular": 0.35, "premium": 0.18}
CHANNEL_EFFECT = {"web": 0.0, "app": 0.15, "store": 0.35}
REGION_EFFECT = {"north": 0.1, "south": -0.1, "east": 0.0, "west": 0.05}
SEASON_EFFECT = {"winter": 0.1, "spring": 0.0, "summer": -0.1, "autumn": 0.0}
LOYALTY_EFFECT = 0.15  # per tier, 0..3
WEEKEND_EFFECT = 0.1
# The protected group is more common in some regions and segments: a proxy a policy could exploit.
PROTECTED_RATE = {"north": 0.2, "south": 0.55, "east": 0.3, "west": 0.35}
PROTECTED_BARGAIN_BONUS = 0.15


def generate(seed: int, size: int = 100_000) -> pd.DataFrame:
    """About `size` logged offers over DAYS days from START, sorted by time; deterministic in `seed`."""
    if size < 1:
        raise RatchetError(f"generate: size must be a positive row count; got {size!r}.")
    rng = np.random.default_rng(seed)
    return _offers(rng, _population(rng, int(size)), int(size), START, DAYS)


def continue_population(seed: int, size: int, *, start: pd.Timestamp, days: float, live_seed: int) -> pd.DataFrame:
    """Later offers to the population `generate(seed, size)` drew (the same customers and products), at its daily
    volume, `days` days from `start`, drawn with `live_seed`."""
    population = _population(np.random.default_rng(seed), int(size))
    n = int(np.random.default_rng([seed, live_seed, 0xD0]).poisson(size / DAYS * days))
    return _offers(np.random.default_rng([seed, live_seed, 0xC0]), population, max(n, 1),
                   np.datetime64(pd.Timestamp(start).to_datetime64(), "ns"), days)


def _population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Customers (segment, region, loyalty, protected group) and products (reference price, cost share)."""
    n_cust = max(50, n // 8)
    cust_segment = rng.choice(len(SEGMENTS), size=n_cust, p=SEGMENT_SHARE)
    cust_region = rng.integers(0, len(REGIONS), size=n_cust)
    cust_loyalty = rng.choice(4, size=n_cust, p=(0.4, 0.3, 0.2, 0.1))
    p_protected = np.array([PROTECTED_RATE[r] for r in REGIONS])[cust_region] + \
        PROTECTED_BARGAIN_BONUS * (cust_segment == 0)
    cust_group = np.where(rng.random(n_cust) < p_protected, "B", "A")
    ref = np.round(rng.lognormal(np.log(40.0), 0.7, size=N_PRODUCTS), 2) + 1.0
    cost_share = rng.uniform(0.45, 0.7, size=N_PRODUCTS)
    return {"segment": cust_segment, "region": cust_region, "loyalty": cust_loyalty, "group": cust_group,
            "ref": ref, "cost_share": cost_share}


def _offers(rng: np.random.Generator, pop: dict[str, np.ndarray], n: int, start: np.datetime64,
            days: float) -> pd.DataFrame:
    cust_segment, cust_region, cust_loyalty, cust_group = pop["segment"], pop["region"], pop["loyalty"], pop["group"]
    ref, cost_share = pop["ref"], pop["cost_share"]
    cust = rng.integers(0, len(cust_segment), size=n)
    product = rng.integers(0, N_PRODUCTS, size=n)
    seconds = rng.integers(0, int(days * DAY_SECONDS), size=n)
    ts = start + seconds * np.timedelta64(1, "s")
    order = np.lexsort((np.arange(n), ts))
    cust, product, ts = cust[order], product[order], ts[order]
    channel = rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARE)
    segment = np.array(SEGMENTS)[cust_segment[cust]]
    basket = np.round(rng.lognormal(np.log(60.0) + 0.3 * (segment == "premium"), 0.6), 2)
    day = pd.DatetimeIndex(ts)
    frame = pd.DataFrame({
        "offer_id": np.arange(n, dtype=np.int64),
        "ts": ts,
        "customer_id": cust.astype(np.int64),
        "product_id": product.astype(np.int64),
        "segment": pd.array(segment, dtype="string"),
        "channel": pd.array(np.array(CHANNELS)[channel], dtype="string"),
        "loyalty_tier": cust_loyalty[cust].astype(np.int64),
        "basket_value": basket.astype(np.float64),
        "region": pd.array(np.array(REGIONS)[cust_region[cust]], dtype="string"),
        "day_of_week": day.day_of_week.to_numpy().astype(np.int64),
        "season": pd.array(np.array(SEASONS)[(day.month.to_numpy() % 12) // 3], dtype="string"),
        "ref_price": ref[product].astype(np.float64),
        "unit_cost": np.round(ref[product] * cost_share[product], 2).astype(np.float64),
    })
    probs = logging_propensities(frame)
    cum = probs.cumsum(axis=1)
    pick = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(GRID) - 1)
    multiplier = np.array(GRID)[pick]
    frame["offered_price"] = np.round(frame["ref_price"].to_numpy() * multiplier, 2)
    frame["propensity"] = probs[np.arange(n), pick]
    p_buy = conversion_probability(frame, frame["offered_price"].to_numpy())
    frame["converted"] = (rng.random(n) < p_buy).astype(np.int8)
    frame["protected_group"] = pd.array(cust_group[cust], dtype="string")
    return frame


def logging_propensities(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The logging policy's probability of each GRID multiplier per row (rows x len(GRID))."""
    table = np.array([LOGGING[c] for c in CHANNELS])
    index = pd.Categorical(frame["channel"].astype(str), categories=CHANNELS).codes
    probs: npt.NDArray[np.float64] = table[index]
    return probs


def conversion_probability(frame: pd.DataFrame, prices: np.ndarray) -> npt.NDArray[np.float64]:
    """The hidden demand model: P(buy | row, price). Known only to the generator and to tests."""
    seg = frame["segment"].astype(str).to_numpy()
    ratio = np.asarray(prices, dtype=float) / frame["ref_price"].to_numpy(dtype=float)
    logit: npt.NDArray[np.float64]
    logit = (_lookup(BASE, seg) + _lookup(CHANNEL_EFFECT, frame["channel"].astype(str).to_numpy())
             + _lookup(REGION_EFFECT, frame["region"].astype(str).to_numpy())
             + _lookup(SEASON_EFFECT, frame["season"].astype(str).to_numpy())
             + LOYALTY_EFFECT * frame["loyalty_tier"].to_numpy(dtype=float)
             + WEEKEND_EFFECT * (frame["day_of_week"].to_numpy() >= 5)
             + 0.2 * np.log(frame["basket_value"].to_numpy(dtype=float) / 60.0)
             - _lookup(SENSITIVITY, seg) * (ratio - 1.0) * 10.0)
    return 1.0 / (1.0 + np.exp(-logit))


def true_profit(frame: pd.DataFrame, prices: np.ndarray) -> npt.NDArray[np.float64]:
    """Expected profit per row of offering `prices`, under the hidden demand model."""
    prices = np.asarray(prices, dtype=float)
    cost: npt.NDArray[np.float64] = frame["unit_cost"].to_numpy(dtype=float)
    return (prices - cost) * conversion_probability(frame, prices)


def _lookup(table: Mapping[str, float], keys: np.ndarray) -> npt.NDArray[np.float64]:
    values: npt.NDArray[np.float64] = pd.Series(keys).map(table).to_numpy(dtype=float)
    return values
