"""Messages that point the right way (issue 36, a newcomer's first hour): a refused flag names the flag, what it
allows and the closest valid value, never "Fix the YAML"; `config show` prints the config and `--changes` the
recorded changes; a check not made is "not checked", never "ok"; no MLflow type-hint warning; serving or shadowing
an unevaluated baseline names the command that evaluates it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from optimizer.base.errors import RatchetError
from optimizer.cli import app
from optimizer.workspace.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
KEY = "first-hour-key"


def _said(result) -> str:
    return " ".join(result.output.split())  # rich may fold a long line


# --- flags -------------------------------------------------------------------------------------------------------


def test_a_bad_rows_flag_names_the_flag_and_the_real_limit(tmp_path):
    result = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--rows", "50"])
    assert result.exit_code == 2, result.output
    assert "error: --rows 50: at least 1000 rows (and at most 20000000)." in _said(result)
    assert "YAML" not in result.output and not (tmp_path / "ws").exists()


def test_a_time_unit_outside_the_set_offers_the_closest(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("a,b,c\n1,2,3\n")
    result = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--data", str(data), "--label",
                                      "a", "--time", "b", "--amount", "c", "--time-unit", "seconds"])
    assert result.exit_code == 2, result.output
    assert "--time-unit seconds: not one of auto, s, ms, us, ns; did you mean 's'?" in _said(result)
    assert "YAML" not in result.output


def test_a_problem_in_a_config_file_keeps_the_yaml_hint_and_suggests(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  rowz: 5000\n  time_unit: secs\n")
    result = CliRunner().invoke(app, ["init", "fraud", "-w", str(tmp_path / "ws"), "--config", str(config)])
    said = _said(result)
    assert result.exit_code == 2 and f"{config}: invalid configuration" in said, result.output
    assert "data.rowz: Extra inputs are not permitted; did you mean data.rows?" in said
    assert "did you mean 's'?" in said and said.endswith("Fix the YAML and retry.")


def test_given_settings_are_named_as_given_and_the_rest_as_the_files():
    with pytest.raises(RatchetError) as caught:
        parse_config({"seed": -1, "data": {"seed": -1}, "gate": {"kind": "lrod"}}, source="x.yaml",
                     given={"seed": "--seed -1", "data.seed": "--seed -1"})
    message = str(caught.value)
    assert message.startswith("x.yaml: invalid configuration: --seed -1: at least 0 (and at most 4294967295); "
                              "gate.kind:"), message
    assert message.count("--seed") == 1 and "did you mean 'lord'?" in message


@pytest.mark.parametrize("args, words", [
    (["init", "fraud", "--row", "5"], "No such option: --row (Possible options: --rows)"),
    (["run", "--experiment", "3"], "No such option: --experiment (Possible options: --experiments)"),
])
def test_typers_own_errors_suggest_the_option(args, words):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and words in _said(result), result.output


# --- one workspace, sealed with a key, never run: config, audit, serve, shadow ------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A small fraud workspace sealed with RATCHET_SEAL_KEY set; the baseline not evaluated."""
    from tests.conftest import _sealed

    os.environ["RATCHET_SEAL_KEY"] = KEY
    try:
        return _sealed(tmp_path_factory, "first-hour", "fraud", {"data.rows": 5000, "seal.canaries": 2})
    finally:
        os.environ.pop("RATCHET_SEAL_KEY", None)


