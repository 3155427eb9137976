"""Shadow trials end to end on a real workspace: generated live events, both policies deciding in the sandbox,
outcomes arriving in two parts, quarantine of bad rows, and the report's verdict (passed, failed, pending)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from holdout.ledger import Kind, Ledger
from optimizer.cli import app
from tests.conftest import BASELINE, PRICING_BASELINE, ROUTING_BASELINE, mlflow_store


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prepared(weak_workspace, tmp_path_factory):
    """The weak workspace with the shipped baseline kept as exp-0001 and 50 days of events with outcomes (the
    workspace's own customers and terminals, days later; at 20 and 30 days the anytime bound had not cleared yet);
    exp-0001 then passed trial-0001 against the weak baseline (which acts until a promotion) and was promoted."""
    root = tmp_path_factory.mktemp("shadow")
    ws = root / "ws"
    shutil.copytree(weak_workspace, ws)
    shutil.copyfile(weak_workspace.parent / "mlflow.db", root / "mlflow.db")  # the seal's records travel with it
    (root / "strong.py").write_text(BASELINE)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    try:
        kept = _cli("try", ws, root / "strong.py", "--keep")
        assert kept.exit_code == 0, kept.output
        made = _cli("events", ws, "--days", "50", "--events-out", root / "ev.parquet", "--outcomes-out",
                    root / "out.parquet")
        assert made.exit_code == 0, made.output
        blocked = _cli("promote", ws, "exp-0001", "--approved-by", "A. Reviewer")
        assert blocked.exit_code == 1 and "no shadow trial" in blocked.output  # kept is not enough
        # Per-event latency is real time on a shared test machine: its limit is not what these tests are about
        # (tests/optimizer/test_shadow_latency.py holds a slow challenger to it).
        assert _cli("config", ws, "set", "shadow.max_p99_ms=5000", "--approved-by", "A. Reviewer", "--reason",
                    "latency is not under test here").exit_code == 0
        trial = _start(root, "exp-0001")["trial"]
        assert _cli("shadow", "outcomes", ws, trial, "--outcomes", root / "out.parquet").exit_code == 0
        code, report = _report_at(ws, trial)
        assert code == 0 and report["status"] == "passed", report["reasons"]
        promoted = _cli("promote", ws, "exp-0001", "--approved-by", "A. Reviewer", "--reason", "trial-0001 passed")
        assert promoted.exit_code == 0, promoted.output
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if before is None else os.environ.update(MLFLOW_TRACKING_URI=before)
    return root


@pytest.fixture()
def lab(prepared, tmp_path, monkeypatch):
    shutil.copytree(prepared, tmp_path / "lab")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "lab" / "mlflow.db"))
    return tmp_path / "lab"


def _start(root, challenger: str, events: str = "ev.parquet") -> dict:
    started = _cli("shadow", "start", root / "ws", "--challenger", challenger, "--events", root / events, "--json")
    assert started.exit_code == 0, started.output
    return json.loads(started.stdout)


def _report(root, trial: str):
    return _report_at(root / "ws", trial)


def test_events_follow_the_holdout_and_hide_the_label(prepared):
    events, outcomes = pd.read_parquet(prepared / "ev.parquet"), pd.read_parquet(prepared / "out.parquet")
    holdout = pd.read_parquet(prepared / "ws" / "holdout" / "holdout.parquet")
    assert events["ts"].min() > holdout["ts"].max() and events["ts"].is_monotonic_increasing
    assert not {"is_fraud", "fraud_scenario"} & set(events.columns)
    assert set(outcomes["event_id"]) == set(events["tx_id"].astype(str))
    fraud = outcomes["label"] == 1
    delay = (outcomes["known_at"] - events.set_index(events["tx_id"].astype(str)).loc[outcomes["event_id"], "ts"]
             .to_numpy()).dt.days
    assert delay[fraud].between(30, 90).all() and (delay[~fraud] == 90).all()  # chargebacks; settled after 90 days
    assert 0.1 < outcomes["reviewed"].mean() < 0.3


def test_a_passed_trial_lets_a_person_promote_and_then_the_promoted_policy_acts(lab):
    from optimizer.records.context import load_context
    from optimizer.records.refs import acting

    ledger = Ledger(lab / "ws" / "ledger.duckdb")
    result = ledger.last(Kind.SHADOW_RESULT).data
    assert result["trial"] == "trial-0001" and result["status"] == "passed"
    assert result["champion"]["experiment"] == "baseline" and result["challenger"]["experiment"] == "exp-0001"
    promotion = ledger.last(Kind.PROMOTION).data
    assert (promotion["experiment"], promotion["trial"], promotion["approved_by"]) == ("exp-0001", "trial-0001",
                                                                                      "A. Reviewer")
    assert promotion["previous_version"] is not None  # the baseline's version: a rollback returns to it
    ctx = load_context(lab / "ws")
    ref, why = acting(ctx, ctx.ledger.entries())
    assert ref.experiment == "exp-0001" and why.startswith("registry champion (promotion")
    audit = _cli("audit", lab / "ws")
    assert audit.exit_code == 0, audit.output


def test_a_worse_challenger_stays_undecided_on_selective_labels_and_fails_once_reviews_arrive(lab):
    """Outcomes arrive in two parts; what the champion blocked is labelled only where reviewed, so the weak challenger
    (which lets through what the champion blocks) can be shown worse only in the worst case: pending, with the
    interim bounds. A review of every blocked payment arrives as a correcting batch: then it is shown worse."""
    started = _start(lab, "baseline")  # the weak starting policy against the promoted exp-0001
    assert started["trial"] == "trial-0002" and started["quarantined"] == 0 and started["events"] > 5000
    assert started["champion"]["experiment"] == "exp-0001"
    code, report = _report(lab, "trial-0002")
    assert code == 3 and report["status"] == "pending" and report["labeled"] == 0 and report["settled"] == 0
    interim = report["interim"]
    assert interim["disagreements"] > 0 and interim["unknown_in_disagreements"] == interim["disagreements"]
    assert interim["gain_bounds"][0] < interim["gain_bounds"][1]  # not evidence: what is at stake
    outcomes = pd.read_parquet(lab / "out.parquet")
    cut = outcomes["known_at"].quantile(0.5)
    outcomes[outcomes["known_at"] <= cut].to_parquet(lab / "part1.parquet")
    outcomes[outcomes["known_at"] > cut].to_parquet(lab / "part2.parquet")
    first = _cli("shadow", "outcomes", lab / "ws", "trial-0002", "--outcomes", lab / "part1.parquet")
    assert first.exit_code == 0 and "batch 1" in first.output, first.output
    _, partial = _report(lab, "trial-0002")
    # Early labels are the frauds' chargebacks: only events whose settle time has passed are evidence.
    assert 0 < partial["settled"] < partial["labeled"] < partial["events"]
    assert _cli("shadow", "outcomes", lab / "ws", "trial-0002", "--outcomes", lab / "part2.parquet").exit_code == 0
    code, report = _report(lab, "trial-0002")
    assert partial["settled"] < report["settled"] == report["events"]
    primary = report["primary"]
    assert code == 3 and report["status"] == "pending", report["reasons"]
    assert primary["gain"] < 0 and primary["lower_bound"] < 0 < primary["upper_bound"]
    assert primary["best_case"]["gain"] > primary["gain"] and "worst case" in primary["labels"]
    assert report["reasons"][0].startswith("net_savings: not decided yet")
    skewed = report["selective_labels"]["champion_blocks_challenger_allows"]
    assert skewed["events"] > 0 and skewed["labeled_share"] < 0.5
    # With the review rate known, each reviewed blocked payment stands for 1 / rate of them, once enough of them
    # (shadow.min_changed) were reviewed: 17 of 71 are not enough for 30, they are for the default 10.
    for setting in ("shadow.min_changed=30", "shadow.review_rate=0.2"):
        assert _cli("config", lab / "ws", "set", setting, "--approved-by", "A. Reviewer",
                    "--reason", "the review team samples a fifth of the blocks").exit_code == 0
    _, floor = _report(lab, "trial-0002")
    assert "17 of 71 stopped disagreements reviewed, fewer than the 30" in floor["primary"]["labels"]
    assert floor["primary"]["gain"] == primary["gain"]
    assert _cli("config", lab / "ws", "set", "shadow.min_changed=10", "--approved-by", "A. Reviewer",
                "--reason", "the default floor").exit_code == 0
    _, weighted = _report(lab, "trial-0002")
    assert "inverse review rate" in weighted["primary"]["labels"] and weighted["status"] != "passed"
    assert weighted["primary"]["gain"] != primary["gain"] and weighted["primary"]["n"] == primary["n"]
    # The review team looked at every payment the champion blocked: a correcting batch.
    outcomes.assign(reviewed=True).to_parquet(lab / "reviews.parquet")
    assert _cli("shadow", "outcomes", lab / "ws", "trial-0002", "--outcomes", lab / "reviews.parquet").exit_code == 0
    code, report = _report(lab, "trial-0002")
    assert code == 1 and report["status"] == "failed" and report["corrections"] > 0
    assert report["reasons"][0].startswith("net_savings: the challenger is shown worse"), report["reasons"]
    assert report["primary"]["upper_bound"] < 0 and report["labeled"] == report["events"]
    assert set(report["latency_ms"]) == {"champion", "challenger"} and "amount" in report["drift"]
    assert report["alerts_per_day"]["limit"] == {"alert_rate": 0.03}
    kinds = [e.kind for e in Ledger(lab / "ws" / "ledger.duckdb").entries()]
    assert kinds.count(Kind.SHADOW_TRIAL) == 2 and kinds[-1] == Kind.SHADOW_RESULT
    # Each look is a ledger entry and a step of the trial's one MLflow run; reading the same outcomes adds neither.
    looks = [e.data for e in Ledger(lab / "ws" / "ledger.duckdb").entries(Kind.SHADOW_RESULT)
             if e.data["trial"] == "trial-0002"]
    assert [x["look"] for x in looks] == [1, 2, 3, 4, 5, 6]
    assert [x["outcome_batches"] for x in looks] == [0, 1, 2, 2, 2, 3]
    assert [x["settings"]["shadow"]["review_rate"] for x in looks[2:4]] == [None, 0.2]
    assert _report(lab, "trial-0002")[1]["status"] == "failed"
    assert len(Ledger(lab / "ws" / "ledger.duckdb").entries(Kind.SHADOW_RESULT)) == kinds.count(Kind.SHADOW_RESULT)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`ratchet.trial` = 'trial-0002'")
    assert len(runs) == 1 and runs[0].data.tags["ratchet.status"] == "failed"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "primary_gain")] == [2, 3, 4, 5, 6]
    con = duckdb.connect(str(lab / "ws" / "shadow.duckdb"), read_only=True)
    acted = dict(con.execute("SELECT policy, bool_and(acted) FROM decisions GROUP BY policy").fetchall())
    assert acted == {"champion": True, "challenger": False}  # only the champion's decisions act
    con.close()
    audit = _cli("audit", lab / "ws")
    assert audit.exit_code == 0, audit.output
    blocked = _cli("promote", lab / "ws", "baseline", "--approved-by", "A. Reviewer", "--reason", "try it")
    assert blocked.exit_code == 1 and "trial-0002" in blocked.output, blocked.output  # the failed trial blocks it


def test_bad_rows_are_quarantined_with_their_reason_and_never_decided(lab):
    events = pd.read_parquet(lab / "ev.parquet").head(600).astype({"amount": object})
    events.loc[3, "amount"] = None
    events.loc[5, "amount"] = -4.0
    events.loc[7, "amount"] = "lots"
    events.loc[9, "tx_id"] = events.loc[8, "tx_id"]
    events.to_csv(lab / "bad.csv", index=False)
    started = _start(lab, "baseline", "bad.csv")
    assert started["events"] == 596 and started["quarantined"] == 4
    reasons = started["quarantine_reasons"]
    assert any("wrong type" in r for r in reasons) and any("duplicate id" in r for r in reasons)
    assert any("not_be_null" in r for r in reasons) and any("to_be_between" in r for r in reasons)
    con = duckdb.connect(str(lab / "ws" / "shadow.duckdb"), read_only=True)
    trial = [started["trial"]]
    rows = con.execute("SELECT row_number, reason FROM quarantine WHERE trial = ? ORDER BY row_number", trial).fetchall()
    assert [r[0] for r in rows] == [4, 6, 8, 10] and "'lots'" in rows[2][1]
    decided = {r[0] for r in con.execute("SELECT DISTINCT event_id FROM decisions WHERE trial = ?", trial).fetchall()}
    assert str(events.loc[7, "tx_id"]) not in decided and len(decided) == 596


def test_unusable_files_and_unknown_trials_are_refused_by_name(lab):
    events = pd.read_parquet(lab / "ev.parquet").head(50)
    events.assign(is_fraud=0).to_parquet(lab / "leak.parquet")
    leak = _cli("shadow", "start", lab / "ws", "--challenger", "baseline", "--events", lab / "leak.parquet")
    assert leak.exit_code == 2 and "is_fraud" in leak.output
    events.drop(columns=["amount"]).to_parquet(lab / "short.parquet")
    short = _cli("shadow", "start", lab / "ws", "--challenger", "baseline", "--events", lab / "short.parquet")
    assert short.exit_code == 2 and "amount" in short.output
    same = _cli("shadow", "start", lab / "ws", "--challenger", "exp-0001", "--events", lab / "ev.parquet")
    assert same.exit_code == 2 and "acting champion" in same.output
    unknown = _cli("shadow", "report", lab / "ws", "trial-0009")
    assert unknown.exit_code == 2 and "trial-0009" in unknown.output
    bad_ref = _cli("shadow", "start", lab / "ws", "--challenger", "exp-0042", "--events", lab / "ev.parquet")
    assert bad_ref.exit_code == 2 and "exp-0042" in bad_ref.output and "kept" in bad_ref.output


def test_pricing_says_its_metric_is_not_measurable_in_shadow(pricing_workspace, tmp_path, monkeypatch):
    """A challenger's price was never shown to a customer: the trial reports agreement and prices, and fails."""
    ws = _kept(pricing_workspace, PRICING_BASELINE, tmp_path, monkeypatch)
    assert _cli("events", ws, "--days", "5", "--events-out", tmp_path / "ev.csv", "--outcomes-out",
                tmp_path / "out.csv").exit_code == 0
    started = _cli("shadow", "start", ws, "--challenger", "exp-0001", "--events", tmp_path / "ev.csv", "--json")
    assert started.exit_code == 0, started.output
    trial = json.loads(started.stdout)["trial"]
    joined = _cli("shadow", "outcomes", ws, trial, "--outcomes", tmp_path / "out.csv")  # times with and without
    assert joined.exit_code == 0, joined.output  # fractional seconds, as a CSV writes them
    code, report = _report_at(ws, trial)
    assert code == 1 and report["status"] == "failed"
    assert any("not measurable in shadow for pricing" in r for r in report["reasons"])
    assert 0 <= report["agreement"]["share"] < 1 and report["decisions"]["challenger"]["q99"] > 0
    assert "primary" not in report


def _kept(sealed, policy: str, tmp_path, monkeypatch):
    """A copy of a sealed workspace whose weak starting policy acts, with `policy` kept as exp-0001: a judged
    challenger for a trial."""
    ws = tmp_path / "ws"
    shutil.copytree(sealed, ws)
    shutil.copyfile(sealed.parent / "mlflow.db", tmp_path / "mlflow.db")  # the seal's records travel with it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "kept.py").write_text(policy)
    kept = _cli("try", ws, tmp_path / "kept.py", "--keep")
    assert kept.exit_code == 0, kept.output
    return ws


def _challenger(ws, change, message: str) -> str:
    """A commit of the champion's policy.py as `change` rewrites it; the workspace stays at its champion."""
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (ws / "policy.py").write_text(change((ws / "policy.py").read_text()))
    subprocess.run([*git, "commit", "-qam", message], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "reset", "-q", "--hard", "HEAD~1"], check=True)
    return commit


