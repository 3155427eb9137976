"""`ratchet --version`, the version on every record, and `ratchet upgrade` where there is nothing to upgrade. The
upgrade across releases (an earlier commit's wheel) and with changed decisions: test_upgrade_release.py."""
from __future__ import annotations

import os

from typer.testing import CliRunner

from holdout.ledger import Kind, Ledger
from holdout.manifest import read_manifest
from holdout.records import Tag
from optimizer import __version__
from optimizer.cli import app


def test_version_is_printed():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ratchet {__version__}"


def test_the_seal_and_every_mlflow_run_carry_the_version(small_workspace, monkeypatch):
    from mlflow.tracking import MlflowClient

    from optimizer.tracking.runs import workspace_uri

    assert read_manifest(small_workspace / "holdout")["tool_version"] == __version__
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    entries = Ledger(small_workspace / "ledger.duckdb").entries()
    client = MlflowClient(workspace_uri(small_workspace, entries))
    seal = entries[0].data["mlflow"]
    runs = client.search_runs([client.get_experiment_by_name(seal["experiment"]).experiment_id])
    assert runs and all(r.data.tags.get(Tag.VERSION) == __version__ for r in runs), \
        [(r.info.run_name, r.data.tags.get(Tag.VERSION)) for r in runs]


def test_nothing_to_upgrade_writes_nothing(small_workspace):
    before = len(Ledger(small_workspace / "ledger.duckdb").entries())
    result = CliRunner().invoke(app, ["upgrade", str(small_workspace), "--approved-by", "A. Reviewer"],
                                env={**os.environ, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "nothing to upgrade" in result.output and __version__ in result.output
    entries = Ledger(small_workspace / "ledger.duckdb").entries()
    assert len(entries) == before and not any(e.kind == Kind.UPGRADE for e in entries)


def test_an_upgrade_needs_a_visible_approver(small_workspace):
    result = CliRunner().invoke(app, ["upgrade", str(small_workspace), "--approved-by", "\u200b"])
    assert result.exit_code == 2 and "--approved-by" in result.output
