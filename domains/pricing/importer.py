"""The pricing importer: a user's CSV/Parquet of logged offers onto the pricing domain's names.

Each row is one offer the logging policy made: when, at what price, with what probability of
that price (the propensity), whether the customer bought, and the product's unit cost and
reference price. Off-policy evaluation reweights the logs by the propensity, so a log without
it, or with propensities that are not probabilities, is refused here rather than scored wrongly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from domains import _importing as imp
from domains.errors import RatchetError

# Mapping key -> our column, in the order the columns come out.
MAPPING_KEYS = {"id": "offer_id", "time": "ts", "entity": "customer_id", "product": "product_id",
                "reference": "ref_price", "cost": "unit_cost", "price": "offered_price",
                "propensity": "propensity", "outcome": "converted", "protected": "protected_group"}
REQUIRED_KEYS = ("propensity", "time", "price", "outcome", "cost", "reference")
MEANING = {"time": "when the offer was made", "price": "the offered price", "outcome": "whether the customer "
           "bought (0/1)", "cost": "the unit cost", "reference": "the product's reference price"}
OURS = tuple(MAPPING_KEYS.values())
NO_PROPENSITY = ("no column given for propensity; pricing logs need the logging policy's propensity (its "
                 "probability of offering the logged price), and without it no off-policy estimate is valid: "
                 "pass --map propensity=COLUMN naming the column where the logging policy recorded it.")


def load(file: Path, mapping: Mapping[str, str], reading: imp.TimeReading | None = None) -> pd.DataFrame:
    """Read a user's log of offers; rename mapped columns to ours and keep the rest as features.

    `mapping`: our key -> the user's column. Required: `time`, `price` (the offered price),
    `propensity` (the logging policy's probability of that price, in (0, 1]), `outcome` (0/1 or
    true/false), `cost` (unit cost, >= 0) and `reference` (reference price); prices must be > 0.
    Optional: `id` (default: the row number in file order), `entity` (customer), `product` and
    `protected` (a protected attribute: it becomes `protected_group`, read by the fairness
    guardrail and never shown to a policy). A numeric time column is read as `reading` says (by
    default its unit and epoch are detected from the values). Unmapped numeric columns are kept as
    features (booleans as int8), text columns as pandas "string" features; other kinds are dropped and named in
    `frame.attrs["dropped_columns"]`. Rows are sorted by time, file order breaking ties.
    """
    return imp.load_mapped(file, mapping, keys=list(MAPPING_KEYS), required=REQUIRED_KEYS, meaning=MEANING,
                           ours=OURS, convert=_ours, reading=reading, refusals={"propensity": NO_PROPENSITY})


def _ours(raw: pd.DataFrame, name: str, mapping: Mapping[str, str], ts: pd.Series) -> dict[str, pd.Series]:
    """Our columns, converted and checked, in MAPPING_KEYS order."""
    def col(key: str) -> tuple[pd.Series, str, str]:
        return raw[mapping[key]], name, mapping[key]

    out: dict[str, pd.Series] = {}
    out["offer_id"] = imp.row_key(raw, name, mapping, role=imp.map_flag("id"))
    out["ts"] = ts
    if "entity" in mapping:
        out["customer_id"] = imp.ids(raw[mapping["entity"]])
    if "product" in mapping:
        out["product_id"] = imp.ids(raw[mapping["product"]])
    out["ref_price"] = _money(*col("reference"), key="reference", strict=True)
    out["unit_cost"] = _money(*col("cost"), key="cost", strict=False)
    out["offered_price"] = _money(*col("price"), key="price", strict=True)
    out["propensity"] = _propensities(*col("propensity"))
    out["converted"] = imp.labels(*col("outcome"), role=imp.map_flag("outcome"))
    if "protected" in mapping:
        out["protected_group"] = raw[mapping["protected"]].astype("string")  # groups are labels, not numbers
    return out


def _money(series: pd.Series, name: str, col: str, *, key: str, strict: bool) -> pd.Series:
    """Amounts that must be > 0 (`strict`, prices) or >= 0 (costs); nulls are left to the contract."""
    values = imp.amounts(series, name, col, role=imp.map_flag(key))
    bad = (values.notna() & ~(values > 0 if strict else values >= 0)).to_numpy()
    if bad.any():
        bound = "> 0" if strict else ">= 0"
        raise RatchetError(f"{name}: column {col!r} for {imp.map_flag(key)} has {int(bad.sum())} values that are not "
                           f"{bound} (e.g. {imp.examples(series, bad)}); fix those rows or map another column.")
    return values


def _propensities(series: pd.Series, name: str, col: str) -> pd.Series:
    """Probabilities in (0, 1]; nulls, text and booleans are refused (a weight cannot be guessed)."""
    if pd.api.types.is_bool_dtype(series):
        values = pd.Series(np.nan, index=series.index)
    else:
        values = pd.to_numeric(series, errors="coerce").astype(np.float64)
    bad = (~((values > 0) & (values <= 1))).to_numpy()
    if bad.any():
        raise RatchetError(f"{name}: column {col!r} for {imp.map_flag('propensity')} has {int(bad.sum())} rows that are "
                           f"not probabilities in (0, 1] (e.g. {imp.examples(series, bad)}); the propensity is the "
                           "logging policy's probability of the offered price: fix those rows or map the right "
                           "column.")
    return values
