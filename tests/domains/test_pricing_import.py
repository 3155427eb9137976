"""The pricing importer: a user's CSV/Parquet of logged offers, its mapping and its refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.pricing.data import generate
from domains.pricing.importer import load
from tests._files import refusal_of, write_file

RENAMED = {"offer_id": "Offer ID", "ts": "offered at", "customer_id": "cust", "product_id": "sku",
           "offered_price": "price paid", "propensity": "p_log", "converted": "bought", "unit_cost": "cost",
           "ref_price": "list price", "protected_group": "grp"}
MAPPING = {"id": "Offer ID", "time": "offered at", "entity": "cust", "product": "sku", "price": "price paid",
           "propensity": "p_log", "outcome": "bought", "cost": "cost", "reference": "list price", "protected": "grp"}
REQUIRED = {k: MAPPING[k] for k in ("time", "price", "propensity", "outcome", "cost", "reference")}
TEXT_FEATURES = ["segment", "channel", "region", "season"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(5, 1500)


def small(n: int = 40) -> pd.DataFrame:
    """A minimal user log, already in the user's column names."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"offered at": pd.date_range("2024-03-01", periods=n, freq="h").astype(str),
                         "price paid": np.round(rng.uniform(5, 50, n), 2), "p_log": np.full(n, 0.25),
                         "bought": rng.integers(0, 2, n), "cost": np.round(rng.uniform(1, 4, n), 2),
                         "list price": np.full(n, 20.0), "tier": [["gold", "silver"][i % 2] for i in range(n)]})


def _write(tmp_path, user: pd.DataFrame, name: str = "offers.csv"):
    return write_file(tmp_path, user, name)


def refusal(path, mapping) -> str:
    return refusal_of(load, path, mapping)


# --- what is accepted -------------------------------------------------------------------------
def test_csv_round_trip(tmp_path, frame):
    user = frame.rename(columns=RENAMED).sample(frac=1, random_state=0)
    got = load(_write(tmp_path, user), MAPPING)
    ours = ["offer_id", "ts", "customer_id", "product_id", "ref_price", "unit_cost", "offered_price", "propensity",
            "converted", "protected_group"]
    assert list(got.columns) == ours + [c for c in frame.columns if c not in ours]
    assert got["ts"].is_monotonic_increasing and isinstance(got.index, pd.RangeIndex)
    assert got.attrs["dropped_columns"] == []
    for col in [*TEXT_FEATURES, "protected_group"]:
        assert str(got[col].dtype) == "string", col  # categorical features stay text
    back = got.sort_values(["ts", "offer_id"]).reset_index(drop=True)[list(frame.columns)]
    pd.testing.assert_frame_equal(back, frame, check_dtype=True)


def test_parquet_defaults_epoch_seconds_and_feature_kinds(tmp_path):
    n = 30
    seconds = 1_700_000_000 + np.arange(n)[::-1] * 3600  # newest first in the file
    user = pd.DataFrame({"t": seconds, "price": np.linspace(10, 40, n), "p": np.full(n, 0.5),
                         "y": [i % 3 == 0 for i in range(n)], "c": np.full(n, 3.0), "ref": np.full(n, 25.0),
                         "web?": [i % 2 == 0 for i in range(n)], "plan": pd.Categorical(["a", "b"] * 15),
                         "class": np.arange(n), "seen": pd.date_range("2024-01-01", periods=n)})
    path = _write(tmp_path, user, "offers.parquet")
    got = load(path, {"time": "t", "price": "price", "propensity": "p", "outcome": "y", "cost": "c",
                      "reference": "ref", "entity": None})
    assert got["ts"].iloc[0] == pd.Timestamp("1970-01-01") + pd.Timedelta(seconds=int(seconds[-1]))
    assert got["ts"].iloc[-1] == pd.Timestamp("2023-11-14 22:13:20") + pd.Timedelta(hours=n - 1)
    # Without an id column, ids number the rows in file order.
    assert (got["offer_id"].to_numpy() == np.arange(n)[::-1]).all()
    assert str(got["converted"].dtype) == "int8" and got["converted"].sum() == 10
    assert str(got["web_"].dtype) == "int8" and str(got["plan"].dtype) == "string"
    assert "class_" in got.columns  # a keyword is no attribute name
    assert got.attrs["dropped_columns"] == ["seen"]
    assert "customer_id" not in got.columns and "protected_group" not in got.columns


