"""What data teams bring: numeric times in any common unit, zero amounts, text categories, a column that
leaks the label. Each is read as it is meant, or refused with the column named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains._importing import TimeReading
from domains.fraud.data import generate, load
from optimizer.base.errors import RatchetError

MAPPING = {"label": "y", "time": "t", "amount": "a"}


def _file(tmp_path, t, *, name="tx.csv", **extra) -> "Path":
    n = len(t)
    frame = pd.DataFrame({"t": t, "a": np.linspace(0.0, 50.0, n), "y": [i % 9 == 0 for i in range(n)], **extra})
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


START = pd.Timestamp("2024-03-01 08:00:00")
SECONDS = (START - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1) + np.arange(50) * 600


@pytest.mark.parametrize("values, unit, word", [
    (SECONDS, "s", "seconds"),
    (SECONDS * 1000, "ms", "milliseconds"),
    (SECONDS * 1_000_000, "us", "microseconds"),
], ids=["epoch-s", "epoch-ms", "epoch-us"])
def test_epoch_units_are_detected_and_said(tmp_path, values, unit, word):
    got = load(_file(tmp_path, values), MAPPING)
    assert got["ts"].iloc[0] == START and got["ts"].iloc[-1] == START + pd.Timedelta(minutes=490)
    (note,) = got.attrs["import_notes"]
    assert note.startswith(f"t: numbers read as {word} since the Unix epoch (detected)") and "2024-03-01 08:00" in note


def test_a_count_from_the_start_of_the_file_is_placed_from_the_default_start(tmp_path):
    got = load(_file(tmp_path, np.arange(50) * 60.0), MAPPING)
    assert got["ts"].iloc[0] == pd.Timestamp("2013-09-01")
    (note,) = got.attrs["import_notes"]
    assert "seconds since 2013-09-01 00:00:00 (detected: a count from the start of the file)" in note
    assert "--epoch DATE" in note


def test_time_unit_and_epoch_set_the_reading(tmp_path):
    path = _file(tmp_path, np.arange(50) * 60_000)  # milliseconds from the start of the file
    got = load(path, MAPPING, TimeReading(unit="ms", epoch="2024-03-01 08:00"))
    assert got["ts"].iloc[0] == START and got["ts"].iloc[1] == START + pd.Timedelta(minutes=1)
    assert "milliseconds since 2024-03-01 08:00:00 (given)" in got.attrs["import_notes"][0]
    as_epoch = load(_file(tmp_path, SECONDS), MAPPING, TimeReading(unit="s"))
    assert as_epoch["ts"].iloc[0] == START


def test_epoch_seconds_read_as_milliseconds_by_hand_is_refused_not_sealed_in_1970(tmp_path):
    with pytest.raises(RatchetError, match=r"tx.csv: column 't' for --time read as nanoseconds since the Unix "
                                           r"epoch \(given\) starts at 1970-01-01 00:00, before 1990"):
        load(_file(tmp_path, SECONDS), MAPPING, TimeReading(unit="ns"))


def test_a_time_range_in_the_future_is_refused(tmp_path):
    future = SECONDS + 40 * 365 * 86_400  # Unix seconds in the 2060s
    with pytest.raises(RatchetError, match=r"tx.csv: column 't' for --time .*--time-unit"):
        load(_file(tmp_path, future), MAPPING)
    dates = pd.date_range(pd.Timestamp.now().normalize() + pd.Timedelta(days=30), periods=50, freq="h")
    with pytest.raises(RatchetError, match=r"column 't' for --time ends at .* in the future"):
        load(_file(tmp_path, dates.astype(str)), MAPPING)
    with pytest.raises(RatchetError, match=r"in the future.*--time-unit and --epoch"):
        load(_file(tmp_path, np.arange(50) * 60.0), MAPPING, TimeReading(epoch="2099-01-01"))


def test_bad_time_options_name_the_option(tmp_path):
    path = _file(tmp_path, np.arange(50))
    with pytest.raises(RatchetError, match="--epoch 'soon': not a date"):
        load(path, MAPPING, TimeReading(epoch="soon"))
    with pytest.raises(RatchetError, match="--time-unit 'minutes'"):
        load(path, MAPPING, TimeReading(unit="minutes"))


def test_zero_amounts_pass_and_negative_ones_are_counted_with_examples(tmp_path):
    got = load(_file(tmp_path, np.arange(50)), MAPPING)
    assert got["amount"].iloc[0] == 0.0  # a card verification
    path = _file(tmp_path, np.arange(50))
    frame = pd.read_csv(path)
    frame.loc[[3, 7, 8], "a"] = [-1.5, -20.0, -1.5]
    frame.to_csv(path, index=False)
    with pytest.raises(RatchetError, match=r"tx.csv: column 'a' for --amount has 3 negative amounts "
                                           r"\(e\.g\. -1\.5, -20\.0\); remove refunds"):
        load(path, MAPPING)


def test_text_columns_become_features_and_too_many_levels_are_reported(tmp_path):
    n = 400
    path = _file(tmp_path, np.arange(n) * 60.0, name="tx.parquet",
                 channel=np.where(np.arange(n) % 3 == 0, "card_present", "online"),
                 mcc=[f"m{i % 150}" for i in range(n)], device=[f"d{i}" for i in range(n)],
                 country=pd.Categorical(["FR", "DE"] * (n // 2)))
    got = load(path, MAPPING)
    for col in ("channel", "mcc", "device", "country"):
        assert str(got[col].dtype) == "string", col
    notes = " | ".join(got.attrs["import_notes"])
    assert "mcc: text feature with 150 distinct values, too many levels" in notes
    assert "device: text feature with 400 distinct values, nearly one per row: it looks like an identifier" in notes
    assert "channel:" not in notes and "country:" not in notes


def test_the_contract_accepts_text_features_but_not_nulls_in_them():
    from domains.fraud.adapter import FraudDomain

    frame = generate(0, 3000)
    frame["channel"] = pd.array(np.where(np.arange(len(frame)) % 2 == 0, "online", "pos"), dtype="string")
    FraudDomain().check_contract(frame, source="tx.csv")
    frame.loc[[4, 5], "channel"] = pd.NA
    with pytest.raises(RatchetError, match="column 'channel': expect_column_values_to_not_be_null failed on 2 of"):
        FraudDomain().check_contract(frame, source="tx.csv")
