"""The pricing data contract, as a Great Expectations suite.

Every frame of logged offers that enters ratchet (generated or imported) is validated against it
before the holdout is split and sealed. The plumbing (validation, error wording) is shared with
the other domains in domains/_gx.py.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from domains._gx import ID_TYPES, INT_TYPES, NUMBER_TYPES, check, features, id_and_time, import_gx, present, suite

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

SUITE_NAME = "pricing_data_contract"
REQUIRED = ("offer_id", "ts", "offered_price", "propensity", "converted", "unit_cost", "ref_price")
OPTIONAL_IDS = ("customer_id", "product_id")
OUTCOME_ONLY = ("protected_group",)
OURS = (*REQUIRED, *OPTIONAL_IDS, *OUTCOME_ONLY)
PRICE_MAX = 1e12  # a finite ceiling, so an infinite price or cost fails the range check
FEATURE_TYPES = [*NUMBER_TYPES, "StringDtype"]  # text features as pandas "string" dtype, as load() makes them


def check_contract(frame: pd.DataFrame, *, source: str, feature_columns: Sequence[str] = ()) -> None:
    """Validate `frame`; raise RatchetError naming each failing column, expectation and row count."""
    gx = import_gx()
    check(gx, frame, SUITE_NAME, _expectations(gx, frame, feature_columns), source=source)


def suite_json(frame: pd.DataFrame, *, feature_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The suite `check_contract` would apply to `frame`, as a JSON-able dict for the workspace.

    `feature_columns=None` takes every column that is not one of ours, as the pricing adapter does.
    """
    if feature_columns is None:
        feature_columns = [c for c in frame.columns if c not in OURS]
    gx = import_gx()
    return suite(gx, SUITE_NAME, _expectations(gx, frame, feature_columns)).to_json_dict()


def _expectations(gx: ModuleType, frame: pd.DataFrame, feature_columns: Sequence[str]) -> list[Expectation]:
    """The expectations: which columns, their types, nulls, uniqueness and value ranges."""
    E = gx.expectations
    ids = [c for c in OPTIONAL_IDS if c in frame.columns]
    outcome_only = [c for c in OUTCOME_ONLY if c in frame.columns]
    expectations = [
        *present(E, (*REQUIRED, *ids, *outcome_only)),
        *id_and_time(E, "offer_id"),
        *_money(E, "offered_price", strict=True),
        *_money(E, "ref_price", strict=True),
        *_money(E, "unit_cost", strict=False),
        E.ExpectColumnValuesToBeInTypeList(column="propensity", type_list=NUMBER_TYPES),
        # A zero propensity would divide by zero in the off-policy weights.
        E.ExpectColumnValuesToBeBetween(column="propensity", min_value=0, max_value=1, strict_min=True),
        E.ExpectColumnValuesToBeInTypeList(column="converted", type_list=INT_TYPES),
        E.ExpectColumnValuesToBeInSet(column="converted", value_set=[0, 1]),
    ]
    expectations += [E.ExpectColumnValuesToBeInTypeList(column=c, type_list=ID_TYPES) for c in ids]
    return expectations + features(E, feature_columns, FEATURE_TYPES)


def _money(E: ModuleType, col: str, *, strict: bool) -> list[Expectation]:
    return [E.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMBER_TYPES),
            E.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=PRICE_MAX, strict_min=strict)]
