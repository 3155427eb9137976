"""Fraud data: a seeded card-transaction generator and an importer for a user's CSV/Parquet.

The generator follows the public description of the simulator in Le Borgne et al.,
"Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook":
customers and terminals on a 100x100 grid, Poisson transactions per day around noon, and three
fraud scenarios (large amounts, compromised terminals, compromised customers). It is vectorized
numpy; only the outcome (`is_fraud`, `fraud_scenario`) depends on the scenarios, except that a
scenario-3 fraud multiplies the amount by 5, as in the handbook.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from domains import _importing as imp
from domains.errors import RatchetError

log = logging.getLogger(__name__)

START = np.datetime64("2025-04-01T00:00:00", "ns")
DAYS = 120
GRID = 100.0
RADIUS = 5.0
TERMINALS_PER_CUSTOMER = 2  # the handbook's ratio (10,000 terminals for 5,000 customers)
MIN_TERMINALS = 100  # below this a customer would rarely find a terminal within RADIUS
DAY_SECONDS = 86_400
NOON, TIME_STD = 43_200.0, 20_000.0
LARGE_AMOUNT = 220.0  # scenario 1 threshold
TERMINAL_WINDOW, CUSTOMER_WINDOW = 28, 14  # days a compromise lasts (scenarios 2 and 3)
# Compromises per entity per day, tuned so the realised fraud rate is near 1 % at any size.
TERMINAL_COMPROMISE_RATE = 2.2e-4
CUSTOMER_COMPROMISE_RATE = 1.0e-3
CUSTOMER_FRAUD_SHARE = 1 / 3
AMOUNT_FACTOR = 5.0

OURS = ("tx_id", "ts", "customer_id", "terminal_id", "amount", "is_fraud", "fraud_scenario")
MAPPING_KEYS = {"label": "is_fraud", "time": "ts", "amount": "amount", "id": "tx_id",
                "entity": "customer_id", "terminal": "terminal_id"}
REQUIRED_KEYS = ("label", "time", "amount")


# --- generator --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Population:
    """Who transacts where: customer profiles and the terminals within reach of each (CSR lists)."""

    mean_amount: np.ndarray
    rate: np.ndarray  # transactions per day
    n_terminals: int
    starts: np.ndarray
    flat: np.ndarray


def generate(seed: int, size: int = 300_000) -> pd.DataFrame:
    """About `size` transactions over DAYS days from START, sorted by time; deterministic in `seed`."""
    if size < 1:
        raise RatchetError(f"generate: size must be a positive row count; got {size!r}.")
    rng = np.random.default_rng(seed)
    return _transactions(rng, _population(rng, size), START, DAYS)


def continue_population(seed: int, size: int, *, start: pd.Timestamp, days: float, live_seed: int) -> pd.DataFrame:
    """Later transactions of the population `generate(seed, size)` drew: the same customers (profiles, ids) and
    terminals, `days` days from `start`, drawn with `live_seed`. Compromises run as in steady state from the first
    day (some began before `start`), so the fraud rate does not ramp up."""
    population = _population(np.random.default_rng(seed), size)
    rng = np.random.default_rng([seed, live_seed, 0xC0])
    frame = _transactions(rng, population, np.datetime64(pd.Timestamp(start).to_datetime64(), "ns"),
                          int(np.ceil(days)), warm=True)
    return frame[frame["ts"] < pd.Timestamp(start) + pd.Timedelta(days=days)].reset_index(drop=True)


def _population(rng: np.random.Generator, size: int) -> Population:
    mean_amount, rate, cust_xy = _customers(rng, size)
    n_term = max(TERMINALS_PER_CUSTOMER * len(rate), MIN_TERMINALS)
    term_xy = rng.uniform(0.0, GRID, size=(n_term, 2))
    starts, flat = _reachable_terminals(cust_xy, term_xy)
    return Population(mean_amount, rate, n_term, starts, flat)


def _transactions(rng: np.random.Generator, pop: Population, start: np.datetime64, days: int, *,
                  warm: bool = False) -> pd.DataFrame:
    """The population's transactions over `days` days from `start`; `warm`: compromises may have begun before."""
    mean_amount, rate, n_term = pop.mean_amount, pop.rate, pop.n_terminals
    n_cust = len(rate)
    counts = rng.poisson(np.repeat(rate, days)).reshape(n_cust, days)
    cust = np.repeat(np.arange(n_cust), counts.sum(axis=1))
    day = np.repeat(np.tile(np.arange(days), n_cust), counts.ravel())
    n = len(cust)
    seconds = _seconds_of_day(rng, n)
    amount = rng.normal(mean_amount[cust], mean_amount[cust] / 2)
    negative = amount < 0
    # The handbook redraws a negative amount uniformly on (0, 2 x mean).
    amount[negative] = rng.uniform(0.0, 2 * mean_amount[cust[negative]])
    n_reach = np.diff(pop.starts)
    term = pop.flat[pop.starts[cust] + (rng.random(n) * n_reach[cust]).astype(np.int64)]

    scenario = np.zeros(n, dtype=np.int8)
    scenario[amount > LARGE_AMOUNT] = 1
    hit_terminal = _compromised(rng, n_term, TERMINAL_COMPROMISE_RATE, TERMINAL_WINDOW, days, warm)[term, day]
    scenario[hit_terminal] = 2
    hit_customer = _compromised(rng, n_cust, CUSTOMER_COMPROMISE_RATE, CUSTOMER_WINDOW, days, warm)[cust, day]
    stolen = hit_customer & (rng.random(n) < CUSTOMER_FRAUD_SHARE)
    scenario[stolen] = 3
    amount[stolen] *= AMOUNT_FACTOR
    # Cents, and never zero (the handbook's amounts are purchases; imported data may hold 0.00 verifications).
    amount = np.maximum(np.round(amount, 2), 0.01)

    ts = start + (day.astype(np.int64) * DAY_SECONDS + seconds) * np.timedelta64(1, "s")
    del day, seconds, negative, hit_terminal, hit_customer, stolen
    order = np.lexsort((np.arange(n), ts))  # time first; generation order breaks ties
    # Each column is put in time order and its unordered source dropped at once, and the frame takes the arrays
    # without copying them: at 10M rows every array is 80 MB.
    columns = {"tx_id": np.arange(n, dtype=np.int64), "ts": ts[order]}
    del ts
    columns["customer_id"] = cust[order].astype(np.int64, copy=False)
    del cust
    columns["terminal_id"] = term[order].astype(np.int64, copy=False)
    del term
    columns["amount"] = amount[order].astype(np.float64, copy=False)
    del amount
    columns["is_fraud"] = (scenario[order] > 0).astype(np.int8)
    columns["fraud_scenario"] = scenario[order]
    return pd.DataFrame(columns, copy=False)


