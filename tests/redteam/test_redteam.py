"""Gaming attempts, each pushed through the real pipeline and rejected by the guard named for it;
and honest improvements, which must still be kept."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from guards import GuardName, GuardResult
from optimizer.base.tunables import rewrite
from tests.conftest import BASELINE, NOTHING
from tests.redteam._lab import judge, open_lab

POLICIES = Path(__file__).parent / "policies"

# attempt file -> the guard that must reject it (extra guards may fail too)
EXPECTED = {
    "read_holdout.py": GuardName.STATIC,
    "os_environ.py": GuardName.STATIC,
    "dunder_escape.py": GuardName.STATIC,
    "getattr_string.py": GuardName.STATIC,
    "module_reach.py": GuardName.STATIC,
    "write_outside.py": GuardName.STATIC,
    "network.py": GuardName.STATIC,
    "pickle_payload.py": GuardName.STATIC,
    "monkeypatch_metric.py": GuardName.STATIC,
    "nan_output.py": GuardName.OUTPUT,
    "short_output.py": GuardName.OUTPUT,  # detected inside the sandbox's decide phase, named output all the same
    "flag_everything.py": GuardName.GUARDRAIL,
    "fake_metric_lines.py": GuardName.SIGNIFICANCE,
    "sleep_past_budget.py": GuardName.SANDBOX,
    "memory_hog.py": GuardName.SANDBOX,
    "lookahead_next_tx.py": GuardName.LOOKAHEAD,
    "lookahead_whole_frame.py": GuardName.LOOKAHEAD,
    "memorised_dev_frauds.py": GuardName.CONTAMINATION,
    "parity_call_quantile.py": GuardName.PARITY,
    "parity_call_windows.py": GuardName.PARITY,
}


def _dev_frauds_from_trace(ctx, source: str) -> str:
    """The attempt's rules filled with the amounts of the workspace's largest dev frauds, as the dev trace lists
    its missed frauds (largest amount first) to a proposer."""
    dev = pd.read_parquet(ctx.ws.data_dir / "dev.parquet")
    amounts = tuple(dev.loc[dev.is_fraud == 1, "amount"].nlargest(15).tolist())
    marker = "MISSED_AMOUNTS = ()"
    assert marker in source
    return source.replace(marker, f"MISSED_AMOUNTS = {amounts!r}", 1)


# attempt file -> how its source is completed with values known only once the lab workspace exists
FROM_TRACE = {"memorised_dev_frauds.py": _dev_frauds_from_trace}


@pytest.fixture(scope="module")
def lab(weak_workspace, tmp_path_factory):
    with open_lab(weak_workspace, tmp_path_factory.mktemp("redteam") / "ws") as lab:
        yield lab



@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_attempt_is_caught_by_its_guard(lab, name):
    ctx, _ = lab
    config = ctx.config
    if name == "sleep_past_budget.py":  # a short budget keeps the suite fast; others get room on a busy host
        ctx.config = config.model_copy(update={"sandbox": config.sandbox.model_copy(update={"budget_s": 5.0})})
    source = (POLICIES / name).read_text()
    if name in FROM_TRACE:
        source = FROM_TRACE[name](ctx, source)
    try:
        record, failed = judge(lab, source, name)
    finally:
        ctx.config = config
    assert not record.kept
    assert EXPECTED[name] in failed, f"{name}: expected guard '{EXPECTED[name]}', failed: {failed}"


def test_fake_metric_lines_do_not_reach_the_metrics(lab):
    record, _ = judge(lab, (POLICIES / "fake_metric_lines.py").read_text())
    assert record.dev_metrics["net_savings"] != 99.0
    trace = (lab[0].ws.experiments / record.experiment / "trace.json").read_text()
    assert "net_savings: 99.0" in trace  # fit output is kept for the trace, and nothing more


def test_memorised_holdout_ids_are_contamination(lab):
    ctx, _ = lab
    ids = ctx.holdout.loc[ctx.holdout.is_fraud == 1, "tx_id"].head(40).tolist()
    source = BASELINE.replace("def decide(model, rows, history):",
                              f"KNOWN = {ids!r}\n\n\ndef decide(model, rows, history):", 1)
    assert source != BASELINE
    record, failed = judge(lab, source)
    assert not record.kept and GuardName.CONTAMINATION in failed


def test_canary_in_source_is_contamination(lab):
    ctx, _ = lab
    canary = ctx.manifest["canaries"][0]
    source = BASELINE + f"\n# seen in a data dump: {canary}\n"
    record, failed = judge(lab, source)
    assert not record.kept and GuardName.CONTAMINATION in failed and canary not in failed[GuardName.CONTAMINATION]


def test_memorised_dev_frauds_are_named_without_their_values(lab):
    ctx, _ = lab
    source = _dev_frauds_from_trace(ctx, (POLICIES / "memorised_dev_frauds.py").read_text())
    record, failed = judge(lab, source, "memorised dev frauds")
    assert not record.kept and GuardName.CONTAMINATION in failed
    detail = failed[GuardName.CONTAMINATION]
    assert "memorises dev rows" in detail and "holdout" not in detail.split(":")[0]
    dev = pd.read_parquet(ctx.ws.data_dir / "dev.parquet")
    for amount in dev.loc[dev.is_fraud == 1, "amount"].nlargest(15):
        assert repr(float(amount)) not in detail  # which literals matched is never said
    # The same rules without the copied values are an honest (if weak) policy: not contamination.
    record, failed = judge(lab, (POLICIES / "memorised_dev_frauds.py").read_text(), "rules without the values")
    assert GuardName.CONTAMINATION not in failed, failed


def _champion_is_baseline(lab) -> None:
    ctx, _ = lab
    if ctx.ws.champion_source() != BASELINE:
        record, failed = judge(lab, BASELINE, "the full baseline model")
        assert record.kept, failed


def test_segment_sabotage_is_caught_by_segment(lab):
    """Against a champion that blocks large frauds, a candidate that never blocks them loses that segment
    (here also overall; the segment guard names where)."""
    _champion_is_baseline(lab)
    sabotage = BASELINE.replace("def decide(model, rows, history):", "def _honest_decide(model, rows, history):", 1) + '''

def decide(model, rows, history):
    scores = _honest_decide(model, rows, history)
    return np.where(rows["amount"].to_numpy() >= 220.0, 0.0, scores)
'''
    record, failed = judge(lab, sabotage)
    assert not record.kept and GuardName.SEGMENT in failed and "amount_band" in failed[GuardName.SEGMENT]


def test_editing_outside_policy_is_integrity(lab):
    ctx, _ = lab
    original = ctx.ws.config.read_text()
    ctx.ws.config.write_text(original.replace("min_effect: 0.0", "min_effect: -1.0"))
    try:
        record, failed = judge(lab, BASELINE)
        assert not record.kept and GuardName.INTEGRITY in failed and "ratchet.yaml" in failed[GuardName.INTEGRITY]
    finally:
        ctx.ws.config.write_text(original)


def test_a_lookback_shorter_than_the_windows_is_parity(lab):
    """The baseline with HISTORY_DAYS cut to a day: a batch of dev rows still sees weeks of its customers' past
    within the call; one event alone sees a day. The first differing event is named."""
    short = BASELINE.replace("HISTORY_DAYS = 60", "HISTORY_DAYS = 1")
    assert short != BASELINE
    record, failed = judge(lab, short, "short lookback")
    assert not record.kept and set(failed) == {GuardName.PARITY}
    detail = failed[GuardName.PARITY]
    assert "alone vs" in detail and "in the batch" in detail and "event " in detail


def test_honest_improvement_is_kept_and_seed_only_change_is_not(lab):
    _champion_is_baseline(lab)
    reseeded = BASELINE.replace("SEED = 0", "SEED = 7")
    record, failed = judge(lab, reseeded, "seed only")
    assert not record.kept and GuardName.SIGNIFICANCE in failed


@contextmanager
def _edited(path, mode: int):
    """`path` writable for the attempt, then its original bytes and `mode` back."""
    original = path.read_bytes()
    path.chmod(0o600)
    try:
        yield path
    finally:
        path.write_bytes(original)
        path.chmod(mode)


def test_tampered_holdout_mid_loop_is_integrity(lab):
    ctx, _ = lab
    with _edited(ctx.ws.holdout_dir / "holdout.parquet", 0o400) as path:
        frame = pd.read_parquet(path)
        frame.loc[frame.index[frame.is_fraud == 1][:20], "is_fraud"] = 0  # hide the hard cases
        frame.to_parquet(path, index=False)
        record, failed = judge(lab, rewrite(BASELINE, {"THRESHOLD": 0.25}))
        assert not record.kept and GuardName.INTEGRITY in failed and "holdout.parquet" in failed[GuardName.INTEGRITY]


def test_rewritten_manifest_mid_loop_is_integrity(lab):
    import json

    ctx, _ = lab
    with _edited(ctx.ws.holdout_dir / "MANIFEST.json", 0o444) as path:
        manifest = json.loads(path.read_text())
        manifest["label_rate"] = 0.5
        path.write_text(json.dumps(manifest))
        record, failed = judge(lab, rewrite(BASELINE, {"THRESHOLD": 0.25}))
        assert not record.kept and "MANIFEST.json" in failed[GuardName.INTEGRITY]


def test_forged_ledger_seal_mid_loop_is_integrity(lab):
    import duckdb

    ctx, _ = lab
    con = duckdb.connect(str(ctx.ws.ledger))
    original = con.execute("SELECT payload FROM ledger WHERE seq = 1").fetchone()[0]
    con.execute("UPDATE ledger SET payload = replace(payload, ?, ?) WHERE seq = 1",
                [ctx.manifest_sha256, "0" * 64])
    con.close()
    try:  # the chain is verified before any experiment: nothing is judged or appended
        from domains.errors import IntegrityError

        before = len(ctx.ledger.entries())
        with pytest.raises(IntegrityError, match="hash chain broken"):
            judge(lab, rewrite(BASELINE, {"THRESHOLD": 0.25}))
        assert len(ctx.ledger.entries()) == before
    finally:
        con = duckdb.connect(str(ctx.ws.ledger))
        con.execute("UPDATE ledger SET payload = ? WHERE seq = 1", [original])
        con.close()


# Defence in depth: if the static scan ever missed one of these, the sandbox still stops it.
SANDBOX_BEHIND_STATIC = ("read_holdout.py", "os_environ.py", "write_outside.py", "network.py", "pickle_payload.py")


@pytest.mark.parametrize("name", SANDBOX_BEHIND_STATIC)
def test_sandbox_stops_what_static_would_miss(lab, name, monkeypatch):
    import guards.static

    monkeypatch.setattr(guards.static, "scan",
                        lambda *a, **k: GuardResult(GuardName.STATIC, True, "scan skipped by the test"))
    record, failed = judge(lab, (POLICIES / name).read_text(), name)
    assert not record.kept
    assert set(failed) & {GuardName.SANDBOX, GuardName.OUTPUT, GuardName.SIGNIFICANCE}, failed
    if name != "os_environ.py":  # reading the (scrubbed) environment is allowed; it just holds nothing
        assert GuardName.SANDBOX in failed, failed


def test_guardrail_ratchet_over_real_loop_steps(weak_workspace, tmp_path):
    """Lower the threshold a step at a time: each step raises the false-decline rate by less than the relative
    margin allows and is kept for its savings, until the steps add up past the tolerance measured from the
    ORIGINAL baseline."""
    from optimizer.loop.experiment import run_experiment
    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox
    from optimizer.workspace.config import GuardrailConfig

    root = tmp_path / "ws"
    shutil.copytree(weak_workspace, root)
    ctx = load_context(root)
    # The measuring runs below are looks too, and refit noise, the holdout gate's test and the other guardrails
    # are other guards' business: this test is about the tolerance alone (the gate only checks "not worse").
    decision = ctx.config.decision.model_copy(update={"looks": "none", "confidence": 0.9, "refits": 0})
    gate = ctx.config.gate.model_copy(update={"kind": "not_worse", "tolerance": 1e9})
    others = {"alert_rate": GuardrailConfig(limit=1.0), "false_decline_gap": GuardrailConfig(limit=1.0)}
    # A cheap decline (0.50): each lower threshold still pays for its declines, so every step is a real dev gain
    # (at the shipped 5.00, savings peak near THRESHOLD 0.5 on this data).
    scoring = ctx.config.scoring.model_copy(update={"decline_cost": 0.5})
    ctx.config = ctx.config.model_copy(update={"decision": decision, "gate": gate, "guardrails": others,
                                               "scoring": scoring})
    chain = [BASELINE.replace("\nTHRESHOLD = 0.3 ", f"\nTHRESHOLD = {t} ", 1) for t in (0.3, 0.08, 0.04, 0.02)]
    assert len(set(chain)) == 4  # by hand: the last two are below the search range
    with Sandbox(memory_mb=2048) as sandbox:
        ensure_baseline(ctx, sandbox)
        base_rate = ctx.baseline().dev_metrics["false_decline_rate"]
        rates = [run_experiment(ctx, sandbox, src, proposer="redteam", hypothesis="measure", keep=False)
                 .dev_metrics["false_decline_rate"] for src in chain]
        before = np.array([base_rate, *rates[:-1]])
        steps = np.diff([base_rate, *rates])
        assert (steps > 0).all(), steps  # each step declines more legitimate customers
        # The tolerance sits between the third and the fourth step's total; every step fits the relative margin.
        tolerance = float(rates[2] - base_rate + steps[3] / 2)
        margin = float((steps / np.maximum(before, tolerance)).max()) * 1.01
        guardrails = {**others, "false_decline_rate": GuardrailConfig(tolerance=tolerance, margin=margin)}
        ctx.config = ctx.config.model_copy(update={"guardrails": guardrails})
        verdicts = []
        for i, src in enumerate(chain):
            record = run_experiment(ctx, sandbox, src, proposer="redteam", hypothesis=f"ratchet step {i + 1}")
            verdicts.append((record.kept, {r.name: r.detail for r in record.verdict.failures}))
    assert [kept for kept, _ in verdicts[:3]] == [True, True, True], verdicts
    kept, failed = verdicts[3]
    assert not kept and GuardName.GUARDRAIL in failed, verdicts[3]
    assert "original baseline" in failed[GuardName.GUARDRAIL] and "beyond the margin" not in failed[GuardName.GUARDRAIL]


def test_a_champion_that_alerts_on_nothing_is_replaced_by_an_honest_model(tmp_path_factory):
    """What a team with no model yet starts from: a rule that never alerts. An honest model alerts on a small
    share at high precision; alerting more than zero is no harm, and its false declines are far inside the
    tolerance, so it is kept."""
    from tests.conftest import _sealed

    ws = _sealed(tmp_path_factory, "nothing", "fraud", {"data.rows": 60_000}, NOTHING)
    with open_lab(ws, tmp_path_factory.mktemp("nothing-lab") / "ws") as lab:
        ctx, _ = lab
        base = ctx.baseline().dev_metrics
        assert base["alert_rate"] == 0.0 and base["net_savings"] == 0.0
        record, failed = judge(lab, BASELINE, "XGBoost on point-in-time customer and terminal windows")
    assert record.kept, failed
    got = record.dev_metrics
    assert 0 < got["alert_rate"] < 0.03 and got["precision"] > 0.2 and got["net_savings"] > 0


def test_trading_false_declines_for_savings_is_refused_by_the_harm_tolerance(lab):
    """A threshold so low that it blocks many legitimate customers to catch more fraud: whatever it does to the
    savings, the false-decline rate rises past its tolerance vs the original baseline."""
    ctx, _ = lab
    low = BASELINE.replace("\nTHRESHOLD = 0.3 ", "\nTHRESHOLD = 0.01", 1)  # below the search range, by hand
    assert low != BASELINE
    record, failed = judge(lab, low, "block more, pay in false declines")
    assert not record.kept and GuardName.GUARDRAIL in failed, failed
    assert "false_decline_rate (harm" in failed[GuardName.GUARDRAIL] and "tolerance" in failed[GuardName.GUARDRAIL]


def test_seed_only_change_that_fools_the_row_bootstrap_is_caught_by_refit_noise(tmp_path_factory):
    """On this workspace (fraud, seed 3) the model seed 3039 scores 'significantly' better on dev rows than
    seed 0: resampling rows cannot see that two fits of one policy differ. The champion's refit spread can."""
    import dataclasses

    from tests.conftest import _sealed

    ws = _sealed(tmp_path_factory, "seed3", "fraud", {"data.rows": 30_000, "seed": 3, "data.seed": 3,
                                                       "decision.looks": "none"})
    reseeded = BASELINE.replace("SEED = 0", "SEED = 3039")  # dev z +3.4 on rows alone (seeds 3000-3039 searched)
    with open_lab(ws, tmp_path_factory.mktemp("seed3-lab") / "ws") as lab:
        ctx, sandbox = lab
        champion = ctx.champion()
        assert champion.refit_sd > 0
        from holdout.evidence import bind_state
        from optimizer.loop.experiment import run_experiment

        def significance(state):
            state.save(ctx.champion_dir)  # the lab rebinds what it wrote, as ratchet itself would
            ctx.ledger.append("champion_refresh", {"evidence": bind_state(ctx.ws.root, "champion")})
            record = run_experiment(ctx, sandbox, reseeded, proposer="redteam", hypothesis="seed only", keep=False)
            return record.verdict.result(GuardName.SIGNIFICANCE).to_dict()

        rows_only = significance(dataclasses.replace(champion, refit_sd=0.0))
        with_refits = significance(champion)
    assert rows_only["passed"], rows_only["detail"]  # the weakness, shown
    assert not with_refits["passed"] and "refit noise" in with_refits["detail"]


