"""The pricing data contract (a Great Expectations suite): what passes, what is refused and how."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from domains.pricing.data import generate
from domains.pricing.expectations import OURS, check_contract, suite_json
from domains.pricing.importer import load
from optimizer.base.errors import RatchetError

FEATURES = ["segment", "channel", "loyalty_tier", "basket_value", "region", "day_of_week", "season"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(0, 5000)


@pytest.fixture(scope="module")
def small(frame) -> pd.DataFrame:
    return frame.head(500).copy()


def refusal(frame: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(RatchetError) as info:
        check_contract(frame, source="offers.csv", **kwargs)
    message = str(info.value)
    assert message.startswith("data contract failed for 'offers.csv': ") and "\n" not in message
    assert message.endswith("Fix the data and run init again.")
    return message


def test_generated_data_passes(frame, capfd):
    check_contract(frame, source="generated", feature_columns=FEATURES)
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's progress bars are silenced


def _propensity_above_one(f):
    f.loc[3, "propensity"] = 1.5


def _propensity_zero(f):
    f.loc[[4, 9], "propensity"] = 0.0


def _null_price(f):
    f.loc[[1, 2, 3], "offered_price"] = np.nan


def _infinite_price(f):
    f.loc[6, "offered_price"] = np.inf


def _zero_reference(f):
    f.loc[[7, 8], "ref_price"] = 0.0


def _negative_cost(f):
    f.loc[5, "unit_cost"] = -0.01


def _duplicate_id(f):
    f.loc[10, "offer_id"] = f.loc[11, "offer_id"]


def _converted_two(f):
    f.loc[12, "converted"] = 2


def _null_group(f):
    f.loc[[0, 1], "protected_group"] = pd.NA


def _null_customer(f):
    f["customer_id"] = f["customer_id"].astype("Int64")
    f.loc[13, "customer_id"] = pd.NA


def _null_text_feature(f):
    f.loc[[20, 21, 22], "segment"] = pd.NA


def _ancient_time(f):
    f.loc[[0, 1], "ts"] = pd.Timestamp("1985-06-01")


@pytest.mark.parametrize("corrupt, column, expectation, count", [
    (_propensity_above_one, "propensity", "expect_column_values_to_be_between (min 0 strictly, max 1)", 1),
    (_propensity_zero, "propensity", "expect_column_values_to_be_between (min 0 strictly, max 1)", 2),
    (_null_price, "offered_price", "expect_column_values_to_not_be_null", 3),
    (_infinite_price, "offered_price", "expect_column_values_to_be_between (min 0 strictly, max 1e+12)", 1),
    (_zero_reference, "ref_price", "expect_column_values_to_be_between (min 0 strictly, max 1e+12)", 2),
    (_negative_cost, "unit_cost", "expect_column_values_to_be_between (min 0, max 1e+12)", 1),
    (_duplicate_id, "offer_id", "expect_column_values_to_be_unique", 2),
    (_converted_two, "converted", "expect_column_values_to_be_in_set {0,1}", 1),
    (_null_group, "protected_group", "expect_column_values_to_not_be_null", 2),
    (_null_customer, "customer_id", "expect_column_values_to_not_be_null", 1),
    (_null_text_feature, "segment", "expect_column_values_to_not_be_null", 3),
    (_ancient_time, "ts", "expect_column_values_to_be_between (min 1990-01-01, max 2100-01-01)", 2),
], ids=["propensity-1.5", "propensity-0", "null-price", "inf-price", "zero-reference", "negative-cost",
        "duplicate-id", "converted-2", "null-group", "null-customer", "null-text-feature", "ts-1985"])
def test_each_violation_is_named(small, corrupt, column, expectation, count):
    bad = small.copy()
    corrupt(bad)
    message = refusal(bad, feature_columns=FEATURES)
    assert f"column '{column}': {expectation} failed on {count} of {len(small)} rows" in message


def test_all_failures_in_one_message(small):
    bad = small.copy()
    _null_price(bad)
    _propensity_above_one(bad)
    message = refusal(bad)
    assert re.search(r"column 'offered_price': .* failed on 3 of \d+ rows; .*column 'propensity': .* failed on 1 of",
                     message)


def test_missing_columns_and_wrong_types(small):
    message = refusal(small.drop(columns="propensity").assign(ts=small["ts"].astype(str)))
    assert "column 'propensity': expect_column_to_exist failed (the column is missing)" in message
    assert message.count("'propensity'") == 1  # reported once, not once per expectation on it
    assert "column 'ts': expect_column_values_to_be_in_type_list" in message and "observed str" in message
    text_price = refusal(small.assign(offered_price=small["offered_price"].astype(str)))
    assert "column 'offered_price': expect_column_values_to_be_in_type_list" in text_price


def test_features_must_be_numbers_or_pandas_strings(small):
    check_contract(small, source="generated", feature_columns=FEATURES)  # string dtype text passes
    message = refusal(small.assign(segment=small["segment"].astype(object)), feature_columns=FEATURES)
    assert "column 'segment': expect_column_values_to_be_in_type_list" in message and "StringDtype" in message
    assert "column 'ghost': expect_column_to_exist failed" in refusal(small, feature_columns=["ghost"])


def test_optional_columns_may_be_absent(small):
    check_contract(small.drop(columns=["customer_id", "product_id", "protected_group"]), source="minimal")


def test_empty_frame(small):
    assert "expect_table_row_count_to_be_between" in refusal(small.iloc[:0])


def test_imported_file_passes_and_null_feature_is_refused(tmp_path, small):
    from domains import get_domain

    path = tmp_path / "offers.csv"
    small.rename(columns={"offered_price": "price", "converted": "bought"}).to_csv(path, index=False)
    got = load(path, {"time": "ts", "price": "price", "propensity": "propensity", "outcome": "bought",
                      "cost": "unit_cost", "reference": "ref_price", "id": "offer_id", "entity": "customer_id",
                      "product": "product_id", "protected": "protected_group"})
    get_domain("pricing").check_contract(got, source="offers.csv")
    got.loc[[4, 5], "basket_value"] = np.nan
    message = refusal(got, feature_columns=FEATURES)
    assert "column 'basket_value': expect_column_values_to_not_be_null failed on 2 of 500 rows" in message
    assert "'season'" not in message


def test_suite_json_is_storable(small):
    suite = suite_json(small)
    assert json.loads(json.dumps(suite)) == suite
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    for expected in [("expect_column_values_to_be_unique", "offer_id"),
                     ("expect_column_values_to_be_in_set", "converted"),
                     ("expect_column_values_to_be_between", "propensity"),
                     ("expect_column_values_to_not_be_null", "protected_group"),
                     ("expect_column_values_to_not_be_null", "segment"),
                     ("expect_column_to_exist", "product_id")]:
        assert expected in kinds
    features = {e["kwargs"].get("column") for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_be_in_type_list"} - set(OURS)
    assert features == set(FEATURES)  # None takes every column that is not ours
    assert ("expect_column_to_exist", "product_id") not in {
        (e["type"], e["kwargs"].get("column")) for e in suite_json(small.drop(columns="product_id"))["expectations"]}


def test_pricing_domain_conformance():
    from domains import get_domain
    from domains.conformance import check_domain

    check_domain(get_domain("pricing"))
