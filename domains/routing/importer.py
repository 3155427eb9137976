"""The routing importer: a user's CSV/Parquet of resolved support tickets onto the routing domain's names.

Each row is one ticket: when it arrived, which team finally resolved it (the label a policy learns
to predict) and how many minutes that team spent on it (the queue simulation replays those, so a
ticket without a positive handling time cannot be scored and is refused here). Subject and body
are free text; every other column is a feature a policy may read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from domains import _importing as imp
from domains.errors import RatchetError

PRIORITIES = ("low", "normal", "high", "urgent")
# Mapping key -> our column, in the order the columns come out.
MAPPING_KEYS = {"id": "ticket_id", "time": "ts", "entity": "customer_id", "priority": "priority",
                "subject": "subject", "body": "body", "team": "resolved_by", "handling": "handling_minutes"}
REQUIRED_KEYS = ("time", "team", "handling")
MEANING = {"time": "when the ticket arrived", "team": "the team that finally resolved the ticket",
           "handling": "the handling time in minutes"}
OURS = tuple(MAPPING_KEYS.values())


def load(file: Path, mapping: Mapping[str, str], reading: imp.TimeReading | None = None) -> pd.DataFrame:
    """Read a user's ticket history; rename mapped columns to ours and keep the rest as features.

    `mapping`: our key -> the user's column. Required: `time`, `team` (the team that finally
    resolved the ticket; non-empty text) and `handling` (handling time in minutes, > 0).
    Optional: `id` (default: the row number in file order), `entity` (customer), `priority`
    (low/normal/high/urgent, any case), `subject` and `body` (free text; nulls become "").
    A numeric time column is read as `reading` says (by default its unit and epoch are detected
    from the values). Unmapped numeric columns are kept as features (booleans as int8), text columns as pandas "string" features;
    other kinds are dropped and named in `frame.attrs["dropped_columns"]`. A column named
    `issue_type` is kept but, like in generated data, never shown to a policy. Rows are sorted
    by time, file order breaking ties.
    """
    return imp.load_mapped(file, mapping, keys=list(MAPPING_KEYS), required=REQUIRED_KEYS, meaning=MEANING,
                           ours=OURS, convert=_ours, reading=reading)


def _ours(raw: pd.DataFrame, name: str, mapping: Mapping[str, str], ts: pd.Series) -> dict[str, pd.Series]:
    """Our columns, converted and checked, in MAPPING_KEYS order."""
    def col(key: str) -> tuple[pd.Series, str, str]:
        return raw[mapping[key]], name, mapping[key]

    out: dict[str, pd.Series] = {}
    out["ticket_id"] = imp.row_key(raw, name, mapping, role=imp.map_flag("id"))
    out["ts"] = ts
    if "entity" in mapping:
        out["customer_id"] = imp.ids(raw[mapping["entity"]])
    if "priority" in mapping:
        out["priority"] = _priorities(*col("priority"))
    for key in ("subject", "body"):
        if key in mapping:
            out[key] = raw[mapping[key]].astype("string").fillna("")  # no text is still text
    out["resolved_by"] = _teams(*col("team"))
    out["handling_minutes"] = _minutes(*col("handling"))
    return out


def _teams(series: pd.Series, name: str, col: str) -> pd.Series:
    """Team names as pandas "string", stripped; a ticket without one has no label, so it is refused."""
    values = series.astype("string").str.strip()
    bad = (values.isna() | (values == "")).to_numpy(dtype=bool)
    if bad.any():
        raise RatchetError(f"{name}: column {col!r} for {imp.map_flag('team')} has {int(bad.sum())} rows without a team "
                           f"(e.g. {imp.examples(series, bad)}); every ticket needs the team that resolved it: "
                           "fill or drop those rows, or map another column.")
    return values


def _minutes(series: pd.Series, name: str, col: str) -> pd.Series:
    """Handling minutes as float64, finite and > 0: the queue simulation replays every one."""
    values = imp.amounts(series, name, col, role=imp.map_flag("handling"))
    bad = (~(np.isfinite(values) & (values > 0))).to_numpy()
    if bad.any():
        raise RatchetError(f"{name}: column {col!r} for {imp.map_flag('handling')} has {int(bad.sum())} values that are "
                           f"not handling times > 0 minutes (e.g. {imp.examples(series, bad)}); fix or drop those "
                           "rows, or map another column.")
    return values


def _priorities(series: pd.Series, name: str, col: str) -> pd.Series:
    """Priorities as lower-case pandas "string"; anything outside the four levels (nulls too) is refused."""
    values = series.astype("string").str.strip().str.lower()
    bad = (~values.isin(PRIORITIES)).fillna(True).to_numpy(dtype=bool)
    if bad.any():
        raise RatchetError(f"{name}: column {col!r} for {imp.map_flag('priority')} has {int(bad.sum())} values that are "
                           f"not one of {', '.join(PRIORITIES)} (e.g. {imp.examples(series, bad)}); recode them "
                           "or leave priority unmapped.")
    return values