@pytest.mark.parametrize("gate_kind", ["lord", "thresholdout"])
def test_seed_only_change_past_a_lenient_dev_guard_is_refused_by_the_holdout_gate(tmp_path_factory, gate_kind):
    """Best-of-N noise through the holdout. With a dev guard that lets noise through (as a search that has
    overfit dev would), a seed-only change arrives at the gate with a lucky dev gain. The default gate's holdout
    test refuses it and reveals nothing of its holdout gain; under Thresholdout its holdout gain is positive too,
    so 'the answer beats the champion's' alone would keep it, and the Ladder step refuses it."""
    from tests.conftest import _sealed

    lenient = {"decision.confidence": 0.51, "decision.looks": "none", "decision.segment_tolerance": 1e6,
               "guardrails": {"false_decline_rate": {"tolerance": 1.0, "margin": 100.0}, "alert_rate": {"limit": 1.0},
                              "false_decline_gap": {"limit": 1.0}}, "gate.kind": gate_kind}
    ws = _sealed(tmp_path_factory, f"lenient-{gate_kind}", "fraud", {"data.rows": 30_000, **lenient})
    # Seed 9: dev +0.066 (z 1.1), holdout +0.014 (z 1.1) over seed 0 (seeds 1-40 searched; most lose on dev).
    reseeded = BASELINE.replace("\nSEED = 0\n", "\nSEED = 9\n", 1)
    with open_lab(ws, tmp_path_factory.mktemp("lenient-lab") / "ws") as (ctx, sandbox):
        from optimizer.loop.experiment import run_experiment

        record = run_experiment(ctx, sandbox, reseeded, proposer="redteam", hypothesis="seed only", keep=False)
    failed = {r.name: r.to_dict() for r in record.verdict.failures}
    assert set(failed) == {GuardName.HOLDOUT_GATE}, failed  # every dev guard let it through
    gate = record.gate
    if gate_kind == "lord":
        assert gate["test"] == 1 and not gate["passed"] and gate["z"] < gate["critical_z"]
        assert gate["answer"] is None and gate["estimate"] is None
        refused = failed[GuardName.HOLDOUT_GATE]
        assert "does not confirm" in refused["detail"] and "p_value" not in refused["figures"]
        assert f"{gate['gain']:+.4g}" not in refused["detail"]  # the raw holdout gain stays in the ledger
        return
    assert gate["dev_gain"] > gate["holdout_gain"] > 0 and gate["answer"] > gate["to_beat"] == 0.0
    assert gate["answer"] < gate["to_beat"] + gate["step"] and gate["step"] == pytest.approx(2 * gate["se"])
    assert "step" in failed[GuardName.HOLDOUT_GATE]["detail"]
