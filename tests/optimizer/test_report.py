"""The run report, the audit document and `ratchet history`: the numbers behind each plot follow the ledger, the
pages render in headless Chromium without console errors, show their plots at their size and the experiment ids."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holdout.gate import ladder_round
from holdout.ledger import Kind, Ledger
from optimizer.cli import app

CRASH = '''"""Fails in fit."""


def fit(train):
    raise RuntimeError("no model today")


def decide(model, rows):
    return rows["amount"] * 0
'''


TEX = r"$\sigmoid(x)$ scores: the shipped baseline"  # a hypothesis matplotlib's mathtext cannot parse


@pytest.fixture(scope="module")
def ran(weak_workspace, tmp_path_factory) -> Path:
    """The weak workspace after two experiments: the shipped baseline (an honest change the gate is asked about,
    its hypothesis with TeX in it) and a policy that crashes in fit."""
    from optimizer.loop.run import run_loop
    from tests.conftest import BASELINE

    root = tmp_path_factory.mktemp("report") / "ws"
    shutil.copytree(weak_workspace, root)
    shutil.copyfile(weak_workspace.parent / "mlflow.db", root.parent / "mlflow.db")  # the seal's records with it
    os.environ["MLFLOW_TRACKING_URI"] = _uri(root)
    patches = root.parent / "patches"
    patches.mkdir()
    assert BASELINE.startswith('"""')
    (patches / "01_baseline.py").write_text(f'r"""{TEX}\n\n' + BASELINE[3:])
    (patches / "02_crash.py").write_text(CRASH)
    run_loop(root, experiments=2, proposer="patches", patches=patches)
    return root


def _uri(root: Path) -> str:
    return f"sqlite:///{root.parent / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _its_mlflow(ran, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(ran))


def test_the_numbers_behind_the_plots_follow_the_ledger(ran):
    from optimizer.report.facts import records
    from optimizer.report.run import gather

    facts = gather(ran)
    recs = records(Ledger(ran / "ledger.duckdb").entries())
    assert [p.experiment for p in facts.points] == [r.experiment for r in recs] == ["exp-0001", "exp-0002"]
    honest, crashed = facts.points
    assert crashed.outcome == "crashed" and crashed.gate is None
    assert honest.outcome in ("kept", "reverted") and honest.gate is not None
    assert honest.at_gate == (honest.outcome == "reverted") and not crashed.at_gate
    if honest.outcome == "reverted":
        assert honest.failed_guards == ("holdout_gate",)
    gate = recs[0].gate
    assert honest.gate == ladder_round(gate["answer"], gate["step"]) and honest.gate <= gate["answer"]
    # The running best is the champion's dev value: the baseline's until something is kept.
    base = facts.baseline[facts.primary]
    assert honest.best == (honest.value if honest.outcome == "kept" else base) == crashed.best
    counts = {r.guard: r.count for r in facts.rejections}
    assert counts["sandbox"] == 1 and facts.rejections[0].count >= 1
    gates = [e for e in Ledger(ran / "ledger.duckdb").entries() if e.kind == Kind.GATE]
    assert facts.holdout.used == len(gates) == 1 and facts.holdout.left == facts.holdout.budget - 1
    assert facts.holdout.canaries == 4 and facts.audit.status == "intact"
    assert {g.metric for g in facts.guardrails} == {"false_decline_rate", "alert_rate", "false_decline_gap"}
    alert = next(g for g in facts.guardrails if g.metric == "alert_rate")
    assert alert.limit == 0.03 and [n for n, _ in alert.points] == [1]  # the crash has no dev metrics
    assert facts.segments and all(s.rows > 0 for s in facts.segments)
    assert sum(s.rows for s in facts.segments if s.family == facts.segments[0].family) == len(
        __import__("pandas").read_parquet(ran / "data" / "dev.parquet"))


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, installed when missing (as root with apt-get); the test is skipped with why otherwise."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install brings it)")
    path = shutil.which("chromium")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True, timeout=600)
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed and could not be installed here (needs root and apt-get)")
    return path


def _load(chromium: str, page_file: Path, sort: str) -> tuple[list, list, str, str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1240, "height": 900})
        problems: list = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: problems.append(f"fetched {r.url}") if not r.url.startswith(("file:", "data:"))
                else None)
        page.goto(page_file.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.id, i.naturalWidth, i.naturalHeight])")
        page.click(sort)  # sort a table by a column: the sorter runs without an error
        text = page.inner_text("body")
        page.screenshot(path=str(page_file.with_suffix(".screenshot.png")), full_page=True)
        browser.close()
    return problems, images, text, page_file.read_text()


