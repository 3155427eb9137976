"""Bad data files at `ratchet init`: each is refused with exit 2 and one line that names the file, the column,
the count and examples, before anything is written; never a traceback, and no workspace is left behind."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from domains._importing import fits_in_memory
from domains.fraud.data import generate
from optimizer.base.errors import RatchetError
from optimizer.cli import app
from tests.conftest import mlflow_store

ARGS = ["--label", "fraud", "--time", "event_ms", "--amount", "amt", "--entity", "card"]


def _frame(rows: int = 400) -> pd.DataFrame:
    f = generate(5, 2 * rows).head(rows)
    return pd.DataFrame({"event_ms": (f["ts"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1),
                         "card": f["customer_id"], "amt": f["amount"], "fraud": f["is_fraud"]})


def _set(frame, column, rows, value, dtype=object):
    frame = frame.astype({column: dtype})
    frame.loc[rows, column] = value
    return frame


def _write(path, frame=None, data=None, **kw):
    path.write_bytes(data) if data is not None else frame.to_csv(path, index=False, **kw)


latin = _frame()
latin["card"] = "Zürich-" + latin["card"].astype(str)
BAD = {  # name: (what the file holds, extra init arguments, what the one line must say)
    "empty": (dict(data=b""), [], ["empty.csv", "empty file (0 bytes)"]),
    "header-only": (dict(data=b"event_ms,card,amt,fraud\n"), [], ["header-only.csv", "0 row(s)", "at least 100"]),
    "semicolons": (dict(frame=_frame(), sep=";"), [], ["no column 'fraud' for --label", "';'-delimited"]),
    "latin-1": (dict(frame=latin, encoding="latin-1"), [], ["not UTF-8 text (byte 0xfc on line 2)", "iconv"]),
    "binary": (dict(data=bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8))), [],
               ["binary content, not a CSV text file"]),
    "one-row": (dict(frame=_frame().head(1)), [], ["1 row(s)", "at least 100"]),
    "no-positive": (dict(frame=_frame().assign(fraud=0)), [], ["holds only 0 in all 400 rows"]),
    "label-2": (dict(frame=_set(_frame(), "fraud", [5, 6, 7], 2)), [],
                ["column 'fraud' for --label must hold 0/1", "3 rows hold e.g. 2"]),
    "label-nan": (dict(frame=_set(_frame(), "fraud", [5, 6], np.nan, float)), [], ["2 rows hold e.g. nan"]),
    "duplicate-ids": (dict(frame=_frame().assign(txn=[0, 0, 1, 1, *range(2, 398)])), ["--id", "txn"],
                      ["column 'txn' for --id must hold one id per row", "4 rows share an id (e.g. 0, 1)"]),
    "amount-words": (dict(frame=_set(_frame(), "amt", [3, 4], "twelve")), [],
                     ["column 'amt' for --amount has 2 non-numeric values (e.g. 'twelve')"]),
    "thousands": (dict(frame=_frame().assign(amt=lambda f: (f["amt"] * 1000).map("{:,.2f}".format))), [],
                  ["thousands separators", "1234.50, not 1,234.50"]),
    "time-words": (dict(frame=_set(_frame(), "event_ms", [3, 9, 12], "yesterday")), [],
                   ["column 'event_ms' for --time holds numbers, but 3 values are not (e.g. 'yesterday')"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_file_is_refused_in_one_line_with_nothing_written(tmp_path, monkeypatch, name):
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(store))
    holds, extra, said = BAD[name]
    path = tmp_path / f"{name}.csv"
    _write(path, **holds)
    ws = tmp_path / "ws"
    result = CliRunner().invoke(app, ["init", "fraud", "-w", str(ws), "--data", str(path), *ARGS, *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.output
    for part in said:
        assert part in error[0], error[0]
    assert not ws.exists()


def test_an_unsorted_file_is_sorted_and_said(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    path = tmp_path / "shuffled.csv"
    _write(path, frame=_frame(3000).sample(frac=1, random_state=2))
    result = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--data", str(path), *ARGS])
    assert result.exit_code == 0, result.output
    assert "rows were not in time order: sorted by time" in result.output
    train = pd.read_parquet(tmp_path / "ws" / "data" / "train.parquet")
    assert train["ts"].is_monotonic_increasing


def test_a_file_too_large_for_the_free_memory_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.csv"
    _write(path, frame=_frame())
    fits_in_memory(path, available=10 * path.stat().st_size)  # room: no refusal
    with pytest.raises(RatchetError, match=r"big.csv: importing it needs about .* GiB of memory and .* are free"):
        fits_in_memory(path, available=path.stat().st_size)
    parquet = tmp_path / "big.parquet"
    _frame().to_parquet(parquet)
    with pytest.raises(RatchetError, match="big.parquet: importing it needs"):
        fits_in_memory(parquet, available=400 * 4 * 8)  # the rows x columns in its metadata, not its compressed size