def test_config_show_prints_the_config_and_changes_the_changes(fresh):
    shown = CliRunner().invoke(app, ["config", str(fresh), "show"])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.stdout) == load_config(fresh / "ratchet.yaml").model_dump(mode="json")
    none = CliRunner().invoke(app, ["config", str(fresh), "show", "--changes"])
    assert none.exit_code == 0 and none.stdout.strip() == "no config change since the seal", none.output

    typo = CliRunner().invoke(app, ["config", str(fresh), "set", "guardrails.alert_rate.limt=0.5",
                                    "--approved-by", "A. Reviewer", "--reason", "first hour"])
    assert typo.exit_code == 2, typo.output
    assert "guardrails.alert_rate.limt=0.5: no such setting; did you mean guardrails.alert_rate.limit?" in _said(typo)
    assert "YAML" not in typo.output
    section = CliRunner().invoke(app, ["config", str(fresh), "set", "decison.confidence=0.9",
                                       "--approved-by", "A. Reviewer", "--reason", "first hour"])
    assert "config set decison.confidence: no such setting; did you mean decision.confidence?" in _said(section)
    bounded = CliRunner().invoke(app, ["config", str(fresh), "set", "decision.confidence=1.5",
                                       "--approved-by", "A. Reviewer", "--reason", "first hour"])
    assert "config set decision.confidence=1.5: less than 1 (and more than 0.5)." in _said(bounded), bounded.output
    action = CliRunner().invoke(app, ["config", str(fresh), "shwo"])
    assert action.exit_code == 2 and "config shwo: expected set or show; did you mean 'show'?" in _said(action)

    done = CliRunner().invoke(app, ["config", str(fresh), "set", "decision.confidence=0.9",
                                    "--approved-by", "A. Reviewer", "--reason", "first hour"])
    assert done.exit_code == 0, done.output
    assert yaml.safe_load(CliRunner().invoke(app, ["config", str(fresh), "show"]).stdout)["decision"][
        "confidence"] == 0.9
    changes = CliRunner().invoke(app, ["config", str(fresh), "show", "--changes"])
    assert changes.exit_code == 0 and "decision.confidence 0.95 -> 0.9; approved by A. Reviewer: first hour" in \
        _said(changes), changes.output


def _hmac(workspace: Path, *more: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(app, ["audit", str(workspace), "--json", *more])
    report = json.loads(result.stdout)
    return result.exit_code, next(c for c in report["checks"] if c["check"] == "hmac"), result.output


def test_an_hmac_not_checked_says_so_and_fails_nothing(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh.parent / 'mlflow.db'}")  # the store it sealed in
    code, check, output = _hmac(fresh)
    assert code == 0, output
    assert check["status"] == "not checked" and check["passed"] is True, check  # `passed` as before
    printed = CliRunner().invoke(app, ["audit", str(fresh), "--check", "hmac", "--html", str(tmp_path / "a.html")])
    assert printed.exit_code == 0 and printed.stdout.startswith("skip hmac "), printed.output
    assert '<td class="unchecked">not checked</td>' in (tmp_path / "a.html").read_text()

    monkeypatch.setenv("RATCHET_SEAL_KEY", KEY)
    code, check, output = _hmac(fresh)
    assert code == 0 and check["status"] == "pass" and check["passed"] is True, output
    monkeypatch.setenv("RATCHET_SEAL_KEY", "another key")
    code, check, output = _hmac(fresh)
    assert code == 1 and check["status"] == "fail" and check["passed"] is False, output


def test_serving_an_unevaluated_baseline_names_the_command_that_evaluates_it(fresh):
    from optimizer.release.serve import Service

    with pytest.raises(RatchetError) as caught:
        Service(fresh).start()
    assert "the baseline has not been evaluated yet" in str(caught.value)
    assert f"`ratchet run {fresh} --experiments 0`" in str(caught.value)


def test_a_shadow_trial_on_an_unevaluated_baseline_names_the_command(fresh, tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("a\n1\n")
    result = CliRunner().invoke(app, ["shadow", "start", str(fresh), "--challenger", "baseline", "--events",
                                      str(events)])
    said = _said(result)
    assert result.exit_code == 2 and "the baseline has not been evaluated yet" in said, result.output
    assert f"`ratchet run {fresh}`" in said and "--experiments 0" in said


# --- MLflow's type-hint warning ------------------------------------------------------------------------------------

REGISTER = """
import sys, tempfile, warnings
warnings.simplefilter("default")
import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from optimizer.tracking.registry_model import PolicyModel
mlflow.pyfunc.save_model(tempfile.mkdtemp() + "/m", python_model=PolicyModel(),
                         signature=ModelSignature(Schema([ColSpec("double", "amount")])))
print("--- a PythonModel without hints", file=sys.stderr, flush=True)
class Bare(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input
"""


def test_defining_and_saving_the_registered_model_warns_nothing_about_type_hints(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    proc = subprocess.run([sys.executable, "-c", REGISTER], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, bare = proc.stderr.split("--- a PythonModel without hints")
    assert "type hint" not in ours.lower(), ours
    assert "Add type hints to the `predict` method" in bare, bare  # the check would see the warning
