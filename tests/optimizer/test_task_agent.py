"""The task-agent routing variant end to end: real sandbox and fork server, the parent's broker, and a
local server speaking the Messages API that routes each ticket and marks its reasoning."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from optimizer.base.tunables import rewrite
from optimizer.cli import app
from tests.conftest import mlflow_store
from tests.fake_anthropic import FakeAnthropic

LLM_POLICY = (Path(__file__).resolve().parents[2] / "domains" / "routing" / "policy_llm.py").read_text()
DEV_MARK, HOLDOUT_MARK = "DEV-REASONING-4K", "HOLDOUT-REASONING-7Q"


def _key(content: str) -> tuple[str, str]:
    lines = dict(line.split(": ", 1) for line in content.splitlines() if ": " in line)
    return lines.get("subject", ""), lines.get("body", "")


class Router:
    """Answers each ticket with the team that resolved it and a reason carrying a marker for holdout-only text."""

    def __init__(self, ws: Path) -> None:
        from optimizer.records.context import load_context

        ctx = load_context(ws)
        frames = {"train": ctx.train, "dev": ctx.dev, "holdout": ctx.holdout_all}
        keys = {name: set(zip(f["subject"].astype(str).str[:600], f["body"].astype(str).str[:600]))
                for name, f in frames.items()}
        self.truth = {k: t for f in frames.values()
                      for k, t in zip(zip(f["subject"].astype(str).str[:600], f["body"].astype(str).str[:600]),
                                      f["resolved_by"].astype(str))}
        self.holdout_only = keys["holdout"] - keys["dev"] - keys["train"]
        self.holdout_answers = 0

    def __call__(self, body: dict) -> str:
        key = _key(body["messages"][-1]["content"])
        if key in self.holdout_only:
            self.holdout_answers += 1
            return f"{self.truth.get(key, 'billing')} | {HOLDOUT_MARK} the words point there"
        return f"{self.truth.get(key, 'billing')} | {DEV_MARK} the words point there"


@pytest.fixture(scope="module")
def fake():
    with FakeAnthropic() as server:
        yield server


def _env(fake: FakeAnthropic) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": "sk-test-key", "ANTHROPIC_BASE_URL": fake.url}


@pytest.fixture(scope="module")
def llm_ws(tmp_path_factory, fake) -> Path:
    from optimizer.lifecycle.initialize import init_workspace

    base = tmp_path_factory.mktemp("llm")
    saved = dict(os.environ)
    os.environ.update(_env(fake), MLFLOW_TRACKING_URI=mlflow_store(base / "mlflow.db"))
    try:
        root = init_workspace("routing", base / "ws", variant="llm",
                              overrides={"data.rows": 2000, "split.gap_days": 0.05, "seal.canaries": 4, "task_agent.max_requests": 1000,
                                         "task_agent.trace_exchanges": 5000, "task_agent.trace_chars": 120,
                                         "sandbox.budget_s": 120}).workspace.root
    finally:
        os.environ.clear()
        os.environ.update(saved)
    fake.answer_with(Router(root))
    return root


@pytest.fixture
def keyed(monkeypatch, fake):
    for k, v in _env(fake).items():
        monkeypatch.setenv(k, v)


def _ledger(ws: Path) -> list:
    from holdout.ledger import Ledger

    return Ledger(ws / "ledger.duckdb").entries()


def _try(ws: Path, source: str, tmp_path: Path, name: str = "candidate.py"):
    path = tmp_path / name
    path.write_text(source)
    return CliRunner().invoke(app, ["try", str(ws), str(path), "--json"])


def test_the_variant_is_refused_without_a_key_before_any_sandbox_work(monkeypatch, tmp_path, llm_ws, fake):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    made = CliRunner().invoke(app, ["init", "routing", "-w", str(tmp_path / "new"), "--variant", "llm"])
    assert made.exit_code == 2 and not (tmp_path / "new").exists()
    assert "policy_llm.py" in made.output and "needs ANTHROPIC_API_KEY" in made.output
    before, asked = len(_ledger(llm_ws)), len(fake.requests)
    for argv in (["try", str(llm_ws), str(llm_ws / "policy.py")], ["run", str(llm_ws), "--experiments", "1"]):
        refused = CliRunner().invoke(app, argv)
        assert refused.exit_code == 2, refused.output
        assert "policy.py (task_agent.enabled in ratchet.yaml)" in refused.output
        assert "needs ANTHROPIC_API_KEY" in refused.output
    assert len(_ledger(llm_ws)) == before and len(fake.requests) == asked  # no baseline, no request


def test_the_variant_routes_every_ticket_through_the_broker_and_holdout_reasoning_stays_out(
        keyed, llm_ws, fake, tmp_path):
    from optimizer.records.context import load_context

    router = fake.responder[0]
    asked = len(fake.requests)
    candidate = rewrite(LLM_POLICY, {"MAX_TOKENS": 40})
    result = _try(llm_ws, candidate, tmp_path)
    assert result.exit_code in (0, 1), result.output
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    ctx = load_context(llm_ws)
    n_dev, n_holdout = len(ctx.dev), len(ctx.holdout_all)
    # The model's answers decided: it names the resolving team, and the local fallback alone does far worse.
    assert verdict["metrics"]["dev"]["first_team_resolution_rate"] > 0.97
    sent = fake.requests[asked:]
    assert sent and all(r["path"] == "/v1/messages" and r["body"]["model"] == "claude-haiku-4-5" for r in sent)
    body = sent[-1]["body"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "Teams and what they resolve" in body["system"][0]["text"] and "answer: returns | example" in body["system"][0]["text"]
    assert body["messages"][-1]["content"].startswith("subject: ") and body["max_tokens"] == 40
    usage = [e.data for e in _ledger(llm_ws) if e.kind == "task_agent_usage"]
    row_sets = [tuple(u["row_sets"]) for u in usage]
    assert ("dev",) in row_sets and any("holdout" in rs for rs in row_sets)
    assert all(u["clean"] == (set(u["row_sets"]) <= {"dev", "train"}) for u in usage)
    assert sum(u["sent"] for u in usage) == len(fake.requests)  # every request the server saw is accounted for
    assert all(set(u) == {"model", "phase", "row_sets", "clean", "requests", "sent", "cached", "refused", "failed",
                          "input_tokens", "output_tokens", "cost_usd", "spent_usd", "stopped"} for u in usage)
    record = [e.data for e in _ledger(llm_ws) if e.kind == "experiment"][-1]
    figures = record["fit"]["task_agent"]
    mixed, prefixes, alone = usage[-3], usage[-2], usage[-1]
    assert mixed["row_sets"] == ["dev", "holdout"] and mixed["cached"] >= n_dev  # dev: no new request
    assert prefixes["row_sets"][0].startswith("dev_prefix") and prefixes["sent"] == 0  # a fresh process, cached
    # The parity guard's dev events one at a time: answered from the cache of the dev-only pass. Their row sets are
    # not named dev, so the broker counts the phase as tainted (its replies reach no trace): the cautious side.
    assert alone["row_sets"] == ["parity"] and not alone["clean"] and alone["sent"] == 0
    assert mixed["sent"] <= n_holdout
    assert figures["requests"] == sum(u["requests"] for u in usage[-4:])
    assert figures["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usage[-4:]))
    trace = json.loads((llm_ws / "experiments" / record["experiment"] / "trace.json").read_text())
    reasoning = trace["task_agent"]["dev_reasoning"]
    assert len(reasoning) == n_dev and all(DEV_MARK in r["reply"] for r in reasoning)  # every dev reply, no other
    # Holdout tickets were answered with the marker, and it is nowhere a person or the meta-agent can read.
    assert router.holdout_answers > 0
    for folder in (llm_ws, Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).parent):
        for path in folder.rglob("*"):
            if path.is_file() and os.access(path, os.R_OK):
                assert HOLDOUT_MARK.encode() not in path.read_bytes(), path
    assert HOLDOUT_MARK not in json.dumps([e.data for e in _ledger(llm_ws)])  # the ledger's text, uncompressed
    assert DEV_MARK.encode() in (llm_ws / "experiments" / record["experiment"] / "trace.json").read_bytes()
    from optimizer.tracking.runs import open_tracker

    run = [r for r in open_tracker(ctx).runs() if r.data.tags.get("ratchet.experiment") == record["experiment"]][0]
    assert run.data.metrics["task_agent_requests"] == figures["requests"]
    assert run.data.metrics["task_agent_cost_usd"] == pytest.approx(figures["cost_usd"])


RUNAWAY = LLM_POLICY.replace('''def fit(train):
''', '''def fit(train):
    for i in range(5000):  # a runaway: asks far more than any phase may
        try:
            ratchet_llm.complete(system="s", messages=[{"role": "user", "content": f"again {i}"}], max_tokens=5)
        except RuntimeError:
            pass
''')


def test_a_runaway_policy_is_stopped_by_the_request_cap(keyed, llm_ws, fake, tmp_path):
    asked = len(fake.requests)
    result = _try(llm_ws, RUNAWAY, tmp_path)
    assert result.exit_code == 1, result.output
    failed = [r for r in json.loads(result.output.strip().splitlines()[-1])["reasons"] if not r["passed"]]
    assert failed[0]["guard"] == "sandbox"
    assert "fit phase violation: fit was stopped by the model broker: more than 1000 model requests in one fit " \
           "phase (task_agent.max_requests)" in failed[0]["detail"]
    last = [e.data for e in _ledger(llm_ws) if e.kind == "task_agent_usage"][-1]
    assert last["phase"] == "fit" and last["sent"] == 1000 and last["stopped"].startswith("more than 1000")
    assert len(fake.requests) - asked >= 1000


SENDS_IDS = LLM_POLICY.replace('''        content = ticket(subject.iloc[i], body.iloc[i], priority.iloc[i], channel.iloc[i])''',
                               '''        content = ticket(subject.iloc[i], body.iloc[i], priority.iloc[i], channel.iloc[i])
        content += f"\\nref: {rows['ticket_id'].iloc[i]}"''')


def test_a_request_carrying_a_holdout_canary_is_blocked_with_an_alarm(keyed, llm_ws, fake, tmp_path):
    from optimizer.records.context import load_context

    canaries = load_context(llm_ws).manifest["canaries"]
    asked = len(fake.requests)
    result = _try(llm_ws, SENDS_IDS, tmp_path)
    assert result.exit_code == 1, result.output
    failed = [r for r in json.loads(result.output.strip().splitlines()[-1])["reasons"] if not r["passed"]]
    assert failed[0]["guard"] == "sandbox" and "decide phase violation" in failed[0]["detail"]
    assert "holdout canary found in a request to the routing model" in failed[0]["detail"]
    assert not any(c in json.dumps(r["body"]) for r in fake.requests[asked:] for c in canaries)  # never sent
    alarm = [e.data for e in _ledger(llm_ws) if e.kind == "contamination_alarm"][-1]
    assert alarm["source"] == "task_agent" and alarm["blocked"] is True


def test_spend_cap_stops_the_phase_and_a_policy_cannot_reach_the_server_itself(keyed, fake):
    import numpy as np

    from optimizer.llm.task_agent import TaskAgentBroker
    from optimizer.sandbox import Sandbox
    from optimizer.workspace.config import TaskAgentConfig

    if fake.responder is None:
        fake.answer_with(lambda body: "billing | x")
    records: list = []
    broker = TaskAgentBroker(TaskAgentConfig(enabled=True, spend_cap_usd=0.0102), canaries=[], holdout_ids=frozenset(),
                             spent=0.0, record=lambda kind, data: records.append((kind, data)))
    port = fake.url.rsplit(":", 1)[1]
    asking = ("import ratchet_llm\ndef fit(train):\n    for i in range(100):\n"
              "        ratchet_llm.complete(system='', messages=[{'role': 'user', 'content': 'subject: x %d' % i}],"
              " max_tokens=5)\n    return 1\ndef decide(model, rows):\n    return rows['x']\n")
    direct = (f"import socket\ndef fit(train):\n    socket.socket().connect(('127.0.0.1', {port}))\n"
              "def decide(model, rows):\n    return rows['x']\n")
    train = pd.DataFrame({"x": np.arange(3.0)})
    asked = len(fake.requests)
    with Sandbox(preload=("numpy", "pandas", "pyarrow"), broker=broker) as box:
        capped = box.fit(asking, train, budget_s=60)
        blocked = box.fit(direct, train, budget_s=60)
    # 300 input and 20 output tokens per answer at $1/$5 per Mtok: $0.0004 each; the 26th passes $0.0102.
    assert capped.status == "violation" and "spend cap of $0.01 is reached" in capped.error
    assert len(fake.requests) - asked == 26 and records[-1][1]["sent"] == 26
    assert blocked.status == "violation" and f"socket.connect 127.0.0.1:{port}" in blocked.error
    assert len(fake.requests) - asked == 26  # nothing reached the server from the policy itself


def test_ratchet_llm_is_importable_only_where_the_task_agent_is_enabled():
    from guards.static import scan
    from optimizer.base.errors import RatchetError
    from optimizer.workspace.config import StaticConfig, parse_config

    with pytest.raises(RatchetError, match="static.allowed_imports names ratchet_llm but task_agent.enabled is false"):
        parse_config({"domain": "routing", "static": {"allowed_imports": ["numpy", "ratchet_llm"]}}, source="x.yaml")
    refused = scan(LLM_POLICY, allowed_imports=StaticConfig().allowed_imports)
    assert not refused.passed and "import of 'ratchet_llm' is not allowed" in refused.detail
    assert scan(LLM_POLICY, allowed_imports=[*StaticConfig().allowed_imports, "ratchet_llm"]).passed
