"""Why a candidate was refused, in plain view: `ratchet show` (figures equal to the record's), `ratchet history`'s
one-line reasons within 100 columns, `try --hypothesis` and the hypothesis drawn from the change, the next steps."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimizer.base.tunables import rewrite
from optimizer.cli import app
from optimizer.report.change import describe
from optimizer.report.explain import experiment_id, nearest
from tests.conftest import BASELINE, WEAK

CRASH = '''"""Fails in fit."""


def fit(train):
    raise RuntimeError("no model today")


def decide(model, rows):
    return rows["amount"] * 0
'''
SAID = "[b]shipped[/b] baseline beats the weak champion, " + "with a long explanation " * 8


def _invoke(*args: str, columns: int = 100):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def ran(weak_workspace, tmp_path_factory) -> dict:
    """A copy of the weak workspace after a run of one crash, then two candidates pushed with `try`: the shipped
    baseline with --hypothesis and --keep (kept), then the same with another seed and no hypothesis (refused by
    significance)."""
    root = tmp_path_factory.mktemp("show") / "ws"
    shutil.copytree(weak_workspace, root)
    shutil.copyfile(weak_workspace.parent / "mlflow.db", root.parent / "mlflow.db")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root.parent / 'mlflow.db'}"
    patches = root.parent / "patches"
    patches.mkdir()
    (patches / "01_crash.py").write_text(CRASH)
    out = {"root": root, "run": _invoke("run", str(root), "--experiments", "1", "--proposer", "patches",
                                        "--patches", str(patches))}
    for name, source, extra in (("kept", BASELINE, ("--hypothesis", SAID, "--keep")),
                                ("seed", BASELINE.replace("SEED = 0", "SEED = 1"), ())):
        path = root.parent / f"{name}.py"
        path.write_text(source)
        out[name] = _invoke("try", str(root), str(path), *extra)
    return out


@pytest.fixture(autouse=True)
def _its_mlflow(ran, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ran['root'].parent / 'mlflow.db'}")


def _record(root: Path, exp: str) -> dict:
    return json.loads((root / "experiments" / exp / "record.json").read_text())


def _figures(record: dict, guard: str) -> dict:
    return next(r["figures"] for r in record["reasons"] if r["guard"] == guard)


def test_run_and_try_end_with_their_next_step(ran):
    root = ran["root"]
    assert ran["run"].exit_code == 0, ran["run"].output
    assert f"Next: `ratchet show {root} exp-0001` (the last refused) / `ratchet report {root}`" in ran["run"].output
    assert ran["kept"].exit_code == 0, ran["kept"].output
    assert f"Next: `ratchet show {root} exp-0002`" in ran["kept"].output
    assert ran["seed"].exit_code == 1 and f"Next: `ratchet show {root} exp-0003`" in ran["seed"].output


def test_try_records_the_hypothesis_given_or_drawn_from_the_change(ran):
    assert _record(ran["root"], "exp-0002")["hypothesis"] == " ".join(SAID.split())
    drawn = _record(ran["root"], "exp-0003")["hypothesis"]
    assert drawn == "SEED 0 -> 1", drawn  # not the docstring
    assert describe(WEAK, rewrite(WEAK, {"THRESHOLD": 0.35})) == "THRESHOLD 0.9 -> 0.35"
    body = BASELINE.replace("    return", "    unused = 1\n    return", 1)
    assert describe(BASELINE, body).startswith("+1 -0 lines in ") and "()" in describe(BASELINE, body)
    assert describe(BASELINE, BASELINE) == "no change against the champion"


def test_show_of_a_significance_refusal_prints_the_records_figures(ran):
    root = ran["root"]
    f = _figures(_record(root, "exp-0003"), "significance")
    needed = f["min_effect"] + (f["mean_diff"] - f["lower"])
    assert needed > f["mean_diff"]  # it fell short
    for ref in ("exp-0003", "3", "0003"):
        result = _invoke("show", str(root), ref)
        assert result.exit_code == 0, result.output
        text = result.output
        assert "reverted by significance before the holdout was asked" in text
        for value in (f["mean_diff"], f["lower"], f["upper"], f["min_effect"], needed):
            assert f"{value:+.6g}" in text, (value, text)
        assert (f"what to try next: the gain was {f['mean_diff']:+.6g}, it needed {needed:+.6g}: a bigger change or "
                "more dev rows") in text
        assert "hypothesis: SEED 0 -> 1" in text and "-SEED = 0" in text and "+SEED = 1" in text


def test_show_of_a_kept_experiment_prints_the_gates_answer(ran):
    root = ran["root"]
    g = _figures(_record(root, "exp-0002"), "holdout_gate")
    text = _invoke("show", str(root), "exp-0002").output
    assert "exp-0002 (#2): kept" in text and SAID.split()[0] in text
    assert f"LORD++ test {g['test_number']} at level {g['level']:.3g}" in text
    assert f"corrected for having been selected it is {g['estimate']:+.6g} per row" in text
    assert f"{g['lower']:+.6g} to {g['upper']:+.6g}" in text
    assert "what to try next: trial it on live events" in text


def test_show_json_has_the_same_keys_and_figures(ran):
    root = ran["root"]
    result = _invoke("show", str(root), "3", "--json")
    data = json.loads(result.stdout)
    assert set(data) == {"experiment", "number", "status", "status_words", "hypothesis", "proposer", "commit",
                         "parent_commit", "dev_metrics", "guards", "gate", "next", "diff", "notes"}
    assert data["experiment"] == "exp-0003" and data["status"] == "reverted" and data["gate"] is None
    sig = next(g for g in data["guards"] if g["guard"] == "significance")
    f = _figures(_record(root, "exp-0003"), "significance")
    assert sig["figures"]["gain"] == f["mean_diff"] and sig["figures"]["lower"] == f["lower"]
    assert sig["figures"]["needed_gain"] == pytest.approx(f["min_effect"] + f["mean_diff"] - f["lower"])
    kept = json.loads(_invoke("show", str(root), "2", "--json").stdout)
    assert kept["gate"]["kind"] == "lord" and kept["gate"]["passed"] is True and "sentence" in kept["gate"]
    crashed = json.loads(_invoke("show", str(root), "1", "--json").stdout)
    assert crashed["status"] == "crashed" and "no model today" in crashed["next"]


def test_an_unknown_experiment_lists_the_nearest_ids(ran):
    result = _invoke("show", str(ran["root"]), "exp-0042")
    assert result.exit_code == 2
    assert "exp-0042" in result.output and "nearest: exp-0001, exp-0002, exp-0003" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert experiment_id("exp-0003") == experiment_id("3") == experiment_id("0003") == "exp-0003"
    assert experiment_id("zero") is None and nearest("exp-0010", ["exp-0001", "exp-0009", "exp-0011"], 2) == \
        ["exp-0009", "exp-0011"]


def test_a_refused_gate_shows_only_what_it_needed():
    """A refusal reveals the bar, never the holdout gain or p-value the ledger keeps for the audit."""
    from guards import GuardResult
    from guards.verdict import Verdict
    from optimizer.report.explain import explain

    gate = {"kind": "lord", "gain": 0.123456, "p_value": 0.0777, "fdr": 0.05, "discoveries": [1]}
    figures = {"test": "holdout z-test, LORD++ level", "test_number": 2, "level": 0.019, "critical_z": 2.07,
               "passed": False, "budget_left": 98, "needed_gain": 0.25}
    rec = type("Rec", (), dict(experiment="exp-0005", number=5, status="reverted", hypothesis="h", proposer="p",
                               commit=None, parent_commit="abc", dev_metrics={}, gate=gate, verdict=Verdict((
                                   GuardResult("holdout_gate", False, "short", figures),))))()
    shown = explain(rec, diff="", workspace="ws")
    text = shown.text() + json.dumps(shown.to_json())
    assert "+0.25" in text and "dev gains did not transfer" in shown.next
    assert "0.123456" not in text and "0.0777" not in text


def test_history_carries_the_reason_within_100_columns(ran):
    root = ran["root"]
    result = _invoke("history", str(root), columns=100)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100, result.output
    f = _figures(_record(root, "exp-0003"), "significance")
    needed = f["min_effect"] + f["mean_diff"] - f["lower"]
    row = next(line for line in lines if "exp-0003" in line)
    assert f"significance: gain {f['mean_diff']:+.2g}" in row, row
    assert "sandbox:" in next(line for line in lines if "exp-0001" in line)
    kept = next(line for line in lines if "exp-0002" in line)
    assert "…" in kept and "[b]" in kept  # the long hypothesis cut on its line, its brackets not markup
    wide = _invoke("history", str(root), columns=160).output
    assert f"needs {needed:+.2g}" in next(line for line in wide.splitlines() if "exp-0003" in line)


def test_history_is_as_wide_as_the_terminal_whatever_width_the_console_was_made_with(ran, monkeypatch):
    """The shared console keeps a width it was made with (COLUMNS set then); the table follows the terminal now."""
    import optimizer.cli as cli

    monkeypatch.setattr(cli.out, "_width", 80)
    lines = _invoke("history", str(ran["root"]), columns=100).output.splitlines()
    assert max(len(line) for line in lines) == 100, lines
    row = next(line for line in lines if "exp-0003" in line)
    f = _figures(_record(ran["root"], "exp-0003"), "significance")
    assert f"significance: gain {f['mean_diff']:+.2g}" in row, row
