"""What the model broker adds per ticket: the shipped LLM routing policy decides generated tickets in
the real sandbox, each request relayed by the fork server to the parent's broker, which calls a
local server speaking the Messages API (answering at once). So the figures are ratchet's own cost
per request, without the provider's latency; a real model adds its own (about a second per ticket).

    .venv/bin/python benchmarks/task_agent_broker.py [--tickets 500] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from domains.routing.data import generate
    from optimizer.llm.task_agent import TaskAgentBroker
    from optimizer.sandbox import Sandbox
    from optimizer.workspace.config import TaskAgentConfig
    from tests.fake_anthropic import FakeAnthropic

    frame = generate(0, max(2_000, args.tickets * 3))
    train, rows = frame.iloc[: args.tickets * 2], frame.iloc[-args.tickets:].drop(columns=["resolved_by"])
    source = (ROOT / "domains" / "routing" / "policy_llm.py").read_text()
    with FakeAnthropic() as fake:
        fake.answer_with(lambda body: "billing | the words point there")
        os.environ.update(ANTHROPIC_API_KEY="sk-local", ANTHROPIC_BASE_URL=fake.url)
        broker = TaskAgentBroker(TaskAgentConfig(enabled=True, max_requests=100_000), canaries=[],
                                 holdout_ids=frozenset(), spent=0.0, record=lambda kind, data: None)
        with Sandbox(broker=broker) as box:
            fitted = box.fit(source, train, budget_s=120)
            assert fitted.ok, fitted.error
            plain = source.replace("answer = ratchet_llm.complete(", "answer = 'billing' or ratchet_llm.complete(")
            local = box.decide(plain, fitted.model, {"dev": rows}, budget_s=120)
            sent, cached = [], []
            for repeat in range(args.repeats):
                broker._cache.clear()
                first = box.decide(source, fitted.model, {"dev": rows}, budget_s=600)
                again = box.decide(source, fitted.model, {"dev": rows}, budget_s=600)  # every answer cached
                assert first.ok and again.ok, (first.error, again.error)
                sent.append(first.decide_seconds)
                cached.append(again.decide_seconds)
        requests = len(fake.requests)
    per = 1000.0 / args.tickets
    print(f"tickets per decide: {args.tickets}; requests the server saw: {requests} "
          f"({requests / args.repeats:.0f} per uncached decide)")
    print(f"decide without the model (local classifier only): {local.decide_seconds * per:.2f} ms per ticket")
    print(f"decide through the broker, every request sent:    {statistics.median(sent) * per:.2f} ms per ticket")
    print(f"decide through the broker, every answer cached:   {statistics.median(cached) * per:.2f} ms per ticket")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.1f} s")