def test_text_outcome_and_ids(tmp_path):
    user = small().assign(bought=["true", "FALSE"] * 20, **{"Offer ID": [f"o{i}" for i in range(40)]})
    got = load(_write(tmp_path, user), {**REQUIRED, "id": "Offer ID"})
    assert got["converted"].tolist() == [1, 0] * 20
    assert str(got["offer_id"].dtype) == "string" and got["offer_id"].iloc[0] == "o0"


# --- what is refused --------------------------------------------------------------------------
def test_no_propensity_mapping_explains_why(tmp_path):
    path = _write(tmp_path, small())
    message = refusal(path, {k: v for k, v in REQUIRED.items() if k != "propensity"})
    assert "propensity" in message and "logging policy" in message and "no off-policy estimate is valid" in message
    assert "--map propensity=COLUMN" in message


@pytest.mark.parametrize("values, count, example", [
    ([1.5, 0.2], 20, "1.5"),
    ([0.0, 0.3], 20, "0.0"),
    ([-0.1, 0.3], 20, "-0.1"),
    ([np.nan, 0.3], 20, "nan"),
    (["high", 0.3], 20, "'high'"),
], ids=["above-1", "zero", "negative", "null", "text"])
def test_bad_propensities(tmp_path, values, count, example):
    user = small().assign(p_log=values * 20)
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert f"column 'p_log' for --map propensity has {count} rows that are not probabilities in (0, 1]" in message
    assert f"(e.g. {example})" in message


def test_propensity_examples_are_at_most_five(tmp_path):
    user = small().assign(p_log=np.arange(40) + 2.0)
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "has 40 rows" in message and "(e.g. 2.0, 3.0, 4.0, 5.0, 6.0, ... (40 different values))" in message


def test_outcome_not_zero_one(tmp_path):
    user = small()
    user.loc[[2, 5], "bought"] = 2
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "column 'bought' for --map outcome must hold 0/1 (or true/false); 2 rows hold e.g. 2" in message


@pytest.mark.parametrize("column, key, bad, bound", [
    ("price paid", "price", [0.0, -3.0], "> 0"),
    ("list price", "reference", [-1.0, 0.0], "> 0"),
    ("cost", "cost", [-0.5, -0.5], ">= 0"),
])
def test_prices_and_costs_out_of_range(tmp_path, column, key, bad, bound):
    user = small()
    user.loc[[1, 7], column] = bad
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert f"column {column!r} for --map {key} has 2 values that are not {bound}" in message


def test_zero_cost_is_allowed(tmp_path):
    assert (load(_write(tmp_path, small().assign(cost=0.0)), REQUIRED)["unit_cost"] == 0).all()


def test_non_numeric_price(tmp_path):
    user = small().astype({"price paid": object})
    user.loc[3, "price paid"] = "ten"
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "column 'price paid' for --map price has 1 non-numeric values (e.g. 'ten')" in message


def test_unknown_mapping_key(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "label": "bought"})
    assert "unknown mapping key(s) label; use id, time" in message


def test_mapped_column_missing_from_the_file(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "reference": "list_price"})
    assert "no column 'list_price' for --map reference; columns are: offered at, price paid" in message


def test_required_key_missing(tmp_path):
    message = refusal(_write(tmp_path, small()), {k: v for k, v in REQUIRED.items() if k != "cost"})
    assert "no column given for cost (the unit cost); pass --map cost=COLUMN" in message


def test_column_mapped_twice(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "reference": "price paid"})
    assert "column 'price paid' is mapped to more than one of --map" in message


def test_feature_clashing_with_our_names(tmp_path):
    message = refusal(_write(tmp_path, small().assign(propensity=0.9)), REQUIRED)
    assert "column 'propensity' would become feature 'propensity', which clashes with 'propensity'" in message
    message = refusal(_write(tmp_path, small().assign(**{"tier-1": 1, "tier 1": 2})), REQUIRED)
    assert "column 'tier 1' would become feature 'tier_1', which clashes with 'tier-1'" in message


def test_time_that_does_not_parse(tmp_path):
    user = small()
    user.loc[4, "offered at"] = "soon"
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "column 'offered at' for --map time has 1 values that are not dates (e.g. 'soon')" in message
