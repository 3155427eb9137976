"""The routing importer: a user's CSV/Parquet of resolved tickets, its mapping and its refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.routing.data import generate
from domains.routing.importer import load
from tests._files import refusal_of, write_file

RENAMED = {"ticket_id": "Ticket #", "ts": "opened at", "customer_id": "cust", "priority": "Prio",
           "subject": "title", "body": "description", "resolved_by": "closed by team", "handling_minutes": "work min"}
MAPPING = {"id": "Ticket #", "time": "opened at", "entity": "cust", "priority": "Prio", "subject": "title",
           "body": "description", "team": "closed by team", "handling": "work min"}
REQUIRED = {k: MAPPING[k] for k in ("time", "team", "handling")}
TEXT = ["channel", "tier", "product", "priority", "subject", "body", "resolved_by", "issue_type"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(5, 1500)


def small(n: int = 40) -> pd.DataFrame:
    """A minimal user history, already in the user's column names."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"opened at": pd.date_range("2024-03-01", periods=n, freq="h").astype(str),
                         "closed by team": [["billing", "technical"][i % 2] for i in range(n)],
                         "work min": np.round(rng.uniform(5, 60, n), 1),
                         "Prio": [["low", "normal", "high", "urgent"][i % 4] for i in range(n)],
                         "plan": [["free", "pro"][i % 2] for i in range(n)]})


def _write(tmp_path, user: pd.DataFrame, name: str = "tickets.csv"):
    return write_file(tmp_path, user, name)


def refusal(path, mapping) -> str:
    return refusal_of(load, path, mapping)


# --- what is accepted -------------------------------------------------------------------------
def test_csv_round_trip(tmp_path, frame):
    user = frame.rename(columns=RENAMED).sample(frac=1, random_state=0)
    got = load(_write(tmp_path, user), MAPPING)
    ours = ["ticket_id", "ts", "customer_id", "priority", "subject", "body", "resolved_by", "handling_minutes"]
    assert list(got.columns) == ours + [c for c in frame.columns if c not in ours]
    assert got["ts"].is_monotonic_increasing and isinstance(got.index, pd.RangeIndex)
    assert got.attrs["dropped_columns"] == []
    for col in TEXT:
        assert str(got[col].dtype) == "string", col  # text stays text
    back = got.sort_values(["ts", "ticket_id"]).reset_index(drop=True)[list(frame.columns)]
    pd.testing.assert_frame_equal(back, frame, check_dtype=True)


def test_parquet_defaults_epoch_seconds_and_feature_kinds(tmp_path):
    n = 30
    seconds = 1_700_000_000 + np.arange(n)[::-1] * 3600  # newest first in the file
    user = pd.DataFrame({"t": seconds, "team": ["returns"] * n, "mins": np.arange(1, n + 1),
                         "vip?": [i % 2 == 0 for i in range(n)], "plan": pd.Categorical(["a", "b"] * 15),
                         "class": np.arange(n), "seen": pd.date_range("2024-01-01", periods=n)})
    got = load(_write(tmp_path, user, "tickets.parquet"), {"time": "t", "team": "team", "handling": "mins",
                                                           "entity": None, "subject": ""})
    assert got["ts"].iloc[0] == pd.Timestamp("1970-01-01") + pd.Timedelta(seconds=int(seconds[-1]))
    assert got["ts"].iloc[-1] == pd.Timestamp("2023-11-14 22:13:20") + pd.Timedelta(hours=n - 1)
    # Without an id column, ids number the rows in file order.
    assert (got["ticket_id"].to_numpy() == np.arange(n)[::-1]).all()
    assert str(got["handling_minutes"].dtype) == "float64" and str(got["resolved_by"].dtype) == "string"
    assert str(got["vip_"].dtype) == "int8" and str(got["plan"].dtype) == "string"
    assert "class_" in got.columns  # a keyword is no attribute name
    assert got.attrs["dropped_columns"] == ["seen"]
    assert not {"customer_id", "priority", "subject", "body"} & set(got.columns)


def test_priorities_are_normalised_and_missing_text_is_empty(tmp_path):
    user = small(4).assign(Prio=[" High", "URGENT ", "low", "Normal"], title=["login", None, "refund", ""],
                           **{"closed by team": [" billing ", "technical", "billing", "returns"]})
    got = load(_write(tmp_path, user), {**REQUIRED, "priority": "Prio", "subject": "title"})
    assert got["priority"].tolist() == ["high", "urgent", "low", "normal"]
    assert got["subject"].tolist() == ["login", "", "refund", ""] and str(got["subject"].dtype) == "string"
    assert got["resolved_by"].tolist() == ["billing", "technical", "billing", "returns"]


