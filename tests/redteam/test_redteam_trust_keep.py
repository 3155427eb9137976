"""The second red team, continued (split from test_redteam_trust.py so the two halves run on separate workers): a
keep is one transaction, repaired on the next load wherever it stopped, and `ratchet audit --replay` passes on
honest pricing and routing workspaces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards import GuardName
from tests.conftest import BASELINE, copy_workspace
from tests.redteam.test_redteam_trust import COMMENTED, _audit_failures, _replay, _try


@pytest.fixture(scope="module")
def _module_env():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


# --- a keep is one transaction --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def baselined(weak_workspace, tmp_path_factory, _module_env) -> Path:
    ws = tmp_path_factory.mktemp("baselined") / "ws"
    _module_env.setenv("MLFLOW_TRACKING_URI", copy_workspace(weak_workspace, ws))
    assert _try(ws, COMMENTED.replace("THRESHOLD = 0.3 ", "THRESHOLD = 0.9 ")).exit_code in (0, 1)
    return ws


class _Stop(BaseException):
    """A stop at a step of the keep (what SIGKILL or a power cut does, minus the process)."""


@pytest.mark.parametrize("step", ["intent", "commit", "state", "swap", "complete"])
def test_a_stop_at_each_step_of_the_keep_is_repaired_on_the_next_load(baselined, tmp_path, monkeypatch, step):
    from optimizer.loop.experiment import run_experiment
    from optimizer.records import keep
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    ws = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(baselined, ws))
    ctx = load_context(ws)
    parent = ctx.ws.head()

    def stop(reached):
        if reached == step:
            raise _Stop(step)

    original = keep._reached
    monkeypatch.setattr(keep, "_reached", stop)
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox, pytest.raises(_Stop):
        run_experiment(ctx, sandbox, BASELINE, proposer="redteam", hypothesis="the shipped baseline")
    monkeypatch.setattr(keep, "_reached", original)
    again = load_context(ws)  # what the next run or try does first
    champion, last = again.champion(), again.ledger.entries("experiment")[-1].data
    if step in ("swap", "complete"):  # the new state was in place: rolled forward
        assert last["kept"] and champion.experiment == last["experiment"] == "exp-0002"
        assert champion.commit == again.ws.head() == last["commit"] != parent
    else:  # rolled back: the old champion, HEAD on the parent, the experiment recorded as crashed
        assert not last["kept"] and last["status"] == "crashed" and "interrupted" in last["reasons"][-1]["detail"]
        assert again.ws.head() == parent and champion.experiment == "baseline"
        assert again.ws.policy.read_text() == again.ws.champion_source()
    assert not (ws / "champion.prev").exists() and not (ws / "champion.next").exists()
    # The experiment ran without a tracker: MLflow lacks its run until `ratchet sync` writes it (until then the
    # audit says "not verified", never intact).
    from typer.testing import CliRunner

    from optimizer.cli import app

    assert CliRunner().invoke(app, ["sync", str(ws)]).exit_code == 0
    assert not _audit_failures(ws)
    assert _try(ws, COMMENTED).exit_code in (0, 1)  # the next experiment is accepted


def test_a_failed_keep_commit_is_rolled_back_and_leaves_no_false_tamper_alarm(baselined, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(baselined, ws))
    hook = ws / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by a hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = _try(ws, BASELINE, "--keep")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and not verdict["kept"], result.output
    assert "refused by a hook" in {r["guard"]: r["detail"] for r in verdict["reasons"]}[GuardName.RECORD]
    from typer.testing import CliRunner

    from optimizer.cli import app

    assert CliRunner().invoke(app, ["sync", str(ws)]).exit_code == 0  # the run the failed keep left unfinished
    assert not _audit_failures(ws)


# --- ratchet audit --replay -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, policy", [("pricing_workspace", "PRICING_BASELINE"),
                                             ("routing_workspace", "ROUTING_BASELINE")])
def test_replay_passes_on_honest_pricing_and_routing_workspaces(request, tmp_path, monkeypatch, fixture, policy):
    import tests.conftest as conftest

    ws = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(request.getfixturevalue(fixture), ws))
    result = _try(ws, getattr(conftest, policy), "--keep")
    assert json.loads(result.stdout)["kept"], result.output
    honest = _replay(ws)
    assert "failed" not in honest, honest
    assert any("exp-0001" in c and "reproduced exactly" in c for c in honest["passed"])