def _report_at(ws, trial: str):
    result = _cli("shadow", "report", ws, trial, "--json")
    return result.exit_code, json.loads(result.stdout)


def test_routing_trial_measures_the_queue_simulation_on_both_routings(routing_workspace, tmp_path, monkeypatch):
    """Routing's outcome (who resolved a ticket, and how long it took) is known whoever it was routed to: the report
    replays both policies' routing of the same tickets, compares them with a paired interval and tables the teams."""
    from optimizer.records.context import load_context

    ws = _kept(routing_workspace, ROUTING_BASELINE, tmp_path, monkeypatch)  # the shipped model against a timid one
    assert _cli("events", ws, "--days", "3", "--events-out", tmp_path / "ev.parquet", "--outcomes-out",
                tmp_path / "out.parquet").exit_code == 0
    started = _cli("shadow", "start", ws, "--challenger", "exp-0001", "--events", tmp_path / "ev.parquet", "--json")
    assert started.exit_code == 0, started.output
    info = json.loads(started.stdout)
    code, pending = _report_at(ws, info["trial"])
    assert code == 3 and pending["status"] == "pending"  # no outcome yet
    pd.read_parquet(tmp_path / "out.parquet").head(5).assign(known_at="soon").to_csv(tmp_path / "bad.csv")
    bad = _cli("shadow", "outcomes", ws, info["trial"], "--outcomes", tmp_path / "bad.csv")
    assert bad.exit_code == 2 and "known_at" in bad.output and "bad.csv" in bad.output
    assert _cli("shadow", "outcomes", ws, info["trial"], "--outcomes", tmp_path / "out.parquet").exit_code == 0
    code, report = _report_at(ws, info["trial"])
    teams = set(load_context(ws).config.scoring.teams)
    table = report["agreement"]["table"]
    assert {k.removeprefix("champion ") for k in table} <= teams  # the classes routed, not block/allow
    assert 0 < report["agreement"]["share"] < 1
    primary = report["primary"]
    assert primary["metric"] == "weighted_resolution_hours" and primary["lower_bound"] < primary["gain"]
    assert primary["gain"] > 0  # the timid champion's tickets wait longer in the replayed queues
    assert code == {"passed": 0, "failed": 1, "pending": 3}[report["status"]]
    with duckdb.connect(str(ws / "shadow.duckdb"), read_only=True) as db:
        counts = dict(db.execute("SELECT policy, count(*) FROM decisions WHERE trial = ? GROUP BY policy",
                                 [info["trial"]]).fetchall())
    assert counts == {"champion": info["events"], "challenger": info["events"]}


