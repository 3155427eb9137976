"""The model broker's channel through the real fork server: requests reach the parent, replies reach
the policy, a stop ends the phase, and the policy still has no network of its own."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from optimizer.sandbox import Sandbox
from optimizer.sandbox._channel import RequestError, parse_request

LIGHT = ("numpy", "pandas", "pyarrow")
TRAIN = pd.DataFrame({"x": np.arange(3, dtype=float)})
ROWS = {"dev": pd.DataFrame({"x": [1.0, 2.0]}), "holdout": pd.DataFrame({"x": [3.0]})}

ASKING = """
import ratchet_llm

def fit(train):
    return ratchet_llm.complete(system="fit", messages=[{"role": "user", "content": "rows %d" % len(train)}],
                                max_tokens=8)

def decide(model, rows):
    return [ratchet_llm.complete(system=model, messages=[{"role": "user", "content": "x=%g" % x}], max_tokens=8)
            for x in rows["x"]]
"""


class Echo:
    """A broker that answers 'seen:<content>' and stops a phase after `limit` requests."""

    def __init__(self, limit: int = 100, delay: float = 0.0) -> None:
        self.limit, self.delay = limit, delay
        self.sessions: list[tuple[str, tuple[str, ...], list[dict]]] = []

    def session(self, phase, row_sets, deadline):
        seen: list[dict] = []
        self.sessions.append((phase, row_sets, seen))
        broker = self

        class Session:
            def handle(self, line):
                time.sleep(broker.delay)
                try:
                    request = parse_request(line, max_chars=1000, max_tokens=64)
                except RequestError as exc:
                    return {"error": str(exc)}, None
                seen.append(request)
                if len(seen) > broker.limit:
                    return {}, f"more than {broker.limit} requests in one phase"
                return {"text": f"{request['system']}|seen:{request['messages'][-1]['content']}"}, None

            def close(self):
                pass

        return Session()


def test_requests_reach_the_parent_and_replies_reach_the_policy():
    broker = Echo()
    with Sandbox(preload=LIGHT, broker=broker) as box:
        fitted = box.fit(ASKING, TRAIN, budget_s=30)
        assert fitted.ok, fitted.error
        decided = box.decide(ASKING, fitted.model, ROWS, budget_s=30)
    assert decided.ok, decided.error
    assert list(decided.decisions["dev"]) == ["fit|seen:rows 3|seen:x=1", "fit|seen:rows 3|seen:x=2"]
    assert list(decided.decisions["holdout"]) == ["fit|seen:rows 3|seen:x=3"]
    (fit_phase, fit_sets, fit_seen), (phase, sets, seen) = broker.sessions
    assert (fit_phase, fit_sets, len(fit_seen)) == ("fit", ("train",), 1)
    assert (phase, sets) == ("decide", ("dev", "holdout")) and len(seen) == 3
    assert seen[0] == {"system": "fit|seen:rows 3", "messages": [{"role": "user", "content": "x=1"}], "max_tokens": 8}


def test_a_stop_from_the_broker_ends_the_phase_as_a_violation():
    with Sandbox(preload=LIGHT, broker=Echo(limit=1)) as box:
        fitted = box.fit(ASKING, TRAIN, budget_s=30)
        decided = box.decide(ASKING, fitted.model, ROWS, budget_s=30)
        assert decided.status == "violation"
        assert decided.error == "decide was stopped by the model broker: more than 1 requests in one phase"
        again = box.decide(ASKING.replace("ratchet_llm.complete(system=model", "str((model"), fitted.model,
                           ROWS, budget_s=30)
    assert again.status == "crash" or again.ok  # the server lives on for the next phase


def test_a_refused_request_raises_in_the_policy_which_may_fall_back():
    bad = ASKING.replace('max_tokens=8)\n            for x', 'max_tokens=10_000)\n            for x').replace(
        "def decide(model, rows):\n    return [", "def decide(model, rows):\n    try:\n        return [").replace(
        "for x in rows[\"x\"]]", "for x in rows[\"x\"]]\n    except RuntimeError as exc:\n        return [str(exc)[:60]] * len(rows)")
    with Sandbox(preload=LIGHT, broker=Echo()) as box:
        fitted = box.fit(bad, TRAIN, budget_s=30)
        decided = box.decide(bad, fitted.model, {"dev": ROWS["dev"]}, budget_s=30)
    assert decided.ok, decided.error
    assert decided.decisions["dev"][0].startswith("ratchet_llm: max_tokens must be an int from 1 to 64")


def test_without_a_broker_the_module_refuses_and_the_network_stays_closed():
    with Sandbox(preload=LIGHT) as box:
        fitted = box.fit(ASKING, TRAIN, budget_s=30)
    assert fitted.status == "crash" and "no model broker in this sandbox" in fitted.error
    direct = ("import socket\ndef fit(train):\n    socket.socket().connect(('127.0.0.1', 9))\n"
              "def decide(model, rows):\n    return rows['x']\n")
    with Sandbox(preload=LIGHT, broker=Echo()) as box:
        refused = box.fit(direct, TRAIN, budget_s=30)
    assert refused.status == "violation" and "socket.connect 127.0.0.1:9" in refused.error


def test_an_oversized_raw_line_stops_the_phase_without_reaching_the_parent():
    raw = "import os\ndef fit(train):\n    os.write(4, b'x' * 300_000)\n    import time\n    time.sleep(30)\n" \
          "def decide(model, rows):\n    return rows['x']\n"
    broker = Echo()
    with Sandbox(preload=LIGHT, broker=broker) as box:
        stopped = box.fit(raw, TRAIN, budget_s=20)
    assert stopped.status == "violation" and "longer than 262144 bytes" in stopped.error
    assert broker.sessions[0][2] == []


def test_a_slow_broker_counts_against_the_phase_budget_and_its_late_reply_is_dropped():
    with Sandbox(preload=LIGHT, broker=Echo(delay=2.5)) as box:
        slow = box.fit(ASKING, TRAIN, budget_s=1.5)
        assert slow.status == "timeout"
        box.broker = Echo()
        fitted = box.fit(ASKING, TRAIN, budget_s=30)
    assert fitted.ok, fitted.error
