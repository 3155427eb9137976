"""The routing data contract (a Great Expectations suite): what passes, what is refused and how."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from domains.routing.data import generate
from domains.routing.expectations import OURS, check_contract, suite_json
from domains.routing.importer import load
from optimizer.base.errors import RatchetError

FEATURES = ["channel", "tier", "product"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(0, 3000)


@pytest.fixture(scope="module")
def small(frame) -> pd.DataFrame:
    return frame.head(300).copy()


def refusal(frame: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(RatchetError) as info:
        check_contract(frame, source="tickets.csv", **kwargs)
    message = str(info.value)
    assert message.startswith("data contract failed for 'tickets.csv': ") and "\n" not in message
    assert message.endswith("Fix the data and run init again.")
    return message


def test_generated_data_passes(frame, capfd):
    check_contract(frame, source="generated")  # None: every column not ours is a feature
    check_contract(frame, source="generated", feature_columns=FEATURES)
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's progress bars are silenced


def _zero_minutes(f):
    f.loc[3, "handling_minutes"] = 0.0


def _negative_minutes(f):
    f.loc[[4, 9], "handling_minutes"] = -5.0


def _infinite_minutes(f):
    f.loc[6, "handling_minutes"] = np.inf


def _null_minutes(f):
    f.loc[[1, 2, 3], "handling_minutes"] = np.nan


def _null_team(f):
    f.loc[[0, 1], "resolved_by"] = pd.NA


def _duplicate_id(f):
    f.loc[10, "ticket_id"] = f.loc[11, "ticket_id"]


def _critical_priority(f):
    f.loc[12, "priority"] = "critical"


def _null_priority(f):
    f.loc[[13, 14], "priority"] = pd.NA


def _null_body(f):
    f.loc[15, "body"] = pd.NA


def _null_customer(f):
    f["customer_id"] = f["customer_id"].astype("Int64")
    f.loc[16, "customer_id"] = pd.NA


def _null_issue(f):
    f.loc[17, "issue_type"] = pd.NA


def _null_text_feature(f):
    f.loc[[20, 21, 22], "channel"] = pd.NA


def _ancient_time(f):
    f.loc[[0, 1], "ts"] = pd.Timestamp("1985-06-01")


MINUTES_RANGE = "expect_column_values_to_be_between (min 0 strictly, max 1e+12)"


@pytest.mark.parametrize("corrupt, column, expectation, count", [
    (_zero_minutes, "handling_minutes", MINUTES_RANGE, 1),
    (_negative_minutes, "handling_minutes", MINUTES_RANGE, 2),
    (_infinite_minutes, "handling_minutes", MINUTES_RANGE, 1),
    (_null_minutes, "handling_minutes", "expect_column_values_to_not_be_null", 3),
    (_null_team, "resolved_by", "expect_column_values_to_not_be_null", 2),
    (_duplicate_id, "ticket_id", "expect_column_values_to_be_unique", 2),
    (_critical_priority, "priority", "expect_column_values_to_be_in_set {low,normal,high,urgent}", 1),
    (_null_priority, "priority", "expect_column_values_to_not_be_null", 2),
    (_null_body, "body", "expect_column_values_to_not_be_null", 1),
    (_null_customer, "customer_id", "expect_column_values_to_not_be_null", 1),
    (_null_issue, "issue_type", "expect_column_values_to_not_be_null", 1),
    (_null_text_feature, "channel", "expect_column_values_to_not_be_null", 3),
    (_ancient_time, "ts", "expect_column_values_to_be_between (min 1990-01-01, max 2100-01-01)", 2),
], ids=["minutes-0", "minutes-negative", "minutes-inf", "null-minutes", "null-team", "duplicate-id",
        "priority-critical", "null-priority", "null-body", "null-customer", "null-issue", "null-text-feature",
        "ts-1985"])
def test_each_violation_is_named(small, corrupt, column, expectation, count):
    bad = small.copy()
    corrupt(bad)
    message = refusal(bad)
    assert f"column '{column}': {expectation} failed on {count} of {len(small)} rows" in message


def test_all_failures_in_one_message(small):
    bad = small.copy()
    _null_team(bad)
    _zero_minutes(bad)
    message = refusal(bad)
    assert re.search(r"column 'resolved_by': .* failed on 2 of \d+ rows; "
                     r".*column 'handling_minutes': .* failed on 1 of", message)


def test_missing_columns_and_wrong_types(small):
    message = refusal(small.drop(columns="handling_minutes").assign(ts=small["ts"].astype(str)))
    assert "column 'handling_minutes': expect_column_to_exist failed (the column is missing)" in message
    assert message.count("'handling_minutes'") == 1  # reported once, not once per expectation on it
    assert "column 'ts': expect_column_values_to_be_in_type_list" in message and "observed str" in message
    text_minutes = refusal(small.assign(handling_minutes=small["handling_minutes"].astype(str)))
    assert "column 'handling_minutes': expect_column_values_to_be_in_type_list" in text_minutes
    for col in ("resolved_by", "priority", "subject"):  # text must be pandas "string", as load() makes it
        message = refusal(small.assign(**{col: small[col].astype(object)}))
        assert f"column '{col}': expect_column_values_to_be_in_type_list (StringDtype)" in message


def test_features_must_be_numbers_or_pandas_strings(small):
    check_contract(small, source="generated", feature_columns=FEATURES)  # string dtype text passes
    message = refusal(small.assign(tier=small["tier"].astype(object)))
    assert "column 'tier': expect_column_values_to_be_in_type_list" in message and "StringDtype" in message
    assert "column 'ghost': expect_column_to_exist failed" in refusal(small, feature_columns=["ghost"])


def test_optional_columns_may_be_absent(small):
    optional = ["customer_id", "priority", "subject", "body", "issue_type"]
    check_contract(small.drop(columns=optional), source="minimal")


def test_empty_frame(small):
    assert "expect_table_row_count_to_be_between" in refusal(small.iloc[:0])


def test_imported_file_passes_and_null_feature_is_refused(tmp_path, small):
    from domains import get_domain

    path = tmp_path / "tickets.csv"
    small.rename(columns={"resolved_by": "team", "handling_minutes": "minutes"}).to_csv(path, index=False)
    got = load(path, {"time": "ts", "team": "team", "handling": "minutes", "id": "ticket_id", "entity": "customer_id",
                      "priority": "priority", "subject": "subject", "body": "body"})
    get_domain("routing").check_contract(got, source="tickets.csv")
    got.loc[[4, 5], "product"] = pd.NA
    message = refusal(got)
    assert "column 'product': expect_column_values_to_not_be_null failed on 2 of 300 rows" in message
    assert "'channel'" not in message


def test_suite_json_is_storable(small):
    suite = suite_json(small)
    assert json.loads(json.dumps(suite)) == suite
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    for expected in [("expect_column_values_to_be_unique", "ticket_id"),
                     ("expect_column_values_to_be_in_set", "priority"),
                     ("expect_column_values_to_be_between", "handling_minutes"),
                     ("expect_column_values_to_not_be_null", "resolved_by"),
                     ("expect_column_values_to_not_be_null", "issue_type"),
                     ("expect_column_values_to_not_be_null", "channel"),
                     ("expect_column_to_exist", "subject")]:
        assert expected in kinds
    features = {e["kwargs"].get("column") for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_be_in_type_list"} - set(OURS)
    assert features == set(FEATURES)  # None takes every column that is not ours
    assert ("expect_column_values_to_be_in_set", "priority") not in {
        (e["type"], e["kwargs"].get("column")) for e in suite_json(small.drop(columns="priority"))["expectations"]}


def test_routing_domain_conformance():
    from domains import get_domain
    from domains.conformance import check_domain

    check_domain(get_domain("routing"), size=2000)