def _customers(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw customer profiles until their expected transaction count reaches `size`."""
    pool = max(64, int(size / DAYS / 2 * 1.5) + 64)
    while True:
        rate = rng.uniform(0.0, 4.0, size=pool)
        expected = np.cumsum(rate) * DAYS
        if expected[-1] >= size:
            break
        pool *= 2  # a rare short draw: try again with a larger pool
    n_cust = int(np.searchsorted(expected, size)) + 1
    mean_amount = rng.uniform(5.0, 100.0, size=pool)[:n_cust]
    xy = rng.uniform(0.0, GRID, size=(pool, 2))[:n_cust]
    return mean_amount, rate[:n_cust], xy


def _reachable_terminals(cust_xy: np.ndarray, term_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of terminals within RADIUS of each customer, ascending (the nearest one when none is).

    A k-d tree keeps this near-linear in the customer count (a full distance matrix made 10M rows quadratic).
    Customers are asked in chunks: the tree answers in Python lists, about 1 GiB of them at 10M rows at once."""
    tree = cKDTree(term_xy)
    sizes, flats = [], []
    for lo in range(0, len(cust_xy), REACH_CHUNK):
        chunk = cust_xy[lo:lo + REACH_CHUNK]
        lists = tree.query_ball_point(chunk, RADIUS, return_sorted=True)
        lonely = np.flatnonzero([len(hits) == 0 for hits in lists])
        if len(lonely):
            _, nearest = tree.query(chunk[lonely], k=1)
            for i, j in zip(lonely, nearest):
                lists[i] = [int(j)]
        sizes.append(np.fromiter((len(hits) for hits in lists), dtype=np.int64, count=len(lists)))
        flats.append(np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(sizes[-1].sum())))
    starts = np.zeros(len(cust_xy) + 1, dtype=np.int64)
    starts[1:] = np.cumsum(np.concatenate(sizes)) if sizes else []
    return starts, np.concatenate(flats) if flats else np.zeros(0, dtype=np.int64)