def test_text_ids_and_numeric_team_names(tmp_path):
    user = small().assign(**{"Ticket #": [f"T-{i}" for i in range(40)], "closed by team": [7, 9] * 20})
    got = load(_write(tmp_path, user), {**REQUIRED, "id": "Ticket #"})
    assert str(got["ticket_id"].dtype) == "string" and got["ticket_id"].iloc[0] == "T-0"
    assert str(got["resolved_by"].dtype) == "string" and got["resolved_by"].iloc[0] == "7"


# --- what is refused --------------------------------------------------------------------------
@pytest.mark.parametrize("values, count, example", [
    ([np.nan, "billing"], 20, "nan"),
    (["   ", "billing"], 20, "'   '"),
], ids=["null", "blank"])
def test_tickets_without_a_team(tmp_path, values, count, example):
    user = small().assign(**{"closed by team": values * 20})
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert f"column 'closed by team' for --map team has {count} rows without a team (e.g. {example})" in message


@pytest.mark.parametrize("values, count, example", [
    ([0.0, 12.0], 20, "0.0"),
    ([-3.0, 12.0], 20, "-3.0"),
    ([np.nan, 12.0], 20, "nan"),
    ([np.inf, 12.0], 20, "inf"),
], ids=["zero", "negative", "null", "infinite"])
def test_bad_handling_times(tmp_path, values, count, example):
    user = small().assign(**{"work min": values * 20})
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert f"column 'work min' for --map handling has {count} values that are not handling times > 0" in message
    assert f"(e.g. {example})" in message


def test_non_numeric_handling_time(tmp_path):
    user = small().astype({"work min": object})
    user.loc[3, "work min"] = "ten"
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "column 'work min' for --map handling has 1 non-numeric values (e.g. 'ten')" in message


def test_handling_examples_are_at_most_five(tmp_path):
    user = small().assign(**{"work min": -np.arange(40) - 1.0})
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "has 40 values" in message and "(e.g. -1.0, -2.0, -3.0, -4.0, -5.0, ... (40 different values))" in message


@pytest.mark.parametrize("values, count, example", [
    (["critical", "low"], 20, "'critical'"),
    ([np.nan, "high"], 20, "nan"),
    ([3, "high"], 20, "'3'"),
], ids=["unknown-level", "null", "number"])
def test_bad_priorities(tmp_path, values, count, example):
    user = small().assign(Prio=values * 20)
    message = refusal(_write(tmp_path, user), {**REQUIRED, "priority": "Prio"})
    assert (f"column 'Prio' for --map priority has {count} values that are not one of low, normal, high, urgent "
            f"(e.g. {example})") in message


def test_unknown_mapping_key(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "label": "closed by team"})
    assert "unknown mapping key(s) label; use id, time, entity, priority, subject, body, team, handling" in message


@pytest.mark.parametrize("key, meaning", [
    ("time", "when the ticket arrived"),
    ("team", "the team that finally resolved the ticket"),
    ("handling", "the handling time in minutes"),
])
def test_required_key_missing(tmp_path, key, meaning):
    message = refusal(_write(tmp_path, small()), {k: v for k, v in REQUIRED.items() if k != key})
    assert f"no column given for {key} ({meaning}); pass --map {key}=COLUMN" in message


def test_mapped_column_missing_from_the_file(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "body": "text"})
    assert "no column 'text' for --map body; columns are: opened at, closed by team, work min" in message


def test_column_mapped_twice(tmp_path):
    message = refusal(_write(tmp_path, small()), {**REQUIRED, "subject": "plan", "body": "plan"})
    assert "column 'plan' is mapped to more than one of --map" in message


def test_feature_clashing_with_our_names(tmp_path):
    message = refusal(_write(tmp_path, small().assign(resolved_by="billing")), REQUIRED)
    assert "column 'resolved_by' would become feature 'resolved_by', which clashes with 'resolved_by'" in message


def test_time_that_does_not_parse(tmp_path):
    user = small()
    user.loc[4, "opened at"] = "soon"
    message = refusal(_write(tmp_path, user), REQUIRED)
    assert "column 'opened at' for --map time has 1 values that are not dates (e.g. 'soon')" in message
