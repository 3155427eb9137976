"""The second red team: a workspace owner under pressure to show a gain, and policies that game what the
first red team did not try. Each attempt is refused by `try` (exit 2, naming the file) or rejected by a
named guard, and failed by `ratchet audit`; honest changes (an approved config change, a kept gain) pass."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from guards import GuardName
from holdout.audit import audit
from holdout.ledger import Ledger
from optimizer.cli import app
from optimizer.lifecycle.initialize import source_root
from tests.conftest import BASELINE, copy_workspace

COMMENTED = BASELINE + "\n# one comment: the policy is otherwise unchanged\n"


def _try(ws: Path, source: str, *args: str):
    path = ws.parent / "candidate.py"
    path.write_text(source)
    return CliRunner().invoke(app, ["try", str(ws), str(path), "--json", *args])


@pytest.fixture(scope="module")
def _module_env():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _audit_failures(ws: Path) -> dict[str, str]:
    return {c.name: c.detail for c in audit(ws, source_root=source_root()).checks if not c.passed}


@pytest.fixture(scope="module")
def kept_ws(weak_workspace, tmp_path_factory, _module_env) -> Path:
    """A weak-champion workspace in which the shipped baseline was kept once: baseline, champion, a record."""
    ws = tmp_path_factory.mktemp("kept") / "ws"
    _module_env.setenv("MLFLOW_TRACKING_URI", copy_workspace(weak_workspace, ws))
    result = _try(ws, BASELINE, "--keep")
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture
def ws(kept_ws, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "ws"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_workspace(kept_ws, copy))
    assert not _audit_failures(copy)
    return copy


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def _lower_champion_scores(ws: Path) -> None:
    path = _writable(ws / "champion" / "holdout.npy")
    scores = np.load(path)
    scores[: len(scores) // 3] *= 0.5  # a weaker champion on the holdout: any candidate now "gains"
    np.save(path, scores)


@pytest.mark.parametrize("tamper, file", [
    (_lower_champion_scores, "champion/holdout.npy"),
    (lambda ws: (ws / "champion" / "state.json").write_text(
        (ws / "champion" / "state.json").read_text().replace('"refit_sd": ', '"refit_sd": 0.0, "_was": ')),
     "champion/state.json"),
    (lambda ws: pd.read_parquet(ws / "data" / "dev.parquet").assign(
        is_fraud=lambda f: f["is_fraud"].where(f.index % 97 != 0, 1)).to_parquet(_writable(ws / "data" / "dev.parquet")),
     "data/dev.parquet"),
    (lambda ws: pd.read_parquet(ws / "data" / "train.parquet").head(5000).to_parquet(
        _writable(ws / "data" / "train.parquet")), "data/train.parquet"),
    (lambda ws: shutil.copytree(ws / "baseline", ws / "reference"), "reference/"),
    (lambda ws: shutil.rmtree(ws / "champion"), "champion/"),
])
def test_tampered_verdict_input_is_refused_by_try_and_failed_by_the_audit(ws, tamper, file):
    tamper(ws)
    result = _try(ws, COMMENTED, "--keep")
    assert result.exit_code == 2 and file in result.output, result.output
    failed = _audit_failures(ws)
    assert "verdict_inputs" in failed and file in failed["verdict_inputs"], failed


def test_loosened_config_committed_in_the_workspace_git_is_refused(ws):
    from optimizer.workspace.layout import Workspace

    text = (ws / "ratchet.yaml").read_text().replace("confidence: 0.95", "confidence: 0.6")
    assert "confidence: 0.6" in text
    (ws / "ratchet.yaml").write_text(text)
    Workspace(ws).git("commit", "-q", "-am", "looser")
    result = _try(ws, COMMENTED)
    assert result.exit_code == 2 and "ratchet.yaml" in result.output and "ratchet config" in result.output
    assert "ratchet.yaml" in _audit_failures(ws)["verdict_inputs"]


def test_config_change_through_ratchet_config_is_accepted_and_audited(ws):
    runner = CliRunner()
    refused = runner.invoke(app, ["config", str(ws), "set", "decision.min_effect=0.001"])
    assert refused.exit_code == 2 and "--approved-by" in refused.output
    frozen = runner.invoke(app, ["config", str(ws), "set", "gate.threshold_se=5", "--approved-by", "x",
                                 "--reason", "y"])
    assert frozen.exit_code == 2 and "gate" in frozen.output
    ok = runner.invoke(app, ["config", str(ws), "set", "guardrails.alert_rate.limit=0.05", "--approved-by",
                             "A. Reviewer", "--reason", "review team doubled"])
    assert ok.exit_code == 0, ok.output
    entry = Ledger(ws / "ledger.duckdb").last("config").data
    assert entry["changes"] == {"guardrails.alert_rate.limit": {"old": 0.03, "new": 0.05}}
    assert entry["approved_by"] == "A. Reviewer"
    checks = {c.name: c for c in audit(ws, source_root=source_root()).checks}
    assert all(c.passed for c in checks.values()), checks
    assert "A. Reviewer" in checks["config_changes"].detail and "0.05" in checks["config_changes"].detail
    result = _try(ws, COMMENTED)  # the next experiment runs under the recorded config
    assert result.exit_code in (0, 1), result.output


def test_forged_experiment_record_is_failed_by_the_audit(ws):
    path = _writable(ws / "experiments" / "exp-0001" / "record.json")
    record = json.loads(path.read_text())
    record["dev_metrics"]["net_savings"] += 1.0
    path.write_text(json.dumps(record))
    assert "exp-0001" in _audit_failures(ws)["experiment_records"]


def test_identical_candidate_is_never_kept(ws):
    from optimizer.workspace.layout import Workspace

    head = Workspace(ws).head()
    result = _try(ws, BASELINE, "--keep")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and not verdict["kept"]
    assert [r["guard"] for r in verdict["reasons"] if not r["passed"]] == [GuardName.CHANGE]
    assert Workspace(ws).head() == head and not _audit_failures(ws)


# --- policies that game what the first red team did not try -------------------------------------------------

MEMO_LOOKAHEAD = (Path(__file__).parent / "policies" / "lookahead_next_tx.py").read_text().replace(
    "def decide(model, rows):\n    f = _features(rows)\n    z = np.c_[f.to_numpy(), np.ones(len(f))] @ model\n"
    "    return 1.0 / (1.0 + np.exp(-z))",
    "_MEMO = {}\n\n\ndef decide(model, rows):\n    ids = rows['tx_id'].tolist()\n"
    "    if ids and all(i in _MEMO for i in ids):  # a prefix of rows already decided with their future\n"
    "        return np.array([_MEMO[i] for i in ids])\n    f = _features(rows)\n"
    "    out = 1.0 / (1.0 + np.exp(-(np.c_[f.to_numpy(), np.ones(len(f))] @ model)))\n"
    "    _MEMO.update(zip(ids, out.tolist()))\n    return out")

ROW_SET_THRESHOLD = BASELINE.replace("def decide(model, rows, history):", "def _scores(model, rows, history):") + (
    "\n\ndef decide(model, rows, history):\n    global THRESHOLD\n    scores = _scores(model, rows, history)\n"
    "    if len(scores):  # a threshold fitted to the scores of the rows shown: the holdout's, when it is last\n"
    "        THRESHOLD = float(min(max(np.quantile(scores, 0.995), 0.05), 0.95))\n    return scores\n")


@pytest.fixture(scope="module")
def lab(weak_workspace, tmp_path_factory):
    from tests.redteam._lab import open_lab

    with open_lab(weak_workspace, tmp_path_factory.mktemp("trust-lab") / "ws") as opened:
        yield opened


def test_lookahead_replayed_from_memory_on_the_prefix_rows_is_caught_by_lookahead(lab):
    from tests.redteam._lab import judge

    assert "_MEMO" in MEMO_LOOKAHEAD
    record, failed = judge(lab, MEMO_LOOKAHEAD)
    assert not record.kept and GuardName.LOOKAHEAD in failed, failed


def test_a_constant_set_while_deciding_from_the_rows_shown_is_caught_by_lookahead(lab):
    from tests.redteam._lab import judge

    assert "global THRESHOLD" in ROW_SET_THRESHOLD
    record, failed = judge(lab, ROW_SET_THRESHOLD)
    assert not record.kept and "THRESHOLD" in failed.get(GuardName.LOOKAHEAD, ""), failed


def test_a_champion_that_crashes_on_refits_is_refused_by_refit(lab):
    """Its training noise would read 0, and every later candidate would skip the noise widening."""
    from tests.redteam._lab import judge

    ctx, _ = lab
    crashing = BASELINE.replace("def fit(train):\n", f"def fit(train):\n    if len(train) < {len(ctx.train)}:\n"
                                "        raise ValueError('not on a subsample')\n")
    record, failed = judge(lab, crashing)
    assert not record.kept and set(failed) == {GuardName.REFIT}, failed
    # It got that far: every other guard passed.
    assert "refit 1 of" in failed[GuardName.REFIT] and record.gate is not None


# --- ratchet audit --replay -------------------------------------------------------------------------------------

def _replay(ws: Path) -> dict[str, list[str]]:
    result = CliRunner().invoke(app, ["audit", str(ws), "--replay", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    out: dict[str, list[str]] = {}
    for c in report["checks"]:
        out.setdefault("passed" if c["passed"] else "failed", []).append(f"{c['check']}: {c['detail']}")
    return out


def test_replay_passes_on_an_honest_fraud_workspace_and_fails_on_edited_recorded_decisions(ws):
    honest = _replay(ws)
    assert "failed" not in honest, honest
    assert any("exp-0001" in c and "reproduced exactly" in c for c in honest["passed"])
    assert any(c.startswith("replay_gate: exp-0001") for c in honest["passed"])
    # An operator who can write the ledger too: lower the champion's holdout scores, then rewrite the ledger's
    # record of them and re-chain every hash after it. Every hash check passes; re-executing the policy does not.
    import duckdb

    from holdout.hashing import array_sha256, canonical_json
    from holdout.ledger import entry_hash

    _lower_champion_scores(ws)
    forged = array_sha256(np.load(ws / "champion" / "holdout.npy"))
    from holdout.evidence import bind_state

    con = duckdb.connect(str(ws / "ledger.duckdb"))
    rows = con.execute("SELECT seq, time, kind, payload, prev_hash FROM ledger ORDER BY seq").fetchall()
    prev = None
    for seq, time, kind, payload, prev_hash in rows:
        data = json.loads(payload)
        if kind == "experiment" and data.get("kept"):
            data["decisions_sha256"]["holdout"] = forged
            data["evidence"] = bind_state(ws, "champion")
            payload = canonical_json(data)
        prev = prev_hash if prev is None else prev
        digest = entry_hash(seq, time, kind, payload, prev)
        con.execute("UPDATE ledger SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?", [payload, prev, digest, seq])
        prev = digest
    con.close()
    path = _writable(ws / "experiments" / "exp-0001" / "record.json")
    record = json.loads(path.read_text())
    record["decisions_sha256"]["holdout"] = forged
    path.write_text(json.dumps(record))
    assert not _audit_failures(ws)  # every hash agrees with every other
    failed = _replay(ws)["failed"]
    assert any(c.startswith("replay: exp-0001") and "holdout decisions hash" in c for c in failed), failed