def test_a_trials_decisions_do_not_depend_on_its_batch_size_and_serve_agrees_one_event_at_a_time(lab):
    """The acting champion decides 120 live events in batches of 500 and of 7 (the same decisions), and
    `ratchet serve`, sent the same events one per request, answers exactly those decisions."""
    import numpy as np
    from starlette.testclient import TestClient

    from optimizer.records.context import load_context
    from optimizer.records.refs import acting
    from optimizer.release.serve_http import make_app
    from optimizer.release.shadow.deciding import decide_all, past_of
    from optimizer.release.shadow.quarantine import check_events
    from optimizer.sandbox import Sandbox
    from optimizer.workspace.history import EventStore

    ws = lab / "ws"
    ctx = load_context(ws)
    champion = acting(ctx, ctx.ledger.entries())[0]
    valid = check_events(ctx, pd.read_parquet(lab / "ev.parquet").head(120), source="ev").valid
    decided = {}
    with EventStore(ctx) as store, Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        past, offset = past_of(ctx, store, valid)
        for size in (500, 7):
            ctx.config = ctx.config.model_copy(update={"shadow": ctx.config.shadow.model_copy(update={"batch": size})})
            (decided[size], _), _ = decide_all(ctx, sandbox, champion, valid, "champion", lambda _: None, past,
                                               offset)
    np.testing.assert_array_equal(decided[500], decided[7])
    rows = json.loads(valid.to_json(orient="records", date_format="iso", date_unit="ns"))
    with TestClient(make_app(ws)) as client:
        assert client.app.state.service.champion.ref.commit == champion.commit
        served = [client.post("/decide", json={"rows": [row]}).json()["decisions"][0] for row in rows]
    np.testing.assert_array_equal(np.asarray(served), decided[500])