REACH_CHUNK = 2048


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Times around noon; draws outside the day are redrawn so each day keeps its Poisson count."""
    seconds = rng.normal(NOON, TIME_STD, size=n)
    bad = (seconds < 0) | (seconds >= DAY_SECONDS)
    while bad.any():
        seconds[bad] = rng.normal(NOON, TIME_STD, size=int(bad.sum()))
        bad = (seconds < 0) | (seconds >= DAY_SECONDS)
    return seconds.astype(np.int64)


def _compromised(rng: np.random.Generator, n_entities: int, rate: float, window: int, days: int,
                 warm: bool = False) -> np.ndarray:
    """Entity x day mask: compromised on day d means every day in [d, d + window) is hit. `warm`: compromises also
    begin in the `window` days before day 0, as they would have in a stream that started earlier."""
    before = window if warm else 0
    events = rng.poisson(rate * n_entities * (days + before))
    who = rng.integers(0, n_entities, size=events)
    when = rng.integers(0, days + before, size=events)  # day `when - before`
    delta = np.zeros((n_entities, days + before + window), dtype=np.int32)
    np.add.at(delta, (who, when), 1)
    np.add.at(delta, (who, when + window), -1)
    return np.cumsum(delta, axis=1)[:, before:before + days] > 0


# --- importer ---------------------------------------------------------------------------------
def load(file: Path, mapping: Mapping[str, str], reading: imp.TimeReading | None = None) -> pd.DataFrame:
    """Read a user's CSV/Parquet and rename mapped columns to ours; keep the other columns as features.

    `mapping`: our key -> the user's column; keys `label`, `time`, `amount` are required, `id`,
    `entity` (customer) and `terminal` optional. A time column is read as `reading` says: text with one
    format for every row (given, or detected from the whole column); numbers with their unit detected
    from the values by default (seconds or milliseconds since the Unix epoch, or seconds from the start
    of the file, as in the public creditcard.csv export). How is noted in `frame.attrs["import_notes"]`. Numeric unmapped columns are kept as numbers, text and categorical
    ones as pandas "string" features (merchant category, channel, country); other kinds are dropped and
    named in `frame.attrs["dropped_columns"]`.
    """
    file = Path(file)
    mapping = {k: v for k, v in mapping.items() if v}  # an option left unset arrives as None or ""
    raw = imp.read(file)
    name = file.name
    imp.unknown_keys(name, mapping, list(MAPPING_KEYS))
    for key in REQUIRED_KEYS:
        if key not in mapping:
            raise RatchetError(f"{name}: no column given for --{key}; pass the column that holds it.")
    imp.mapped_columns(name, mapping, list(raw.columns), role=_flag,
                       roles="/".join(_flag(k) for k in MAPPING_KEYS))

    notes: list[str] = []
    formats: dict[str, str] = {}
    out: dict[str, pd.Series] = {}
    out["tx_id"] = imp.row_key(raw, name, mapping, role="--id")
    out["ts"] = imp.times(raw[mapping["time"]], name, mapping["time"], role="--time",
                          reading=reading or imp.TimeReading(), notes=notes, formats=formats)
    if mapping.get("entity"):
        out["customer_id"] = imp.ids(raw[mapping["entity"]])
    if mapping.get("terminal"):
        out["terminal_id"] = imp.ids(raw[mapping["terminal"]])
    out["amount"] = imp.amounts(raw[mapping["amount"]], name, mapping["amount"], role="--amount")
    negative = (out["amount"] < 0).to_numpy()
    if negative.any():  # refunds and reversals are not transactions a policy blocks
        raise RatchetError(f"{name}: column {mapping['amount']!r} for --amount has {int(negative.sum())} negative "
                           f"amounts (e.g. {imp.examples(raw[mapping['amount']], negative)}); remove refunds and "
                           "reversals (amounts of 0, such as card verifications, are fine).")
    out["is_fraud"] = imp.labels(raw[mapping["label"]], name, mapping["label"], role="--label")
    extra, dropped = imp.features(raw, name, used=list(mapping.values()), ours=OURS, text=True, notes=notes)
    frame = imp.assemble({**out, **extra}, dropped, notes=notes, time_format=formats.get(mapping["time"]))
    if dropped:
        log.info("%s: dropped columns that are neither numbers nor text: %s", name, ", ".join(dropped))
    return frame


def _flag(key: str) -> str:
    return f"--{key}"
