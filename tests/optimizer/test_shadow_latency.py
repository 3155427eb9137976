"""A trial's latency is per event as serve calls the policy: a sample of events decided one per call in a warm
worker, each call timed, each decision the batch's; a slow challenger fails the latency check."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from holdout.hashing import sha256_bytes
from optimizer.base.errors import RatchetError
from optimizer.records.refs import PolicyRef

SLOW_S = 0.15  # the slow challenger's sleep per call: three times the default shadow.max_p99_ms


def slowed(source: str, seconds: float = SLOW_S) -> str:
    """The fraud policy sleeping `seconds` in every decide call (needs `time` in static.allowed_imports to serve)."""
    head = "def decide(model, rows, history):\n"
    assert head in source
    return source.replace("import xgboost\n", "import time\n\nimport xgboost\n", 1).replace(
        head, f"{head}    time.sleep({seconds})  # a slow dependency\n", 1)


def _ref(name: str, source: str) -> PolicyRef:
    return PolicyRef(name, "", "0" * 40, sha256_bytes(source.encode()), source)


@pytest.fixture(scope="module")
def trial_inputs(small_workspace, tmp_path_factory):
    """A copy of the small fraud workspace and 120 live events (dev rows moved past the holdout, new ids)."""
    from optimizer.records.context import load_context

    root = tmp_path_factory.mktemp("latency") / "ws"
    shutil.copytree(small_workspace, root)
    ctx = load_context(root)
    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(120).copy()
    view["tx_id"] = 10**12 + np.arange(len(view))
    view["ts"] = view["ts"] + (ctx.holdout["ts"].max() - ctx.dev["ts"].min()) + pd.Timedelta(days=1)
    return root, view.reset_index(drop=True)


def _decide(root, events, ref: PolicyRef, sample: int):
    from optimizer.records.context import load_context
    from optimizer.release.shadow.deciding import decide_all, past_of
    from optimizer.sandbox import Sandbox
    from optimizer.workspace.history import EventStore

    ctx = load_context(root)
    ctx.config = ctx.config.model_copy(update={"shadow": ctx.config.shadow.model_copy(
        update={"latency_sample": sample, "batch": 50})})
    with EventStore(ctx) as store, Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        past, offset = past_of(ctx, store, events)
        return decide_all(ctx, sandbox, ref, events, "challenger", lambda _: None, past, offset)


def test_sampled_events_are_timed_one_call_each_and_decide_as_in_their_batch(trial_inputs):
    from optimizer.release.shadow.deciding import latency_sample

    root, events = trial_inputs
    source = (root / "policy.py").read_text()
    (values, constants), latency = _decide(root, events, _ref("baseline", source), 12)
    assert len(values) == len(latency) == len(events) and "THRESHOLD" in constants
    timed = ~np.isnan(latency)
    picked = latency_sample(len(events), 12, 0)
    assert timed.sum() == len(picked) == 12 and np.flatnonzero(timed).tolist() == picked.tolist()
    assert (latency[timed] > 0).all()
    # Spread over the trial, seeded: the same picks for the same seed, one in each twelfth of the events.
    assert latency_sample(len(events), 12, 0).tolist() == picked.tolist()
    assert (picked // 10 == np.arange(12)).all()
    assert latency_sample(5, 200, 0).tolist() == [0, 1, 2, 3, 4] and len(latency_sample(5, 0, 0)) == 0


def test_a_slow_challenger_reports_its_per_call_latency_not_the_batch_share(trial_inputs):
    """Batches of 50 share one 0.15 s sleep (3 ms an event); one event per call, as serve calls it, waits it all."""
    from optimizer.workspace.config import ShadowConfig

    root, events = trial_inputs
    _, latency = _decide(root, events, _ref("slow", slowed((root / "policy.py").read_text())), 8)
    per_call = latency[~np.isnan(latency)]
    assert len(per_call) == 8 and (per_call >= SLOW_S * 1000).all()
    assert np.quantile(per_call, 0.99) > ShadowConfig().max_p99_ms  # the report's check fails it


def test_a_policy_that_decides_otherwise_alone_is_refused_by_name(trial_inputs):
    from optimizer.release.shadow.deciding import latency_sample

    root, events = trial_inputs
    head = "def decide(model, rows, history):\n"
    source = (root / "policy.py").read_text().replace(
        head, f"{head}    if len(rows) == 1:\n        return np.full(1, 0.5)  # alone, another answer\n", 1)
    with pytest.raises(RatchetError) as refused:
        _decide(root, events, _ref("two-faced", source), 6)
    message = str(refused.value)
    assert "the challenger (two-faced) decides event" in message and "differently alone" in message
    first = events["tx_id"].iloc[latency_sample(len(events), 6, 0)[0]]
    assert f"event {first} differently alone (0.5" in message and "6 of 6 sampled events" in message
    assert "\n" not in message