def test_live_metrics_on_the_review_share_estimate_each_policys_holdout_metrics(lab):
    """The events continue the workspace's own customers and terminals, so each policy reads the history it would
    in production; with the review team's share known, each policy's live metrics (on the events every label reaches
    with the same chance, with a bootstrap interval) hold its holdout figures. The figures over the labelled events
    alone do not: what the champion blocked is mostly unlabelled, so its recall reads low there."""
    from domains import Decisions
    from optimizer.records.context import load_context
    from optimizer.records.policy_state import PolicyState

    ws = lab / "ws"
    assert _cli("config", ws, "set", "shadow.review_rate=0.2", "--approved-by", "A. Reviewer", "--reason",
                "the review team looks at a fifth of the blocked payments").exit_code == 0
    code, report = _report(lab, "trial-0001")
    live = report["live_metrics"]
    assert live["events"] > 1000 and "review" in live["sample"]
    ctx = load_context(ws)
    params = ctx.config.scoring.model_dump()
    trial = {"champion": PolicyState.load(ctx.baseline_dir), "challenger": PolicyState.load(ctx.champion_dir)}
    assert (trial["champion"].commit, trial["challenger"].commit) == (report["champion"]["commit"],
                                                                      report["challenger"]["commit"])
    for role, state in trial.items():
        on_holdout = Decisions(state.holdout[~ctx.canary_mask], state.constants)  # the canaries left out
        holdout = ctx.domain.score(ctx.holdout, on_holdout, params).metrics
        for name in ("net_savings", "fraud_recall", "alert_rate"):
            m = live[role][name]
            assert m["low"] <= holdout[name] <= m["high"], (role, name, m, holdout[name])
        assert live[role]["fraud_recall"]["dev"] == pytest.approx(state.dev_metrics["fraud_recall"])
    labelled_only = report["metrics"]["champion"]["fraud_recall"]  # what the guardrails read
    assert labelled_only < live["champion"]["fraud_recall"]["low"]
    shown = _cli("shadow", "report", ws, "trial-0001")
    assert "live metrics on" in shown.output and "fraud_recall: champion" in shown.output
