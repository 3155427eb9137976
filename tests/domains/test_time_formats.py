"""Text times are read with one format for the whole column, detected or given with `--time-format`, and said back;
a column that reads both day first and month first is refused, never sealed on scrambled times."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from domains import get_domain
from domains._importing import TimeReading
from domains.fraud.data import generate, load
from optimizer.base.errors import RatchetError
from optimizer.cli import app
from tests.conftest import mlflow_store

MAPPING = {"label": "y", "time": "t", "amount": "a"}
# 40 rows, four hours apart from 2024-03-10 08:00: 10 to 16 March, some days after the 12th
STAMPS = pd.Timestamp("2024-03-10 08:00") + pd.to_timedelta(np.arange(40) * 4, unit="h")
AMBIGUOUS = pd.to_datetime(["2024-04-03", "2024-06-05", "2024-08-07", "2024-10-09", "2024-12-11"] * 8)


def _file(tmp_path, t, *, name="tx.csv"):
    n = len(t)
    frame = pd.DataFrame({"t": t, "a": np.linspace(1.0, 50.0, n), "y": [i % 9 == 0 for i in range(n)]})
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


def _refusal(path, reading=None, mapping=MAPPING, loader=load) -> str:
    with pytest.raises(RatchetError) as info:
        loader(path, mapping, reading)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fmt, first", [("%d/%m/%Y %H:%M", "day"), ("%m/%d/%Y %H:%M", "month"),
                                        ("%d.%m.%Y %H:%M:%S", None), ("%m/%d/%Y %I:%M %p", "month")])
def test_a_format_that_fits_one_way_only_is_detected_and_said(tmp_path, fmt, first):
    got = load(_file(tmp_path, STAMPS.strftime(fmt)), MAPPING)
    assert (got["ts"].to_numpy() == STAMPS.to_numpy()).all()
    (note,) = got.attrs["import_notes"]
    assert note.startswith(f"t: text read as {fmt} (detected")
    assert note.endswith("2024-03-10 08:00 to 2024-03-16 20:00")
    if first:  # the value that settles it is named
        assert f"; {first} first, as '" in note and "' can only be)" in note
    assert got.attrs["time_format"] == fmt


def test_a_column_read_both_ways_is_refused_naming_both_readings_and_the_flag(tmp_path):
    path = _file(tmp_path, AMBIGUOUS.strftime("%d/%m/%Y"))
    message = _refusal(path)
    assert message.startswith("tx.csv: column 't' for --time reads day first (%d/%m/%Y) and month first (%m/%d/%Y) "
                              "with different times")
    assert "'03/04/2024' is 3 April or March 4, '05/06/2024' is 5 June or May 6" in message
    assert message.endswith("pass --time-format '%d/%m/%Y' or --time-format '%m/%d/%Y'.")
    with_time = _refusal(_file(tmp_path, AMBIGUOUS.strftime("%d/%m/%Y 10:30")))
    assert "'03/04/2024 10:30' is 3 April or March 4" in with_time and "--time-format '%d/%m/%Y %H:%M'" in with_time


def test_the_same_file_is_read_as_the_format_given(tmp_path):
    path = _file(tmp_path, AMBIGUOUS.strftime("%d/%m/%Y"))
    got = load(path, MAPPING, TimeReading(format="%d/%m/%Y"))
    assert got["ts"].iloc[0] == pd.Timestamp("2024-04-03") and got["ts"].iloc[-1] == pd.Timestamp("2024-12-11")
    assert (got["ts"].to_numpy() == np.sort(AMBIGUOUS.to_numpy(), kind="stable")).all()
    assert got.attrs["import_notes"][0] == "t: text read as %d/%m/%Y (given): 2024-04-03 00:00 to 2024-12-11 00:00"
    month_first = load(path, MAPPING, TimeReading(format="%m/%d/%Y"))
    assert month_first["ts"].iloc[0] == pd.Timestamp("2024-03-04")
    assert month_first.attrs["time_format"] == "%m/%d/%Y"


def test_a_value_the_given_format_does_not_read_is_refused_naming_its_line(tmp_path):
    text = pd.Series(STAMPS.strftime("%d/%m/%Y %H:%M"))
    text[[3, 7]] = ["2024-03-10 20:00", "soon"]
    message = _refusal(_file(tmp_path, text), TimeReading(format="%d/%m/%Y %H:%M"))
    assert message == ("tx.csv: column 't' for --time has 2 values that do not match --time-format '%d/%m/%Y %H:%M' "
                       "(lines 5, 9: '2024-03-10 20:00', 'soon'); fix those rows, or pass the --time-format that "
                       "reads them.")
    parquet = _refusal(_file(tmp_path, text, name="tx.parquet"), TimeReading(format="%d/%m/%Y %H:%M"))
    assert "(rows 4, 8: " in parquet
    recorded = _refusal(_file(tmp_path, text), TimeReading(format="%d/%m/%Y %H:%M", recorded=True))
    assert "do not match '%d/%m/%Y %H:%M', the format this workspace reads times in (lines 5, 9" in recorded
    assert "data.time_format in ratchet.yaml, recorded at init" in recorded and "--time-format" not in recorded


def test_a_value_no_format_reads_is_named_with_the_closest_format(tmp_path):
    text = pd.Series(STAMPS.strftime("%d/%m/%Y %H:%M"))
    text[5] = "31/02/2024 10:00"
    message = _refusal(_file(tmp_path, text))
    assert ("column 't' for --time has 1 values that are not dates (e.g. '31/02/2024 10:00') read as "
            "'%d/%m/%Y %H:%M', the format that reads most of it (line 7)") in message
    assert "pass --time-format" in message
    words = _refusal(_file(tmp_path, ["first week", "second week"] * 20))
    assert "values that are not dates (e.g. 'first week', 'second week') in any format ratchet tries" in words


@pytest.mark.parametrize("given, said", [
    ("dd/mm/yyyy", "--time-format 'dd/mm/yyyy': give it in strptime codes, e.g. '%d/%m/%Y' for dd/mm/yyyy"),
    ("%d/%q/%Y", "--time-format '%d/%q/%Y': 'q' is a bad directive"),
])
def test_a_format_that_is_not_strptime_codes_names_the_flag(tmp_path, given, said):
    message = _refusal(_file(tmp_path, STAMPS.strftime("%d/%m/%Y")), TimeReading(format=given))
    assert message.startswith(said)


def test_iso_text_datetimes_and_numbers_are_read_and_said(tmp_path):
    iso = load(_file(tmp_path, (STAMPS.tz_localize("Europe/Paris")).strftime("%Y-%m-%dT%H:%M:%S%z")), MAPPING)
    assert iso["ts"].iloc[0] == pd.Timestamp("2024-03-10 07:00")  # in UTC
    assert iso.attrs["import_notes"][0].startswith("t: text read as ISO 8601 (detected): 2024-03-10 07:00 to ")
    assert iso.attrs["time_format"] == "ISO8601"
    typed = load(_file(tmp_path, STAMPS, name="tx.parquet"), MAPPING)
    assert typed.attrs["import_notes"][0] == "t: datetimes as stored: 2024-03-10 08:00 to 2024-03-16 20:00"
    assert typed.attrs["time_format"] is None
    seconds = (STAMPS - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    numeric = load(_file(tmp_path, seconds), MAPPING)
    assert numeric.attrs["import_notes"][0].startswith("t: numbers read as seconds since the Unix epoch (detected)")
    assert numeric.attrs["time_format"] is None
    digits = load(_file(tmp_path, STAMPS.strftime("%Y%m%d").astype(int)), MAPPING, TimeReading(format="%Y%m%d"))
    assert digits["ts"].iloc[-1] == pd.Timestamp("2024-03-16")


def test_pricing_and_routing_read_times_as_given(tmp_path):
    n = 40
    rng = np.random.default_rng(0)
    text = AMBIGUOUS.strftime("%d/%m/%Y")
    routing = pd.DataFrame({"opened": text, "team": ["billing", "technical"] * (n // 2),
                            "minutes": np.round(rng.uniform(5, 60, n), 1)})
    pricing = pd.DataFrame({"offered": text, "price": np.round(rng.uniform(5, 50, n), 2), "p": np.full(n, 0.25),
                            "bought": rng.integers(0, 2, n), "cost": np.full(n, 2.0), "list": np.full(n, 20.0)})
    cases = [("routing", routing, {"time": "opened", "team": "team", "handling": "minutes"}),
             ("pricing", pricing, {"time": "offered", "price": "price", "propensity": "p", "outcome": "bought",
                                   "cost": "cost", "reference": "list"})]
    for domain, frame, mapping in cases:
        path = tmp_path / f"{domain}.csv"
        frame.to_csv(path, index=False)
        loader = get_domain(domain).load
        assert "reads day first (%d/%m/%Y) and month first" in _refusal(path, None, mapping, loader), domain
        got = loader(path, mapping, TimeReading(format="%m/%d/%Y"))
        assert got["ts"].iloc[0] == pd.Timestamp("2024-03-04"), domain
        assert got.attrs["time_format"] == "%m/%d/%Y", domain
        assert got.attrs["import_notes"][0].startswith(f"{mapping['time']}: text read as %m/%d/%Y (given)"), domain


# --- end to end: init records the format, reseal reads new data with it ------------------------------------
ARGS = ["--label", "fraud", "--time", "when", "--amount", "amt", "--entity", "card", "--id", "txn"]
FORMAT = "%d/%m/%Y %H:%M"


def _history(frame: pd.DataFrame, fmt: str = FORMAT) -> pd.DataFrame:
    return pd.DataFrame({"txn": frame["tx_id"], "when": frame["ts"].dt.strftime(fmt), "card": frame["customer_id"],
                         "amt": frame["amount"], "fraud": frame["is_fraud"]})


def test_init_with_a_time_format_seals_says_it_and_reseal_reads_new_data_with_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    full = generate(5, 6000)
    full = full.assign(ts=full["ts"].dt.floor("min"))
    cut = pd.Timestamp("2025-06-20")
    path = tmp_path / "tx.csv"
    _history(full[full["ts"] < cut]).to_csv(path, index=False)
    ws = tmp_path / "ws"
    runner = CliRunner()
    init = runner.invoke(app, ["init", "fraud", "-w", str(ws), "--data", str(path), *ARGS, "--time-format", FORMAT])
    assert init.exit_code == 0, init.output
    first, last = full["ts"].min(), full.loc[full["ts"] < cut, "ts"].max()
    assert f"read: when: text read as {FORMAT} (given): {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}" in init.output
    assert "holdout sealed" in init.output
    assert yaml.safe_load((ws / "ratchet.yaml").read_text())["data"]["time_format"] == FORMAT
    train = pd.read_parquet(ws / "data" / "train.parquet")
    expected = full.set_index("tx_id").loc[train["tx_id"], "ts"].to_numpy()
    assert (train["ts"].to_numpy() == expected).all()

    later = full[(full["ts"] >= cut) & (full["ts"].dt.day <= 12)]  # every day <= 12: detection would refuse it
    iso = tmp_path / "later-iso.csv"
    _history(later, "%Y-%m-%d %H:%M").to_csv(iso, index=False)
    refused = runner.invoke(app, ["reseal", str(ws), "--data", str(iso)])
    assert refused.exit_code == 2, refused.output
    assert f"do not match '{FORMAT}', the format this workspace reads times in" in refused.output
    new = tmp_path / "later.csv"
    _history(later).to_csv(new, index=False)
    with pytest.raises(RatchetError, match="reads day first"):
        load(new, {"label": "fraud", "time": "when", "amount": "amt"})
    reseal = runner.invoke(app, ["reseal", str(ws), "--data", str(new)])
    assert reseal.exit_code == 0, reseal.output
    assert f"new holdout sealed: {len(later) + 8:,} rows" in reseal.output  # and 8 canaries
    holdout = pd.read_parquet(ws / "holdout" / "holdout.parquet")
    fresh = holdout[holdout["tx_id"].isin(later["tx_id"])]
    assert len(fresh) == len(later)
    assert (fresh["ts"].to_numpy() == later.set_index("tx_id").loc[fresh["tx_id"], "ts"].to_numpy()).all()


def test_init_records_a_detected_format_and_time_format_needs_data(tmp_path):
    from optimizer.lifecycle.initialize import resolve_config, with_time_format

    config = resolve_config("fraud", config_file=None, overrides={"data.source": "file", "data.file": "tx.csv"})
    frame = pd.DataFrame({"ts": STAMPS})
    frame.attrs["time_format"] = "%d/%m/%Y %H:%M"
    assert with_time_format(config, frame).data.time_format == "%d/%m/%Y %H:%M"
    frame.attrs["time_format"] = None
    assert with_time_format(config, frame) is config
    alone = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--time-format", "%d/%m/%Y"])
    assert alone.exit_code == 2 and "--time-format only apply with --data FILE" in alone.output
