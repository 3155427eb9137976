"""A workspace imported from the user's file takes live rows in the user's own column names (as `--map` recorded
them) or in ratchet's, never both at once: `serve` rows, shadow events and outcomes files; `ratchet events` does
not pass the built-in generator's events off as the user's (only with --synthetic)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from domains.fraud.data import generate
from optimizer.base.errors import RatchetError
from optimizer.cli import app
from optimizer.release.serve_rows import Refused, Schema
from tests.conftest import mlflow_store

# The user's column -> ratchet's (fraud), as `ratchet init fraud --data FILE --map KEY=COLUMN` maps them.
YOURS = {"txn": "tx_id", "when": "ts", "card": "customer_id", "merchant": "terminal_id", "amt": "amount"}
MAPPING = {"id": "txn", "time": "when", "entity": "card", "terminal": "merchant", "amount": "amt", "label": "fraud"}


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """A fraud workspace sealed from the user's Parquet file: their names, one unmapped text feature."""
    from optimizer.lifecycle.initialize import init_workspace

    base = tmp_path_factory.mktemp("imported")
    frame = generate(3, 6_000)
    user = frame.rename(columns={**{v: k for k, v in YOURS.items()}, "is_fraud": "fraud"}).drop(
        columns=["fraud_scenario"])
    user["channel"] = np.where(np.arange(len(user)) % 3 == 0, "online", "card_present")
    user.to_parquet(base / "transactions.parquet", index=False)
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_store(base / "mlflow.db")
    try:
        return init_workspace("fraud", base / "ws", overrides={
            "seal.canaries": 4, "data.source": "file", "data.file": str(base / "transactions.parquet"),
            "data.mapping": MAPPING}).workspace.root
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="module")
def ctx(imported):
    from optimizer.records.context import load_context

    return load_context(imported)


def _dev_rows(ctx, n: int) -> list[dict]:
    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(n)
    return json.loads(view.to_json(orient="records", date_format="iso", date_unit="ns"))


def _yours(row: dict) -> dict:
    return {next((u for u, o in YOURS.items() if o == k), k): v for k, v in row.items()}


# --- serve ----------------------------------------------------------------------------------------------------
def test_serve_rows_take_the_users_names_and_ratchets_alike(ctx):
    schema = Schema.of(ctx)
    ours = _dev_rows(ctx, 5)
    assert "channel" in ours[0] and "ts" in ours[0]
    expected = schema.frame(ours)
    pd.testing.assert_frame_equal(schema.frame([_yours(r) for r in ours]), expected)
    mixed = [_yours(r) if i % 2 else r for i, r in enumerate(ours)]  # row by row, either naming
    pd.testing.assert_frame_equal(schema.frame(mixed), expected)
    one_each = [{("amt" if k == "amount" else k): v for k, v in ours[0].items()}]  # mixed within a row
    pd.testing.assert_frame_equal(schema.frame(one_each), expected.head(1))


def test_a_serve_row_naming_one_column_both_ways_is_a_422_naming_row_and_both(ctx):
    schema = Schema.of(ctx)
    rows = _dev_rows(ctx, 3)
    rows[2] = {**_yours(rows[2]), "ts": rows[2]["ts"]}
    with pytest.raises(Refused) as info:
        schema.frame(rows)
    assert info.value.status_code == 422
    assert info.value.message.startswith("row 2: ") and "'when'" in info.value.message and "'ts'" in info.value.message


def test_serve_refusals_name_the_users_column(ctx):
    schema = Schema.of(ctx)
    row = _yours(_dev_rows(ctx, 1)[0])
    with pytest.raises(Refused) as label:
        schema.frame([{**row, "fraud": 0}])
    assert "'fraud'" in label.value.message and "the label" in label.value.message
    with pytest.raises(Refused) as missing:
        schema.frame([{k: v for k, v in row.items() if k != "amt"}])
    assert "missing column 'amt' ('amount')" in missing.value.message
    with pytest.raises(Refused) as bad:
        schema.frame([{**row, "when": "yesterday"}])
    assert "column 'when' ('ts')" in bad.value.message


# --- shadow events and outcomes -------------------------------------------------------------------------------
def test_a_shadow_events_file_in_the_users_names_reads_as_ratchets(ctx, tmp_path):
    from optimizer.release.shadow.events import read_frame
    from optimizer.release.shadow.quarantine import check_events

    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(300).reset_index(drop=True)
    ours = check_events(ctx, view, source="ours.parquet")
    view.rename(columns={v: k for k, v in YOURS.items()}).to_csv(tmp_path / "yours.csv", index=False)
    yours = check_events(ctx, read_frame(tmp_path / "yours.csv", "events"), source="yours.csv")
    assert len(yours.valid) == len(ours.valid) == 300 and yours.quarantined.empty and not yours.dropped_columns
    pd.testing.assert_frame_equal(yours.valid, ours.valid)


def test_an_events_file_naming_one_column_both_ways_is_refused_in_one_line(ctx):
    from optimizer.release.shadow.quarantine import check_events

    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(20).reset_index(drop=True)
    both = view.rename(columns={"amount": "amt"}).assign(amount=view["amount"])
    with pytest.raises(RatchetError) as info:
        check_events(ctx, both, source="ev.csv")
    message = str(info.value)
    assert message.startswith("ev.csv: ") and "'amt'" in message and "'amount'" in message and "\n" not in message
    with pytest.raises(RatchetError) as label:
        check_events(ctx, view.assign(fraud=0), source="ev.csv")
    assert "fraud (is_fraud)" in str(label.value)


def test_an_outcomes_file_takes_the_users_id_column(ctx):
    from optimizer.release.shadow.events import outcome_ids

    outcomes = pd.DataFrame({"label": [0, 1], "known_at": ["2025-09-01", "2025-09-02"], "reviewed": [True, False]})
    for name in ("txn", "tx_id", "event_id"):
        read = outcome_ids(ctx, outcomes.assign(**{name: ["a", "b"]}), source="out.csv")
        assert list(read["event_id"]) == ["a", "b"] and (name == "event_id" or name not in read.columns)
    with pytest.raises(RatchetError) as info:
        outcome_ids(ctx, outcomes.assign(txn=["a", "b"], event_id=["a", "b"]), source="out.csv")
    assert str(info.value).startswith("out.csv: ") and "'txn'" in str(info.value)


# --- ratchet events -------------------------------------------------------------------------------------------
def test_events_refuses_an_imported_workspace_unless_synthetic(imported, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(imported.parent / "mlflow.db"))
    args = ["events", str(imported), "--days", "2", "--events-out", str(tmp_path / "ev.parquet"),
            "--outcomes-out", str(tmp_path / "out.parquet")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and not (tmp_path / "ev.parquet").exists()
    line = " ".join(refused.output.split())
    assert "initialised from" in line and "transactions.parquet" in line and "--synthetic" in line
    made = CliRunner().invoke(app, [*args, "--synthetic"])
    assert made.exit_code == 0, made.output
    events = pd.read_parquet(tmp_path / "ev.parquet")
    assert len(events) > 0 and "is_fraud" not in events.columns
    assert events["ts"].min() >= pd.read_parquet(imported / "data" / "dev.parquet")["ts"].max()