def test_the_report_renders_in_chromium_with_its_plots_and_is_logged_to_mlflow(ran, chromium, tmp_path):
    from mlflow.tracking import MlflowClient

    from optimizer.report.plots import SIZE

    out = tmp_path / "r" / "night.html"
    result = CliRunner().invoke(app, ["report", str(ran), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.glob("night-*.png")) == sorted(f"night-{k}.png" for k in SIZE)
    problems, images, text, html = _load(chromium, out, "#experiments th:nth-child(4)")
    assert problems == []
    assert sorted(images) == sorted([f"plot-{k}", w, h] for k, (w, h) in SIZE.items())
    assert "exp-0001" in text and "exp-0002" in text and "intact" in text
    manifest = json.loads((ran / "holdout" / "MANIFEST.json").read_text())
    assert not [c for c in manifest["canaries"] if c in html]  # the canary count, never a canary value
    assert "holdout_gain" not in html and f"{manifest['rows']:,}" in text
    run_id = result.output.split("logged to MLflow run ")[1].split()[0]
    client = MlflowClient()
    names = {a.path for a in client.list_artifacts(run_id, "report")}
    assert "report/night.html" in names and "report/night-trajectory.png" in names
    assert client.get_run(run_id).data.tags["ratchet.kind"] == "report"


def test_a_hypothesis_with_tex_is_drawn_as_text_and_the_exit_code_is_the_audits(ran, tmp_path):
    """The kept experiment's hypothesis is labelled on the trajectory: drawn as text (before, matplotlib raised while
    drawing it and `ratchet report` exited 1, the code of a failed audit, with no page)."""
    from optimizer.report.facts import records

    kept = [r for r in records(Ledger(ran / "ledger.duckdb").entries()) if r.kept]
    assert [r.hypothesis for r in kept] == [TEX]
    out = tmp_path / "tex.html"
    result = CliRunner().invoke(app, ["report", str(ran), "--out", str(out), "--no-mlflow"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'id="plot-trajectory" alt=' in html and "could not be drawn" not in html and TEX in html


def test_the_audit_document_lists_every_check_with_its_command(ran, chromium, tmp_path):
    doc = tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["audit", str(ran), "--html", str(doc)])
    assert result.exit_code == 0, result.output
    problems, images, text, html = _load(chromium, doc, "#checks th:nth-child(2)")
    assert problems == [] and images == []
    for name in ("ledger_chain", "gate_replay", "scorer_source", "experiment_records"):
        assert f"ratchet audit {ran} --check {name}" in text
    one = CliRunner().invoke(app, ["audit", str(ran), "--check", "ledger_chain"])
    assert one.exit_code == 0 and "ledger_chain" in one.output and "gate_replay" not in one.output
    bad = CliRunner().invoke(app, ["audit", str(ran), "--check", "nope"])
    assert bad.exit_code == 2 and "--check nope: no such check" in bad.output


def test_a_tampered_workspace_is_a_failed_audit_in_the_document(ran, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(ran, copy)
    record = copy / "experiments" / "exp-0002" / "record.json"
    record.chmod(0o644)
    record.write_text(record.read_text().replace('"crashed"', '"kept"', 1))
    doc = tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["audit", str(copy), "--html", str(doc)])
    assert result.exit_code == 1
    html = doc.read_text()
    assert 'class="badge failed"' in html and "expected:</strong> every field agrees" in html


def test_history_filters_by_verdict_guard_and_last(ran):
    def rows(*args: str) -> str:
        result = CliRunner().invoke(app, ["history", str(ran), *args], env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        return result.output

    both = rows()
    assert "exp-0001" in both and "exp-0002" in both and "2 of 2 experiments" in both
    crashed = rows("--verdict", "crashed")
    assert "exp-0002" in crashed and "exp-0001" not in crashed
    assert "exp-0002" in rows("--guard", "sandbox") and "exp-0001" not in rows("--guard", "sandbox")
    assert "1 of 2" in rows("--last", "1") and "exp-0002" in rows("--last", "1")
    bad = CliRunner().invoke(app, ["history", str(ran), "--verdict", "great"])
    assert bad.exit_code == 2 and "not a status" in bad.output


def test_the_progress_line_shows_the_rate_the_last_refusing_guard_and_the_gate_budget(ran):
    from optimizer.cli.progress import LoopDisplay
    from optimizer.loop.power import bar
    from optimizer.loop.run import Recorded
    from optimizer.records.context import load_context
    from optimizer.report.facts import records

    ctx = load_context(ran, repair=False)
    now = bar(ctx, champion=ctx.champion())
    view = LoopDisplay(2, "net_savings")
    done = records(Ledger(ran / "ledger.duckdb").entries())
    for record in done:
        view(Recorded(record, now))
    left = [r.gate["budget_left"] for r in done if r.gate][-1]
    status = view.progress.tasks[0].fields["status"]
    assert "last refused by sandbox" in status and f"gate left {left}" in status and "/h |" in status
    # The bar for the next candidate, in the metric's units (from the champion's spread or measured tests).
    assert f"keepable >= {now.gain:+.3g}" in status and now.gain > 0 and now.tests_left == left
