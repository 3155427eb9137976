"""The fraud generator (seeded, handbook-like scenarios) and the CSV/Parquet importer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains._importing import START_EPOCH
from domains.fraud.data import DAYS, START, generate, load
from optimizer.base.errors import RatchetError

COLUMNS = ["tx_id", "ts", "customer_id", "terminal_id", "amount", "is_fraud", "fraud_scenario"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(7, 50_000)


def kaggle_like(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """The shape of the public creditcard.csv: Time (seconds), V1..V28, Amount, Class."""
    rng = np.random.default_rng(seed)
    out = {"Time": np.sort(rng.uniform(0, 172_800, n)).round()}
    out |= {f"V{i}": rng.normal(size=n) for i in range(1, 29)}
    out["Amount"] = rng.exponential(80, n).round(2) + 0.01
    out["Class"] = (rng.random(n) < 0.01).astype(int)
    return pd.DataFrame(out)


# --- generator --------------------------------------------------------------------------------
def test_same_seed_same_data_other_seed_other_data():
    a, b, c = generate(3, 20_000), generate(3, 20_000), generate(4, 20_000)
    assert a.equals(b)
    assert not a.equals(c)
    assert not a["amount"].head(100).equals(c["amount"].head(100))


def test_customers_asked_in_chunks_get_the_terminals_of_one_query(monkeypatch):
    """The generator asks the k-d tree for customers' terminals a chunk at a time (memory); the data must be what
    one query for all of them gives, chunk edges included. Fixed figures: a change of the draws fails too."""
    from domains.fraud import data
    from holdout.hashing import content_hash

    whole = generate(5, 30_000)
    for chunk in (7, 64):  # edges inside the customer list (about 120 customers here)
        monkeypatch.setattr(data, "REACH_CHUNK", chunk)
        pd.testing.assert_frame_equal(generate(5, 30_000), whole)
    monkeypatch.setattr(data, "REACH_CHUNK", 10**9)  # one query, as before chunking
    pd.testing.assert_frame_equal(generate(5, 30_000), whole)
    assert content_hash(whole)[:16] == PINNED_30K


PINNED_30K = "14021cf31edc2a4b"  # generate(5, 30_000) before the chunked query


def test_schema_order_and_ids(frame):
    assert list(frame.columns) == COLUMNS
    assert isinstance(frame.index, pd.RangeIndex) and frame.index[0] == 0
    expected = {"tx_id": "int64", "ts": "datetime64[ns]", "customer_id": "int64", "terminal_id": "int64",
                "amount": "float64", "is_fraud": "int8", "fraud_scenario": "int8"}
    assert {c: str(t) for c, t in frame.dtypes.items()} == expected
    assert frame["ts"].is_monotonic_increasing
    assert (frame["tx_id"].to_numpy() == np.arange(len(frame))).all()  # unique, in time order
    assert frame["ts"].min() >= pd.Timestamp(START)
    assert frame["ts"].max() < pd.Timestamp(START) + pd.Timedelta(days=DAYS)


def test_amounts_positive_cents(frame):
    amount = frame["amount"].to_numpy()
    assert (amount > 0).all() and np.isfinite(amount).all()
    assert np.allclose(np.round(amount, 2), amount)


def test_size_is_approximate():
    for size in (5_000, 50_000):
        assert abs(len(generate(1, size)) - size) < 0.1 * size
    assert abs(len(generate(2, 300_000)) - 300_000) < 0.02 * 300_000


def test_fraud_rate_near_one_percent_over_seeds():
    rates = [generate(seed, 50_000)["is_fraud"].mean() for seed in range(5)]
    assert all(0.005 <= r <= 0.02 for r in rates), rates
    full = generate(0)  # the default size
    assert 0.005 <= full["is_fraud"].mean() <= 0.02


def test_scenarios(frame):
    scenario, fraud = frame["fraud_scenario"], frame["is_fraud"]
    assert set(scenario.unique()) == {0, 1, 2, 3}
    assert ((scenario == 0) == (fraud == 0)).all()
    assert (frame.loc[scenario == 1, "amount"] > 220).all()
    assert (fraud[frame["amount"] > 220] == 1).all()  # every large amount is fraud, whatever scenario
    # Scenario 3 multiplies a normal amount by 5.
    assert frame.loc[scenario == 3, "amount"].median() > 3 * frame.loc[scenario == 0, "amount"].median()


def test_compromised_terminal_frauds_cluster_in_time(frame):
    # Scenario 2 lasts 28 days per compromise: each terminal's frauds span a bounded window.
    spans = frame[frame["fraud_scenario"] == 2].groupby("terminal_id")["ts"].agg(lambda t: t.max() - t.min())
    assert len(spans) > 0
    assert (spans < pd.Timedelta(days=28 * 3)).mean() > 0.9


def test_times_around_noon(frame):
    hours = frame["ts"].dt.hour
    assert 11 <= hours.mean() <= 13
    assert (hours.between(6, 18)).mean() > 0.7


# --- importer ---------------------------------------------------------------------------------
def test_csv_with_mapping_round_trips(tmp_path, frame):
    original = frame.head(4000).drop(columns="fraud_scenario")
    user = original.rename(columns={"tx_id": "TransactionID", "ts": "event time", "customer_id": "card",
                                    "terminal_id": "merchant", "amount": "Amt", "is_fraud": "Fraud?"})
    user = user.assign(**{"risk score": np.arange(len(user)) * 0.5, "note": "x"}).sample(frac=1, random_state=0)
    path = tmp_path / "upload.csv"
    user.to_csv(path, index=False)
    mapping = {"label": "Fraud?", "time": "event time", "amount": "Amt", "id": "TransactionID",
               "entity": "card", "terminal": "merchant"}
    got = load(path, mapping)
    assert list(got.columns) == ["tx_id", "ts", "customer_id", "terminal_id", "amount", "is_fraud", "risk_score",
                                 "note"]
    assert got["ts"].is_monotonic_increasing and isinstance(got.index, pd.RangeIndex)
    assert str(got["note"].dtype) == "string"  # a text column is a categorical feature
    assert got.attrs["dropped_columns"] == []
    back = got.sort_values(["ts", "tx_id"]).reset_index(drop=True)[list(original.columns)]
    pd.testing.assert_frame_equal(back, original.reset_index(drop=True), check_dtype=True)


@pytest.mark.parametrize("labels", [[False, True], ["0", "1"], [0.0, 1.0]], ids=["bool", "text", "float"])
@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_labels_and_generated_ids(tmp_path, labels, suffix):
    n = 50
    user = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=n, freq="h")[::-1],
                         "value": np.linspace(1, 50, n), "y": [labels[i % 7 == 0] for i in range(n)],
                         "cust": [f"c{i % 5}" for i in range(n)]})
    path = tmp_path / f"events{suffix}"
    user.to_parquet(path)
    got = load(path, {"label": "y", "time": "when", "amount": "value", "entity": "cust"})
    assert str(got["is_fraud"].dtype) == "int8" and got["is_fraud"].sum() == sum(i % 7 == 0 for i in range(n))
    # Without an id column, ids number the rows in file order (the file is newest first here).
    assert (got["tx_id"].to_numpy() == np.arange(n)[::-1]).all()
    assert (got["amount"].to_numpy() == user["value"].to_numpy()[::-1]).all()
    assert str(got["customer_id"].dtype) == "string"
    assert str(got["ts"].dtype) == "datetime64[ns]"


def test_kaggle_like_file(tmp_path):
    user = kaggle_like()
    path = tmp_path / "creditcard.csv"
    user.to_csv(path, index=False)
    got = load(path, {"label": "Class", "time": "Time", "amount": "Amount"})
    features = [f"V{i}" for i in range(1, 29)]
    assert list(got.columns) == ["tx_id", "ts", "amount", "is_fraud", *features]
    assert got.attrs["dropped_columns"] == []
    assert got["ts"].iloc[0] == START_EPOCH + pd.Timedelta(seconds=float(user["Time"].iloc[0]))
    assert got["ts"].iloc[-1] == START_EPOCH + pd.Timedelta(seconds=float(user["Time"].iloc[-1]))
    np.testing.assert_allclose(got["V3"].to_numpy(), user["V3"].to_numpy())
    assert got["is_fraud"].sum() == user["Class"].sum()


def _write(tmp_path, frame: pd.DataFrame, name: str = "bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_missing_mapped_column_lists_columns(tmp_path):
    path = _write(tmp_path, kaggle_like(50), "creditcard.csv")
    with pytest.raises(RatchetError, match=r"creditcard.csv: no column 'Clas' for --label; columns are: Time, V1"):
        load(path, {"label": "Clas", "time": "Time", "amount": "Amount"})
    with pytest.raises(RatchetError, match="--amount"):
        load(path, {"label": "Class", "time": "Time"})


def test_label_outside_zero_one(tmp_path):
    user = kaggle_like(50)
    user.loc[[3, 9], "Class"] = 2
    with pytest.raises(RatchetError, match=r"'Class' for --label .* 2 rows hold e\.g\. 2"):
        load(_write(tmp_path, user), {"label": "Class", "time": "Time", "amount": "Amount"})
    user["Class"] = ["yes"] * 50
    with pytest.raises(RatchetError, match="'Class'.*'yes'"):
        load(_write(tmp_path, user), {"label": "Class", "time": "Time", "amount": "Amount"})


def test_time_that_does_not_parse(tmp_path):
    user = pd.DataFrame({"t": ["2024-01-01 10:00", "not a date", "2024-01-02"], "a": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    with pytest.raises(RatchetError, match="bad.csv: column 't' for --time has 1 values .*'not a date'"):
        load(_write(tmp_path, user), {"label": "y", "time": "t", "amount": "a"})


def test_amount_that_is_not_numeric(tmp_path):
    user = pd.DataFrame({"t": [1, 2, 3], "a": ["1.5", "lots", "3"], "y": [0, 1, 0]})
    with pytest.raises(RatchetError, match="column 'a' for --amount .*'lots'"):
        load(_write(tmp_path, user), {"label": "y", "time": "t", "amount": "a"})


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(RatchetError, match=r"data.xlsx: unsupported file type '.xlsx'"):
        load(path, {"label": "y", "time": "t", "amount": "a"})
    with pytest.raises(RatchetError, match="no such file"):
        load(tmp_path / "absent.csv", {"label": "y", "time": "t", "amount": "a"})


def test_feature_name_clash_is_refused(tmp_path):
    user = pd.DataFrame({"t": [1, 2], "Amt": [1.0, 2.0], "amount": [3.0, 4.0], "y": [0, 1]})
    with pytest.raises(RatchetError, match="column 'amount' would become feature 'amount'"):
        load(_write(tmp_path, user), {"label": "y", "time": "t", "amount": "Amt"})
    user = pd.DataFrame({"t": [1, 2], "a": [1.0, 2.0], "risk-1": [0.1, 0.2], "risk 1": [0.3, 0.4], "y": [0, 1]})
    with pytest.raises(RatchetError, match="'risk 1' would become feature 'risk_1', which clashes with 'risk-1'"):
        load(_write(tmp_path, user), {"label": "y", "time": "t", "amount": "a"})


def test_bad_mapping_keys(tmp_path):
    path = _write(tmp_path, kaggle_like(20))
    with pytest.raises(RatchetError, match="unknown mapping key"):
        load(path, {"label": "Class", "time": "Time", "amount": "Amount", "customer": "V1"})
    with pytest.raises(RatchetError, match="'Amount' is mapped to more than one"):
        load(path, {"label": "Class", "time": "Time", "amount": "Amount", "id": "Amount"})
