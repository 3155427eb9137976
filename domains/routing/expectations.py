"""The routing data contract, as a Great Expectations suite.

Every frame of tickets that enters ratchet (generated or imported) is validated against it before
the holdout is split and sealed. The plumbing (validation, error wording) is shared with the other
domains in domains/_gx.py.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from domains._gx import ID_TYPES, NUMBER_TYPES, check, features, id_and_time, import_gx, present, suite

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

SUITE_NAME = "routing_data_contract"
REQUIRED = ("ticket_id", "ts", "resolved_by", "handling_minutes")
OPTIONAL_IDS = ("customer_id",)
OPTIONAL_TEXT = ("priority", "subject", "body")
OUTCOME_ONLY = ("issue_type",)
OURS = (*REQUIRED, *OPTIONAL_IDS, *OPTIONAL_TEXT, *OUTCOME_ONLY)
PRIORITIES = ["low", "normal", "high", "urgent"]
MINUTES_MAX = 1e12  # a finite ceiling, so an infinite handling time fails the range check
TEXT_TYPES = ["StringDtype"]  # pandas "string" dtype, as load() and generate() make text
FEATURE_TYPES = [*NUMBER_TYPES, *TEXT_TYPES]


def check_contract(frame: pd.DataFrame, *, source: str, feature_columns: Sequence[str] | None = None) -> None:
    """Validate `frame`; raise RatchetError naming each failing column, expectation and row count.

    `feature_columns=None` takes every column that is not one of ours, as the routing adapter does.
    """
    gx = import_gx()
    check(gx, frame, SUITE_NAME, _expectations(gx, frame, _features(frame, feature_columns)), source=source)


def suite_json(frame: pd.DataFrame, *, feature_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The suite `check_contract` would apply to `frame`, as a JSON-able dict for the workspace."""
    gx = import_gx()
    return suite(gx, SUITE_NAME, _expectations(gx, frame, _features(frame, feature_columns))).to_json_dict()


def _features(frame: pd.DataFrame, feature_columns: Sequence[str] | None) -> Sequence[str]:
    return [c for c in frame.columns if c not in OURS] if feature_columns is None else feature_columns


def _expectations(gx: ModuleType, frame: pd.DataFrame, feature_columns: Sequence[str]) -> list[Expectation]:
    """The expectations: which columns, their types, nulls, uniqueness and value ranges."""
    E = gx.expectations
    optional = [c for c in (*OPTIONAL_IDS, *OPTIONAL_TEXT, *OUTCOME_ONLY) if c in frame.columns]
    expectations = [
        *present(E, (*REQUIRED, *optional)),
        *id_and_time(E, "ticket_id"),
        E.ExpectColumnValuesToBeInTypeList(column="resolved_by", type_list=TEXT_TYPES),
        E.ExpectColumnValuesToBeInTypeList(column="handling_minutes", type_list=NUMBER_TYPES),
        # The queue simulation replays every handling time: zero or infinite work breaks it.
        E.ExpectColumnValuesToBeBetween(column="handling_minutes", min_value=0, max_value=MINUTES_MAX,
                                        strict_min=True),
    ]
    for col in optional:
        types = ID_TYPES if col in OPTIONAL_IDS else TEXT_TYPES
        expectations.append(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=types))
    if "priority" in frame.columns:
        # The scorer weighs and judges SLAs by these four levels; any other value would weigh 1 silently.
        expectations.append(E.ExpectColumnValuesToBeInSet(column="priority", value_set=PRIORITIES))
    return expectations + features(E, feature_columns, FEATURE_TYPES)
