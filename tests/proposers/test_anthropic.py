"""The meta-agent proposer against a local server that speaks the Messages API over HTTP."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optimizer.base.errors import RatchetError
from optimizer.proposers import ProposalContext
from optimizer.proposers._anthropic import AnthropicProposer, ContaminationAlarm
from optimizer.workspace.config import AgentConfig
from tests.conftest import BASELINE, WEAK
from tests.fake_anthropic import FakeAnthropic, text, tool_use

CANARY = "CANARY-7f3a9c"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    import mlflow

    # Spans outside a loop run land in this experiment, whose artifacts stay under the test's folder.
    experiment = mlflow.create_experiment(f"agent-{tmp_path.name}", artifact_location=(tmp_path / "art").as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    with FakeAnthropic() as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


def _proposer(tmp_path: Path, records: list, **config) -> AnthropicProposer:
    from guards.static import scan

    def check(source: str) -> str | None:
        result = scan(source, allowed_imports=["numpy", "pandas", "xgboost", "math"])
        return None if result.passed else f"static scan: {result.detail}"

    return AnthropicProposer(config=AgentConfig(max_retries=3, **config), experiments=tmp_path, primary="net_savings",
                             check=check, canaries=[CANARY], holdout_ids=frozenset({"900001", "900002", "900003"}),
                             spent=0.0, record=lambda kind, data: records.append((kind, dict(data))))


CONTEXT = ProposalContext(WEAK, "# program\nmaximise net savings", [])
LOWER = {"hypothesis": "a lower threshold blocks more fraud",
         "edits": [{"search": "THRESHOLD = 0.9", "replace": "THRESHOLD = 0.3"}]}


def _tool_results(request: dict) -> list[dict]:
    return [b for m in request["body"]["messages"] if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "tool_result"]


def test_a_good_edit_becomes_a_candidate_and_usage_is_recorded(fake, tmp_path):
    fake.reply(text("Reading the policy first."), tool_use("read_policy", {}, "t1"))
    fake.reply(tool_use("propose_edit", LOWER, "t2"), input_tokens=2000, output_tokens=500, cache_read=1500)
    records: list = []
    candidate = _proposer(tmp_path, records).propose(CONTEXT)
    assert candidate.hypothesis == LOWER["hypothesis"]
    assert candidate.source == WEAK.replace("THRESHOLD = 0.9", "THRESHOLD = 0.3", 1)
    assert candidate.meta["agent_steps"] == 2 and candidate.meta["agent_input_tokens"] == 3200
    # 3200 input, 800 output, 1500 cache reads at the default prices.
    assert candidate.meta["agent_cost_usd"] == pytest.approx((3200 * 3 + 800 * 15 + 1500 * 0.3) / 1e6)
    first, second = fake.requests
    headers = first["headers"]
    assert "sk-test-key" in (headers.get("x-api-key", ""), headers.get("authorization", "").removeprefix("Bearer "))
    assert first["path"] == "/v1/messages" and "anthropic-version" in headers
    body = first["body"]
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"} and "maximise net savings" in body["system"][-1]["text"]
    assert {t["name"] for t in body["tools"]} >= {"read_policy", "read_program", "read_history", "read_trace",
                                                  "propose_edit"}
    result = _tool_results(second)[0]
    assert result["tool_use_id"] == "t1" and "THRESHOLD = 0.9" in result["content"] and not result.get("is_error")
    assert [k for k, _ in records] == ["agent_usage", "agent_usage"]
    assert records[-1][1]["spent_usd"] == pytest.approx(candidate.meta["agent_cost_usd"])


def test_bad_edits_go_back_to_the_model_within_the_step_budget(fake, tmp_path):
    fake.reply(tool_use("propose_edit", {"hypothesis": "x", "edits": [{"search": "NOT THERE", "replace": "y"}]}, "a"))
    fake.reply(tool_use("propose_edit", {"hypothesis": "read a file",
                                         "edits": [{"search": "import numpy as np", "replace": "import os\nimport numpy as np"}]}, "b"))
    fake.reply(tool_use("propose_edit", {"hypothesis": "broken", "edits": [{"search": "THRESHOLD = 0.9",
                                                                            "replace": "THRESHOLD = = 0.3"}]}, "c"))
    fake.reply(tool_use("propose_edit", {"edits": "not a list", "hypothesis": "malformed"}, "d"))
    fake.reply(tool_use("propose_edit", LOWER, "e"))
    candidate = _proposer(tmp_path, []).propose(CONTEXT)
    assert candidate is not None and candidate.meta["agent_steps"] == 5
    errors = [_tool_results(r)[-1] for r in fake.requests[1:]]
    assert all(e["is_error"] for e in errors)
    assert "was not found" in errors[0]["content"]
    assert "static scan" in errors[1]["content"] and "os" in errors[1]["content"]
    assert "does not parse" in errors[2]["content"]
    assert "'edits' must be a non-empty list" in errors[3]["content"]


def test_no_valid_proposal_within_the_steps_stops_with_a_reason(fake, tmp_path):
    for _ in range(2):
        fake.reply(text("I think the policy is fine."))
    proposer = _proposer(tmp_path, [], max_steps=2)
    assert proposer.propose(CONTEXT) is None
    assert "no valid proposal within 2 steps" in proposer.stop_reason
    assert fake.requests[1]["body"]["messages"][-1]["content"].startswith("Call propose_edit")


def test_rate_limits_and_overload_are_retried_with_backoff(fake, tmp_path):
    fake.error(429, "slow down")
    fake.error(529, "overloaded")
    fake.reply(tool_use("propose_edit", LOWER))
    candidate = _proposer(tmp_path, []).propose(CONTEXT)
    assert candidate is not None and len(fake.requests) == 3


def test_a_request_failing_after_retries_is_a_clear_error(fake, tmp_path):
    for _ in range(4):
        fake.error(529, "overloaded")
    with pytest.raises(RatchetError, match="the model request failed after 3 retries"):
        _proposer(tmp_path, []).propose(CONTEXT)


def test_spend_cap_stops_before_the_next_request(fake, tmp_path):
    fake.reply(tool_use("read_policy", {}), input_tokens=400_000, output_tokens=0)  # $1.20 at $3/Mtok
    fake.reply(tool_use("propose_edit", LOWER))
    proposer = _proposer(tmp_path, [], spend_cap_usd=1.0)
    assert proposer.propose(CONTEXT) is None
    assert "spend cap of $1.00 is reached" in proposer.stop_reason and len(fake.requests) == 1


def test_a_canary_in_a_trace_is_caught_before_sending(fake, tmp_path):
    leaked = tmp_path / "exp-0001"
    leaked.mkdir()
    (leaked / "trace.json").write_text(json.dumps({"worst": [{"tx_id": CANARY, "amount": 12.5}]}))
    fake.reply(tool_use("read_trace", {"experiment": "exp-0001"}))
    records: list = []
    with pytest.raises(ContaminationAlarm, match="holdout canary found in the request to the model"):
        _proposer(tmp_path, records).propose(CONTEXT)
    assert len(fake.requests) == 1  # the request holding the canary never left
    assert CANARY not in json.dumps(fake.requests)
    assert records[-1][0] == "contamination_alarm" and records[-1][1]["guard"] == "contamination"


def test_holdout_ids_in_the_outgoing_text_are_caught(fake, tmp_path):
    context = ProposalContext(WEAK, "known ids: 900001 900002 900003", [])
    with pytest.raises(ContaminationAlarm, match="3 holdout ids"):
        _proposer(tmp_path, []).propose(context)
    assert fake.requests == []


def test_batch_drafts_diverse_proposals_and_rebases_after_a_keep(fake, tmp_path):
    fake.reply(tool_use("propose_edit", LOWER))
    fake.reply(tool_use("propose_edit", {"hypothesis": "deeper trees", "edits": [
        {"search": "MAX_DEPTH = 2", "replace": "MAX_DEPTH = 4"}]}))
    proposer = _proposer(tmp_path, [], batch=2)
    first = proposer.propose(CONTEXT)
    assert "This round already proposes" in fake.requests[1]["body"]["messages"][0]["content"]
    assert LOWER["hypothesis"] in fake.requests[1]["body"]["messages"][0]["content"]
    # The first was kept: the second is re-applied on the new champion, not on the old one.
    second = proposer.propose(ProposalContext(first.source, CONTEXT.program, []))
    assert second.hypothesis == "deeper trees" and "THRESHOLD = 0.3" in second.source and "MAX_DEPTH = 4" in second.source
    assert len(fake.requests) == 2


def test_anthropic_without_a_key_is_a_clear_error(monkeypatch, tmp_path):
    from optimizer.loop.run import choose_proposer

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(RatchetError, match="needs ANTHROPIC_API_KEY"):
        _proposer(tmp_path, [])
    assert choose_proposer(None)[0] == "optuna"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert choose_proposer(None) == ("anthropic", "ANTHROPIC_API_KEY is set")
    assert choose_proposer("optuna")[0] == "optuna"


@pytest.fixture
def ws(weak_workspace, tmp_path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(weak_workspace, copy)
    return copy


def test_run_end_to_end_with_memory_across_runs(fake, ws, monkeypatch):
    """`ratchet run --proposer anthropic`: the edit is evaluated and kept, usage lands in the ledger and MLflow,
    the request is traced; a second run's prompt remembers what the first tried."""
    from typer.testing import CliRunner

    import mlflow
    from optimizer.cli import app
    from optimizer.records.context import load_context
    from optimizer.tracking.runs import open_tracker

    fake.reply(tool_use("read_trace", {"experiment": "latest"}, "t1"))
    fake.reply(tool_use("propose_edit", {"hypothesis": "restore the full model", "new_file": BASELINE}, "t2"))
    result = CliRunner().invoke(app, ["run", str(ws), "--experiments", "1", "--proposer", "anthropic"])
    assert result.exit_code == 0, result.output
    assert "proposer: anthropic (chosen with --proposer)" in result.output
    ctx = load_context(ws)
    record = [e for e in ctx.ledger.entries() if e.kind == "experiment"][-1].data
    assert record["proposer"] == "anthropic" and record["hypothesis"] == "restore the full model"
    assert record["status"] == "kept" and (ws / "policy.py").read_text() == BASELINE
    assert record["proposal"]["agent_steps"] == 2
    assert sum(e.kind == "agent_usage" for e in ctx.ledger.entries()) == 2
    tracker = open_tracker(ctx)
    run = [r for r in tracker.runs() if r.data.tags.get("ratchet.experiment") == record["experiment"]][0]
    assert run.data.metrics["agent_cost_usd"] == pytest.approx(record["proposal"]["agent_cost_usd"])
    assert run.data.params["hypothesis"] == "restore the full model"
    mlflow.flush_trace_async_logging()  # traces are exported in the background
    traces = mlflow.search_traces(locations=[tracker.experiment_id], return_type="list")
    assert len(traces) >= 2 and all(t.info.state.value == "OK" for t in traces)

    fake.reply(tool_use("propose_edit", LOWER | {"edits": [{"search": "THRESHOLD = 0.3", "replace": "THRESHOLD = 0.4"}]}))
    result = CliRunner().invoke(app, ["run", str(ws), "--experiments", "1", "--proposer", "anthropic"])
    assert result.exit_code == 0, result.output
    prompt = fake.requests[-1]["body"]["messages"][0]["content"]
    assert "exp-0001 kept" in prompt and "restore the full model" in prompt
