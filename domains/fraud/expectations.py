"""The fraud data contract, as a Great Expectations suite.

Every frame that enters ratchet (generated or imported) is validated against it before the
holdout is split and sealed. Great Expectations is imported inside the functions: it takes
seconds to import and only `init` needs it.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from domains._gx import ID_TYPES, INT_TYPES, NUMBER_TYPES, check, features, id_and_time, import_gx, present, suite

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

SUITE_NAME = "fraud_data_contract"
REQUIRED = ("tx_id", "ts", "amount", "is_fraud")
OPTIONAL_IDS = ("customer_id", "terminal_id")
OURS = (*REQUIRED, *OPTIONAL_IDS, "fraud_scenario")
AMOUNT_MAX = 1e12  # a finite ceiling, so an infinite amount fails the range check


def check_contract(frame: pd.DataFrame, *, source: str, feature_columns: Sequence[str] = ()) -> None:
    """Validate `frame`; raise RatchetError naming each failing column, expectation and row count."""
    gx = import_gx()
    check(gx, frame, SUITE_NAME, _expectations(gx, frame, feature_columns), source=source)


def suite_json(frame: pd.DataFrame, *, feature_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The suite `check_contract` would apply to `frame`, as a JSON-able dict for the workspace.

    `feature_columns=None` takes every column that is not one of ours, as the fraud adapter does.
    """
    if feature_columns is None:
        feature_columns = [c for c in frame.columns if c not in OURS]
    gx = import_gx()
    return suite(gx, SUITE_NAME, _expectations(gx, frame, feature_columns)).to_json_dict()


def _expectations(gx: ModuleType, frame: pd.DataFrame, feature_columns: Sequence[str]) -> list[Expectation]:
    """The expectations: which columns, their types, nulls, uniqueness and value ranges."""
    E = gx.expectations
    ids = [c for c in OPTIONAL_IDS if c in frame.columns]
    expectations = [
        *present(E, (*REQUIRED, *ids)),
        *id_and_time(E, "tx_id"),
        E.ExpectColumnValuesToBeInTypeList(column="amount", type_list=NUMBER_TYPES),
        # Zero is a card verification, not an error; a negative amount is a refund, not a transaction.
        E.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=AMOUNT_MAX),
        E.ExpectColumnValuesToBeInTypeList(column="is_fraud", type_list=INT_TYPES),
        E.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[0, 1]),
    ]
    expectations += [E.ExpectColumnValuesToBeInTypeList(column=c, type_list=ID_TYPES) for c in ids]
    if "fraud_scenario" in frame.columns:  # only the generator writes it
        expectations.append(E.ExpectColumnValuesToBeInSet(column="fraud_scenario", value_set=[0, 1, 2, 3]))
    # Features are numbers or text categories (merchant category, channel, country), as the importer makes them.
    return expectations + features(E, feature_columns, [*NUMBER_TYPES, "StringDtype"])
