"""Limits a hostile or careless operator found missing: config numbers that are NaN, infinite or out of range, an
approver no one can read, a policy file too large to parse, and a policy that fills its sandbox folder."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from guards import GuardName
from optimizer.base.errors import RatchetError
from optimizer.cli import app
from optimizer.sandbox import Sandbox
from optimizer.workspace.config import RunConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


# --- config numbers: finite and in range ------------------------------------------------------------------------
@pytest.mark.parametrize("domain, key, value", [
    ("fraud", "sandbox.budget_s", "1.0e+308"),  # made every `try` die with OverflowError
    ("fraud", "sandbox.budget_s", ".nan"),
    ("fraud", "sandbox.memory_mb", "1e12"),
    ("fraud", "guardrails.alert_rate.limit", ".nan"),  # a NaN limit never fails
    ("fraud", "guardrails.false_decline_rate.tolerance", ".inf"),
    ("fraud", "guardrails.false_decline_rate.margin", "-.inf"),
    ("fraud", "decision.min_effect", ".nan"),
    ("fraud", "decision.segment_tolerance", ".inf"),
    ("fraud", "gate.tolerance", ".inf"),
    ("fraud", "gate.step_se", ".nan"),
    ("fraud", "seed", "-1"),
    ("fraud", "data.seed", "1.0e+30"),
    ("fraud", "seal.drift_alarm", ".inf"),
    ("fraud", "shadow.margin", ".nan"),
    ("fraud", "shadow.max_p99_ms", ".inf"),
    ("fraud", "agent.spend_cap_usd", ".inf"),
    ("fraud", "agent.prices_per_mtok.input", ".nan"),
    ("fraud", "task_agent.timeout_s", "1e308"),
    ("fraud", "static.max_policy_bytes", "1e12"),
    ("fraud", "scoring.decline_cost", ".nan"),
    ("pricing", "scoring.max_price_deviation", ".inf"),
    ("routing", "scoring.triage_minutes", "-1"),
])
def test_config_numbers_that_are_not_finite_or_in_range_are_refused_by_key(tmp_path, domain, key, value):
    """Loading a config (a workspace's ratchet.yaml, `init --config`) refuses it in one line naming the key."""
    *parents, leaf = key.split(".")
    lines = [f"domain: {domain}"] + [f"{'  ' * depth}{part}:" for depth, part in enumerate(parents)]
    lines.append(f"{'  ' * len(parents)}{leaf}: {value}")
    path = tmp_path / "ratchet.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RatchetError) as info:
        load_config(path)
    message = str(info.value)
    shown = key if not key.startswith("scoring.") else f"scoring.{domain}.{key.split('.', 1)[1]}"
    assert "\n" not in message and shown in message and str(path) in message, message


def test_the_shipped_configs_stay_valid_under_the_bounds():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.static.max_policy_bytes == 1_000_000, path


def test_a_config_set_to_nan_is_refused_by_ratchet_config_set(small_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    before = (ws / "ratchet.yaml").read_text()
    result = CliRunner().invoke(app, ["config", str(ws), "set", "guardrails.alert_rate.limit=.nan",
                                      "--approved-by", "A. Reviewer", "--reason", "try"])
    assert result.exit_code != 0 and "guardrails.alert_rate.limit" in result.output, result.output
    budget = CliRunner().invoke(app, ["config", str(ws), "set", "sandbox.budget_s=1e308",
                                      "--approved-by", "A. Reviewer", "--reason", "try"])
    assert budget.exit_code != 0 and "sandbox.budget_s" in budget.output, budget.output
    assert (ws / "ratchet.yaml").read_text() == before


def test_init_with_a_nan_in_its_config_is_refused_before_any_data(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("domain: fraud\nsandbox:\n  budget_s: .inf\n")
    result = CliRunner().invoke(app, ["init", "fraud", "--workspace", str(tmp_path / "ws"), "--config", str(config)])
    assert result.exit_code != 0 and "sandbox.budget_s" in result.output, result.output
    assert not (tmp_path / "ws" / "ledger.duckdb").exists()


def test_every_float_a_config_accepts_is_finite():
    """The models themselves refuse NaN and infinity wherever a float sits (lists and mappings too)."""
    for bad in (float("nan"), float("inf")):
        with pytest.raises(RatchetError, match=r"scoring\.routing\.sla_hours\.urgent"):
            parse_config({"domain": "routing", "scoring": {"sla_hours": {"urgent": bad, "high": 8, "normal": 24,
                                                                         "low": 72}}}, source="x")
        with pytest.raises(RatchetError, match=r"shadow\.cost_range"):
            parse_config({"shadow": {"cost_range": [0.5, bad]}}, source="x")
    assert RunConfig.model_config.get("allow_inf_nan") is False


# --- approver names ---------------------------------------------------------------------------------------------
INVISIBLE = ["\u200b", "\u200b\u200c\u2060", "\u00ad", " \t", "\ufeff"]


@pytest.mark.parametrize("name", INVISIBLE)
def test_an_invisible_approver_is_refused_by_config_set(small_workspace, tmp_path, name):
    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    result = CliRunner().invoke(app, ["config", str(ws), "set", "decision.min_effect=0.001",
                                      "--approved-by", name, "--reason", "review team doubled"])
    assert result.exit_code == 2 and "--approved-by" in result.output and "visible" in result.output, result.output


def test_approvers_and_reasons_are_recorded_as_read():
    from optimizer.workspace.approvers import approver, reason

    assert approver("\u200b A. Reviewer \u200b", "x") == "A. Reviewer"
    assert approver("Zoë Ó'Brien", "x") == "Zoë Ó'Brien"
    for bad in (*INVISIBLE, "", None, "A\nB", "A\u202eB", "x" * 201):
        with pytest.raises(RatchetError, match="--approved-by"):
            approver(bad, "the rollback")
    assert reason("", required=False) == ""
    with pytest.raises(RatchetError, match="--reason"):
        reason("\u200b", required=False)
    with pytest.raises(RatchetError, match="--reason"):
        reason("", required=True)


@pytest.mark.parametrize("command", [["promote", "exp-0001"], ["rollback"]])
def test_an_invisible_approver_is_refused_by_promote_and_rollback(small_workspace, tmp_path, command):
    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    result = CliRunner().invoke(app, [command[0], str(ws), *command[1:], "--approved-by", "\u200b",
                                      "--reason", "trial passed"])
    assert result.exit_code != 0 and "--approved-by" in result.output and "visible" in result.output, result.output


# --- policy size --------------------------------------------------------------------------------------------------
def test_a_policy_over_the_size_limit_is_refused_by_static_before_parsing(monkeypatch):
    from types import SimpleNamespace

    from domains import _source
    from guards.static import scan
    from optimizer.loop.stages.evaluate import static_check

    base = (ROOT / "domains" / "fraud" / "policy.py").read_text()
    head = base + "\n# "
    source = head + "x" * (1_000_001 - len(head.encode()))  # one byte over the default limit
    parsed = []
    real = _source.ast.parse
    monkeypatch.setattr(_source.ast, "parse", lambda text, *a, **k: parsed.append(text == source) or real(text, *a, **k))
    result = static_check(SimpleNamespace(config=parse_config({}, source="x")), source)
    monkeypatch.undo()
    assert not result.passed and result.name is GuardName.STATIC
    assert "1,000,001 bytes" in result.detail and "1,000,000" in result.detail, result.detail
    assert "static.max_policy_bytes" in result.detail and "\n" not in result.detail
    assert not any(parsed)
    small = scan(base + "\n# " + "x" * 20_000, allowed_imports=["numpy"], max_policy_bytes=10_000)
    assert not small.passed and small.figures["limit"] == 10_000


def test_a_candidate_is_parsed_once_by_every_reader():
    """static scan, contract, HISTORY_DAYS, look-back, contamination and tunables share one parse."""
    import ast
    from types import SimpleNamespace

    from domains import _source
    from domains.history import lookback
    from guards.contamination import scan_literals
    from optimizer.base.tunables import parse as tunables
    from optimizer.loop.stages.evaluate import static_check

    source = (ROOT / "domains" / "fraud" / "policy.py").read_text() + "\n# parsed once\n"
    calls = []
    real = ast.parse

    def counting(text, *args, **kwargs):
        calls.append(text == source)  # ast.literal_eval parses small strings too: only the source counts
        return real(text, *args, **kwargs)

    _source.parse.cache_clear()
    ast_parse, _source.ast.parse = _source.ast.parse, counting
    try:
        assert static_check(SimpleNamespace(config=parse_config({}, source="x")), source).passed
        lookback(source)
        scan_literals(source, holdout_ids=frozenset())
        tunables(source)
        tunables(source)
    finally:
        _source.ast.parse = ast_parse
    assert sum(calls) == 1


# --- sandbox write quota ------------------------------------------------------------------------------------------
TRAIN = pd.DataFrame({"x": np.arange(6, dtype=float), "y": [0, 1] * 3})


@pytest.fixture(scope="module")
def box():
    with Sandbox(preload=("numpy", "pandas", "pyarrow"), memory_mb=1024, disk_mb=8, max_files=50) as sandbox:
        yield sandbox


def _fit(box, body: str, budget_s: float = 30):
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    source = f"import os, time\n\ndef fit(train):\n{lines}\n    return 0\n\ndef decide(m, rows):\n    return rows['x']\n"
    return box.fit(source, TRAIN, budget_s=budget_s)


def test_many_files_each_under_the_file_limit_fail_the_quota(box):
    """Like the 5 GB written in pieces during fit: no one file is large, the total is."""
    result = _fit(box, """
for i in range(12):
    with open(f"part{i}.bin", "wb") as f:
        f.write(b"x" * (1 << 20))
""")
    assert result.status == "disk", (result.status, result.error)
    assert "MiB" in result.error and "8.0 MiB" in result.error and "files" in result.error, result.error


def test_a_writer_that_never_stops_is_killed_long_before_its_budget(box):
    started = time.monotonic()
    result = _fit(box, """
i = 0
while True:
    with open(f"chunk{i}.bin", "wb") as f:
        f.write(b"x" * (1 << 18))
    i += 1
""", budget_s=60)
    assert result.status == "disk", (result.status, result.error)
    assert time.monotonic() - started < 20


def test_too_many_small_files_fail_the_quota(box):
    result = _fit(box, """
for i in range(200):
    os.mkdir(f"d{i}")
""")
    assert result.status == "disk" and "files" in result.error, (result.status, result.error)


def test_deleted_files_held_open_count_while_the_child_runs(box):
    result = _fit(box, """
held = []
for i in range(3):
    f = open(f"hidden{i}.bin", "wb")
    os.unlink(f"hidden{i}.bin")
    f.write(b"x" * (4 << 20))
    f.flush()
    held.append(f)
time.sleep(5)
""")
    assert result.status == "disk", (result.status, result.error)


def test_a_phase_within_the_quota_passes(box):
    result = _fit(box, """
with open("scratch.bin", "wb") as f:
    f.write(b"x" * (2 << 20))
""")
    assert result.status == "ok", (result.status, result.error)
    decided = box.decide("def fit(t):\n    return 0\n\ndef decide(m, rows):\n    return rows['x']\n",
                         result.model, {"dev": TRAIN}, budget_s=30)
    assert decided.status == "ok", decided.error


def test_a_decide_worker_that_fills_its_folder_is_ended(box):
    """Serving's persistent workers carry the same quota, over their whole life."""
    fitted = _fit(box, "pass")
    assert fitted.status == "ok", fitted.error
    source = ("import os\n\ndef fit(t):\n    return 0\n\ndef decide(m, rows):\n"
              "    for i in range(4):\n        with open(f'out{len(os.listdir())}.bin', 'wb') as f:\n"
              "            f.write(b'x' * (1 << 20))\n    return rows['x']\n")
    with box.worker(source, fitted.model, budget_s=30) as worker:
        first = worker.decide(TRAIN, budget_s=30)
        assert first.status == "ok", first.error  # 4 MiB of 8
        # The quota is measured every 0.1 s: a call that ends between two measurements may return first, and the
        # next finds the worker ended for its writes (a loaded machine delays the measurement, not the verdict).
        later = [worker.decide(TRAIN, budget_s=30) for _ in range(3)]
        ended = next((r for r in later if r.status != "ok"), None)
        assert ended is not None and ended.status in ("disk", "crash") and "quota" in ended.error, [
            (r.status, r.error) for r in later]
        assert not worker.alive
