"""split.gap_days: a number of days or `auto` (the default), resolved at init to min(1 day, 1 % of the data's
span) and recorded as that number in the workspace, so a two-day export inits with the shipped config."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from domains.fraud.data import generate
from optimizer.base.errors import RatchetError
from optimizer.cli import app
from optimizer.workspace.config import SplitConfig, default_config_path, load_config, parse_config

ARGS = ["--label", "fraud", "--time", "event_s", "--amount", "amt", "--entity", "card", "--terminal", "merchant"]


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("AUTO", "auto"), (0, 0.0), (0.018, 0.018),
                                             (2, 2.0), ("0.5", 0.5)])
def test_gap_days_takes_a_number_or_auto(value, expected):
    assert SplitConfig(gap_days=value).gap_days == expected


def test_gap_days_defaults_to_auto_here_and_in_the_shipped_configs():
    assert SplitConfig().gap_days == "auto"
    for domain in ("fraud", "pricing", "routing"):
        assert load_config(default_config_path(domain)).split.gap_days == "auto", domain


@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), float("inf"), float("-inf"), "nan", "inf", "soon",
                                   "", True, None, [1], {"days": 1}, 10**400])
def test_gap_days_refuses_anything_else_by_name(value):
    with pytest.raises(RatchetError) as info:
        parse_config({"split": {"gap_days": value}}, source="c.yaml")
    message = str(info.value)
    assert message.startswith("c.yaml: invalid configuration: split.gap_days: expected a finite number of days in [0, 3650], "
                              "or auto; got "), message
    assert "\n" not in message


def _short_span_file(tmp_path, rows: int = 4000, days: float = 2.0):
    """Generated transactions squeezed into `days` days, exported with numeric seconds like the public export."""
    frame = generate(5, rows)
    start = frame["ts"].min()
    ts = start + (frame["ts"] - start) * (days / ((frame["ts"].max() - start) / pd.Timedelta(days=1)))
    out = pd.DataFrame({"event_s": (ts - start) / pd.Timedelta(seconds=1), "card": frame["customer_id"],
                        "merchant": frame["terminal_id"], "amt": frame["amount"], "fraud": frame["is_fraud"]})
    path = tmp_path / "transactions.csv"
    out.to_csv(path, index=False)
    return path


def test_a_two_day_file_inits_with_the_shipped_config_and_records_the_gap(tmp_path):
    path = _short_span_file(tmp_path)
    ws = tmp_path / "ws"
    init = CliRunner().invoke(app, ["init", "fraud", "-w", str(ws), "--data", str(path), *ARGS])
    assert init.exit_code == 0, init.output
    line = re.search(r"^split: gap (\S+) days between train, dev and holdout \(auto: 1 % of the (\S+)-day span\)$",
                     init.output, re.M)
    assert line, init.output
    recorded = yaml.safe_load((ws / "ratchet.yaml").read_text())["split"]["gap_days"]
    assert isinstance(recorded, float) and recorded == float(line.group(1)) == pytest.approx(0.02, rel=0.01)
    assert float(line.group(2)) == pytest.approx(2.0, rel=0.01)
    train, dev = (pd.read_parquet(ws / "data" / f"{n}.parquet") for n in ("train", "dev"))
    assert dev["ts"].min() - train["ts"].max() > pd.Timedelta(days=recorded)
    from optimizer.records.context import load_context

    assert load_context(ws).config.split.gap_days == recorded  # what reseal and audit read
    from holdout import evidence
    from holdout.ledger import Ledger

    assert evidence.verify(ws, Ledger(ws / "ledger.duckdb").entries(), only=(evidence.CONFIG,)) == []


def test_a_set_gap_is_used_and_named(tmp_path):
    from optimizer.lifecycle.initialize import init_workspace

    res = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 3000, "seal.canaries": 2,
                                                              "split.gap_days": 0.25})
    assert res.gap == "split: gap 0.25 days between train, dev and holdout (split.gap_days)"
    assert load_config(res.workspace.config).split.gap_days == 0.25


def test_months_of_history_keep_the_one_day_gap(tmp_path):
    from optimizer.lifecycle.initialize import init_workspace

    res = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 3000, "seal.canaries": 2})
    assert re.fullmatch(r"split: gap 1 days between train, dev and holdout \(auto: 1 % of the 1\d\d-day span, "
                        r"capped at 1 day\)", res.gap), res.gap
    assert load_config(res.workspace.config).split.gap_days == 1.0


def test_a_gap_too_wide_for_the_span_says_auto_would_do(tmp_path):
    path = _short_span_file(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("split:\n  gap_days: 1.0\n")
    init = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--data", str(path), *ARGS,
                                    "--config", str(config)])
    assert init.exit_code != 0
    assert "set split.gap_days to auto (1 % of the span) or at most 0.1" in " ".join(init.output.split())
    assert not (tmp_path / "ws").exists()
