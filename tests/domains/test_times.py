"""Reading a time column of text at scale: numbers with a few words are still told apart from dates, and a
column of dates is not converted to numbers whole first (7 s and 0.8 GiB at 10M rows), nor tried whole in every
format ratchet knows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains import _times
from domains._times import SAMPLE, times
from domains.errors import RatchetError

ROWS = 5 * SAMPLE


def test_numbers_with_a_few_words_are_named_past_the_sample_size():
    values = pd.Series(np.arange(ROWS).astype(str), dtype="str")
    values[[7, 4_000, ROWS - 1]] = "yesterday"
    with pytest.raises(RatchetError, match=r"holds numbers, but 3 values are not \(e.g. 'yesterday'\)"):
        times(values, "tx.csv", "event", role="--time")


def test_dates_are_read_without_converting_the_whole_column_to_numbers(monkeypatch):
    stamps = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(ROWS) * 37, unit="s")
    text = pd.Series(stamps.strftime("%Y-%m-%d %H:%M:%S"), dtype="str")
    lengths: list[int] = []
    real = pd.to_numeric

    def counted(values, *args, **kwargs):
        lengths.append(len(values))
        return real(values, *args, **kwargs)

    monkeypatch.setattr(_times.pd, "to_numeric", counted)
    out = times(text, "tx.csv", "event", role="--time")
    assert (out.to_numpy() == stamps.to_numpy()).all()
    assert lengths == [SAMPLE]  # the sample only


def test_a_text_format_is_tried_on_a_sample_and_only_the_one_that_fits_converts_the_column(monkeypatch):
    stamps = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(ROWS) * 137, unit="s")
    text = pd.Series(stamps.strftime("%d/%m/%Y %H:%M:%S"), dtype="str")
    formats: list[str] = []
    real = pd.to_datetime

    def counted(values, *args, **kwargs):
        if len(values) == ROWS:
            formats.append(kwargs["format"])
        return real(values, *args, **kwargs)

    monkeypatch.setattr(_times.pd, "to_datetime", counted)
    found: dict[str, str] = {}
    out = times(text, "tx.csv", "event", role="--time", formats=found)
    assert (out.to_numpy() == stamps.to_numpy()).all()
    assert formats == ["%d/%m/%Y %H:%M:%S"] == list(found.values())  # a failed conversion costs 4 s per million
