"""The fraud data contract (a Great Expectations suite): what passes, what is refused and how."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from domains.fraud.data import generate, load
from domains.fraud.expectations import check_contract, suite_json
from optimizer.base.errors import RatchetError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(11, 20_000)


def refusal(frame: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(RatchetError) as info:
        check_contract(frame, source="upload.csv", **kwargs)
    message = str(info.value)
    assert message.startswith("data contract failed for 'upload.csv': ") and "\n" not in message
    assert message.endswith("Fix the data and run init again.")
    return message


def test_generated_data_passes(frame, capfd):
    check_contract(frame, source="generated")
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's progress bars are silenced


def _negative_amount(f):
    f.loc[[5, 50, 500], "amount"] = [-1.0, -2.5, -0.01]


def _null_customer(f):
    f["customer_id"] = f["customer_id"].astype("Int64")
    f.loc[[1, 2], "customer_id"] = pd.NA


def _duplicate_id(f):
    f.loc[10, "tx_id"] = f.loc[11, "tx_id"]


def _label_three(f):
    f.loc[7, "is_fraud"] = 3


def _infinite_amount(f):
    f.loc[9, "amount"] = np.inf


def _null_amount(f):
    f.loc[[3, 4, 8, 9], "amount"] = np.nan


def _ancient_time(f):
    f.loc[[0, 1], "ts"] = pd.Timestamp("1985-06-01")


@pytest.mark.parametrize("corrupt, column, expectation, count", [
    (_negative_amount, "amount", "expect_column_values_to_be_between (min 0, max 1e+12)", 3),
    (_infinite_amount, "amount", "expect_column_values_to_be_between", 1),
    (_null_amount, "amount", "expect_column_values_to_not_be_null", 4),
    (_null_customer, "customer_id", "expect_column_values_to_not_be_null", 2),
    (_duplicate_id, "tx_id", "expect_column_values_to_be_unique", 2),
    (_label_three, "is_fraud", "expect_column_values_to_be_in_set {0,1}", 1),
    (_ancient_time, "ts", "expect_column_values_to_be_between (min 1990-01-01, max 2100-01-01)", 2),
], ids=["negative", "inf", "null-amount", "null-customer", "duplicate-id", "label-3", "ts-1985"])
def test_each_violation_is_named(frame, corrupt, column, expectation, count):
    bad = frame.copy()
    corrupt(bad)
    message = refusal(bad)
    assert f"column '{column}': {expectation}" in message
    assert f"failed on {count} of {len(frame)} rows" in message


def test_zero_amounts_are_card_verifications_and_pass(frame):
    ok = frame.copy()
    ok.loc[[5, 50, 500], "amount"] = 0.0
    check_contract(ok, source="upload.csv")


def test_all_failures_in_one_message(frame):
    bad = frame.copy()
    _negative_amount(bad)
    _label_three(bad)
    message = refusal(bad)
    assert re.search(r"column 'amount': .* failed on 3 of \d+ rows; .*column 'is_fraud': .* failed on 1 of", message)


def test_missing_column_and_wrong_types(frame):
    message = refusal(frame.drop(columns="is_fraud").assign(ts=frame["ts"].astype(str)))
    assert "column 'is_fraud': expect_column_to_exist failed (the column is missing)" in message
    assert "column 'ts': expect_column_values_to_be_in_type_list" in message and "observed str" in message
    # The missing column is reported once, not once per expectation on it.
    assert message.count("'is_fraud'") == 1
    tz = refusal(frame.assign(ts=frame["ts"].dt.tz_localize("UTC")))
    assert "column 'ts': expect_column_values_to_be_in_type_list" in tz


def test_empty_frame(frame):
    assert "expect_table_row_count_to_be_between" in refusal(frame.iloc[:0])


def test_imported_kaggle_like_file_passes_and_null_feature_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    n = 2000
    user = pd.DataFrame({"Time": np.arange(n) * 30.0, **{f"V{i}": rng.normal(size=n) for i in range(1, 29)},
                         "Amount": rng.uniform(1, 300, n).round(2), "Class": (rng.random(n) < 0.02).astype(int)})
    path = tmp_path / "creditcard.csv"
    user.to_csv(path, index=False)
    got = load(path, {"label": "Class", "time": "Time", "amount": "Amount"})
    features = [f"V{i}" for i in range(1, 29)]
    check_contract(got, source="creditcard.csv", feature_columns=features)
    got.loc[[4, 5, 6], "V7"] = np.nan
    message = refusal(got, feature_columns=features)
    assert "column 'V7': expect_column_values_to_not_be_null failed on 3 of 2000 rows" in message
    assert "'V8'" not in message


def test_text_ids_from_the_importer_pass(tmp_path):
    user = pd.DataFrame({"id": [f"t{i}" for i in range(30)], "when": pd.date_range("2024-05-01", periods=30, freq="D"),
                         "amt": np.arange(1, 31) * 1.5, "y": [0] * 29 + [1], "card": [f"c{i % 4}" for i in range(30)]})
    path = tmp_path / "ids.parquet"
    user.to_parquet(path)
    got = load(path, {"label": "y", "time": "when", "amount": "amt", "id": "id", "entity": "card"})
    check_contract(got, source="ids.parquet")
    got.loc[3, "tx_id"] = got.loc[4, "tx_id"]
    assert "column 'tx_id': expect_column_values_to_be_unique failed on 2 of 30 rows" in refusal(got)


def test_suite_json_is_storable(frame):
    suite = suite_json(frame.assign(V1=1.0))
    assert json.loads(json.dumps(suite)) == suite
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    for expected in [("expect_column_values_to_be_unique", "tx_id"), ("expect_column_values_to_be_in_set", "is_fraud"),
                     ("expect_column_values_to_be_between", "amount"), ("expect_column_values_to_not_be_null", "V1"),
                     ("expect_column_to_exist", "terminal_id")]:
        assert expected in kinds
    assert ("expect_column_to_exist", "terminal_id") not in {
        (e["type"], e["kwargs"].get("column")) for e in suite_json(frame.drop(columns="terminal_id"))["expectations"]}


def test_fraud_domain_conformance():
    from domains import get_domain
    from domains.conformance import check_domain

    domain = get_domain("fraud")
    if not (domain.baseline_policy.is_file() and domain.program.is_file()):
        pytest.skip("the fraud policy.py/program.md are not written yet")
    check_domain(domain)
