"""`ratchet serve`: the acting policy answers over HTTP from the sandbox; bad requests are refused, never fatal."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from holdout.ledger import Entry, Kind
from optimizer.records.refs import registry_move
from optimizer.release.serve import running_trial
from optimizer.release.serve_http import make_app
from optimizer.release.serve_run import server_for
from optimizer.release.shadow.store import ShadowStore, Trial


@pytest.fixture(scope="module")
def served_ws(small_workspace, tmp_path_factory) -> Path:
    """A copy of the small fraud workspace with its baseline evaluated (the champion the server fits)."""
    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    root = tmp_path_factory.mktemp("serve") / "ws"
    shutil.copytree(small_workspace, root)
    ctx = load_context(root)
    if ctx.champion() is None:
        # No refits: the server reads the champion's commit, not its training noise.
        ctx.config = ctx.config.model_copy(update={"decision": ctx.config.decision.model_copy(update={"refits": 0})})
        with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
            ensure_baseline(ctx, sandbox)
    return root


@pytest.fixture(scope="module")
def client(served_ws):
    with TestClient(make_app(served_ws)) as c:
        yield c


def dev_rows(client, n: int, start: int = 0) -> list[dict]:
    """Dev rows as a client would send them: the policy view without the label, times in ISO 8601."""
    ctx = client.app.state.service.ctx
    view = ctx.domain.policy_view(ctx.dev, with_label=False).iloc[start:start + n]
    return json.loads(view.to_json(orient="records", date_format="iso", date_unit="ns"))


def test_health_names_the_acting_policy_and_sandbox(client):
    body = client.get("/health").json()
    champion = client.app.state.service.ctx.champion()
    assert body["status"] == "ok" and body["trial"] is None
    assert body["policy"]["commit"] == champion.commit and body["policy"]["experiment"] == champion.experiment
    assert body["policy"]["chosen_by"] == "baseline (nothing promoted yet)"
    assert "audit-hook" in body["sandbox"]["layers"] and body["sandbox"]["decide"] == "persistent worker"
    assert "is_fraud" not in body["columns"] and "amount" in body["columns"]


def test_decide_scores_dev_rows_as_the_loop_did(client):
    rows = dev_rows(client, 300)
    r = client.post("/decide", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = np.array(body["decisions"])
    assert len(scores) == 300 and ((scores >= 0) & (scores <= 1)).all()
    champion = client.app.state.service.ctx.champion()
    # Point-in-time policies decide a prefix of dev as they decided it within all of dev (the look-ahead guard).
    np.testing.assert_allclose(scores, champion.dev[:300], rtol=1e-6, atol=1e-9)
    assert body["blocked"] == (scores >= champion.constants["THRESHOLD"]).tolist()
    assert body["policy"] == {"commit": champion.commit, "experiment": champion.experiment}
    assert body["latency_ms"] > 0


@pytest.mark.parametrize("make, status, words", [
    (lambda rows: b'{"rows": [', 400, "not valid JSON"),
    (lambda rows: b'{"rows": [{"amount": NaN}]}', 400, "NaN is not a JSON number"),
    (lambda rows: json.dumps({"rows": {"a": 1}}).encode(), 422, '"rows" must be a list'),
    (lambda rows: json.dumps({"rows": []}).encode(), 422, '"rows" is empty'),
    (lambda rows: json.dumps({"rows": [{k: v for k, v in rows[0].items() if k != "amount"}]}).encode(), 422,
     "row 0: missing column 'amount'"),
    (lambda rows: json.dumps({"rows": [rows[0], {**rows[1], "is_fraud": 0}]}).encode(), 422,
     "row 1: column 'is_fraud' is the label"),
    (lambda rows: json.dumps({"rows": [{**rows[0], "fraud_scenario": 0}]}).encode(), 422,
     "'fraud_scenario' is outcome-only"),
    (lambda rows: json.dumps({"rows": [rows[0], {**rows[1], "amount": "twelve"}]}).encode(), 422,
     "row 1, column 'amount': \"twelve\" is not a finite number"),
    (lambda rows: json.dumps({"rows": [{**rows[0], "ts": "soon"}]}).encode(), 422, "column 'ts'"),
    (lambda rows: b" " * (8 * 1024 * 1024 + 1), 413, "at most 8,388,608"),
])
def test_bad_requests_are_refused_and_the_server_keeps_answering(client, make, status, words):
    rows = dev_rows(client, 2)
    r = client.post("/decide", content=make(rows), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]
    assert client.post("/decide", json={"rows": rows}).status_code == 200


def test_too_many_rows_and_unknown_routes(client):
    rows = dev_rows(client, 1) * 10_001
    r = client.post("/decide", json={"rows": rows})
    assert r.status_code == 413 and "10,001 rows" in r.json()["error"]
    assert client.get("/nope").status_code == 404
    assert client.get("/decide").status_code == 405


def test_a_sandbox_failure_is_a_503_with_its_status_and_the_next_request_gets_a_new_worker(client, monkeypatch):
    service = client.app.state.service
    config = service.ctx.config
    tight = config.model_copy(update={"sandbox": config.sandbox.model_copy(update={"budget_s": 0.0001})})
    rows = dev_rows(client, 5000)  # unpickling and scoring 5,000 rows takes milliseconds, not 0.1 ms: a real overrun
    monkeypatch.setattr(service.ctx, "config", tight)
    r = client.post("/decide", json={"rows": rows})
    assert r.status_code == 503 and r.json()["status"] == "timeout" and "0.0001 s budget" in r.json()["error"]
    monkeypatch.undo()
    assert client.post("/decide", json={"rows": dev_rows(client, 1)}).status_code == 200
    served = client.get("/health").json()["served"]
    assert served["worker_restarts"] == 1 and served["sandbox_failures"] == 1


def test_a_running_trial_logs_both_policies_and_returns_the_champions(served_ws, tmp_path):
    from optimizer.records.context import load_context

    root = tmp_path / "ws"
    shutil.copytree(served_ws, root)
    ctx = load_context(root)
    champion = ctx.champion()
    ctx.ledger.append(Kind.PROMOTION, {"commit": champion.commit, "approved_by": "test"})
    store = ShadowStore(root / "shadow.duckdb")
    events = pd.DataFrame({"event_id": ["e1"], "ts": [pd.Timestamp("2025-07-01")]})
    store.add_trial(Trial("trial-0001", "2025-07-01T00:00:00+00:00", champion.commit, champion.commit, "champion",
                          "0" * 64), events)
    with TestClient(make_app(root)) as c:
        health = c.get("/health").json()
        assert health["trial"]["trial"] == "trial-0001" and health["trial"]["shadowing"]
        assert health["policy"]["chosen_by"].startswith("registry champion (promotion")
        rows = dev_rows(c, 40)
        body = c.post("/decide", json={"rows": rows}).json()
        assert len(body["decisions"]) == 40
    logged = store.query("SELECT policy, acted, source, event_id, decision FROM decisions ORDER BY policy, event_id")
    assert set(logged["source"]) == {"serve"}
    by = {p: g for p, g in logged.groupby("policy")}
    assert set(by) == {"champion", "challenger"} and len(by["champion"]) == len(by["challenger"]) == 40
    assert by["champion"]["acted"].all() and not by["challenger"]["acted"].any()
    assert sorted(by["champion"]["event_id"]) == sorted(str(r["tx_id"]) for r in rows)
    returned = dict(zip((str(r["tx_id"]) for r in rows), body["decisions"]))
    assert all(float(d) == pytest.approx(returned[e]) for e, d in zip(by["champion"]["event_id"],
                                                                       by["champion"]["decision"]))


def test_a_trial_against_another_champion_is_not_shadowed(served_ws, tmp_path):
    """A promotion or rollback since the trial started: the policy acting now is not the trial's champion, so the
    server logs nothing under that trial (its champion rows would be another policy's)."""
    from optimizer.records.context import load_context

    root = tmp_path / "ws"
    shutil.copytree(served_ws, root)
    champion = load_context(root).champion()
    store = ShadowStore(root / "shadow.duckdb")
    events = pd.DataFrame({"event_id": ["e1"], "ts": [pd.Timestamp("2025-07-01")]})
    store.add_trial(Trial("trial-0001", "2025-07-01T00:00:00+00:00", "f" * 40, champion.commit, "champion",
                          "0" * 64), events)
    with TestClient(make_app(root)) as c:
        trial = c.get("/health").json()["trial"]
        assert not trial["shadowing"] and "acts now" in trial["problem"] and "ffffffffffff" in trial["problem"]
        assert c.post("/decide", json={"rows": dev_rows(c, 3)}).status_code == 200
    assert store.query("SELECT count(*) AS n FROM decisions")["n"][0] == 0


def _entry(seq: int, kind: str, **data) -> Entry:
    return Entry(seq, "t", kind, json.dumps(data), "", "")


def test_the_registry_alias_follows_the_last_promotion_or_rollback():
    assert registry_move([_entry(1, Kind.SEAL), _entry(2, Kind.BASELINE, commit="a")]) is None
    promoted = [_entry(1, Kind.PROMOTION, commit="a"), _entry(2, Kind.PROMOTION, commit="b")]
    assert registry_move(promoted).data["commit"] == "b"
    assert registry_move([*promoted, _entry(3, Kind.ROLLBACK, commit="a")]).data["commit"] == "a"


def test_a_trial_runs_until_its_result_passes_or_fails():
    t1, t2 = (Trial(f"trial-000{i}", f"2025-07-0{i}", "c", "x", "exp-0001", "") for i in (1, 2))
    assert running_trial([t1, t2], []) is t2
    assert running_trial([t1, t2], [_entry(1, Kind.SHADOW_RESULT, trial="trial-0002", status="pending")]) is t2
    assert running_trial([t1], [_entry(1, Kind.SHADOW_RESULT, trial="trial-0001", status="passed")]) is None


def test_the_real_server_answers_over_http(served_ws):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(served_ws)
    server = server_for(app, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started, "uvicorn did not start"
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
            assert json.load(r)["status"] == "ok"
        ctx = app.state.service.ctx
        rows = json.loads(ctx.domain.policy_view(ctx.dev, with_label=False).head(3)
                          .to_json(orient="records", date_format="iso"))
        request = urllib.request.Request(f"{url}/decide", data=json.dumps({"rows": rows}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            assert len(json.load(r)["decisions"]) == 3
        bad = urllib.request.Request(f"{url}/decide", data=b"{", headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 400
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert app.state.service.sandbox._process is None  # the lifespan closed the sandbox


def test_cli_refuses_a_folder_that_is_no_workspace_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from optimizer.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope"), "--port", str(port)])
    assert result.exit_code == 2
    assert "error:" in result.output and "nope: no such folder" in result.output
    assert "Traceback" not in result.output


def test_cli_serve_has_help_with_an_example():
    from typer.testing import CliRunner

    from optimizer.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "Example: ratchet serve" in result.output
    assert "--host" in result.output and "--port" in result.output


@pytest.mark.parametrize("dtype, values, expected", [
    ("int64", [1, 2.0, "3"], [1, 2, 3]),
    ("float64", [1, "2.5"], [1.0, 2.5]),
    ("string", ["a", 7], ["a", "7"]),
    ("datetime64[ns]", ["2025-01-01T02:00:00+02:00", "2025-01-01T00:00:00"],
     [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-01-01")]),
    ("datetime64[ns, UTC]", ["2025-01-01T02:00:00+02:00", "2025-01-01T00:00:00"],
     [pd.Timestamp("2025-01-01", tz="UTC")] * 2),
])
def test_values_are_coerced_to_the_dev_dtype(dtype, values, expected):
    from optimizer.release.serve_rows import ColumnSpec, coerce

    out = coerce(ColumnSpec("c", pd.Series([], dtype=dtype).dtype, False), values)
    assert str(out.dtype) == dtype and out.tolist() == expected


@pytest.mark.parametrize("dtype, value, words", [
    ("int64", 1.5, "1.5 is not an integer"), ("int64", True, "true is not an integer"),
    ("float64", None, "null, expected a finite number"), ("float64", "inf", '"inf" is not a finite number'),
    ("datetime64[ns]", 1_700_000_000, "not an ISO 8601 time string"), ("string", {"a": 1}, "an object is not text"),
])
def test_values_that_do_not_coerce_name_row_and_column(dtype, value, words):
    from optimizer.release.serve_rows import ColumnSpec, Refused, coerce

    with pytest.raises(Refused) as refused:
        first = {"string": "x", "datetime64[ns]": "2025-01-01T00:00:00"}.get(dtype, 0)
        coerce(ColumnSpec("c", pd.Series([], dtype=dtype).dtype, False), [first, value])
    assert refused.value.status_code == 422 and refused.value.message.startswith("row 1, column 'c': ")
    assert words in refused.value.message


LIVE = 10**9  # ids of live events, above any generated one


def _live_rows(ctx, n: int) -> list[dict]:
    """`n` new events as a client sends them: dev rows moved past the end of dev, with ids never seen."""
    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(n).copy()
    view["tx_id"] = LIVE + np.arange(n)
    view["ts"] = view["ts"] + (ctx.dev["ts"].max() - ctx.dev["ts"].min()) + pd.Timedelta(days=1)
    return json.loads(view.to_json(orient="records", date_format="iso", date_unit="ns"))


def test_served_events_join_the_history_the_next_request_reads(served_ws, tmp_path):
    """One event per request, each appended before its answer: the same decisions as the whole batch in one
    request (whose rows read the earlier ones in the call), and every event is in history.duckdb once."""
    root = tmp_path / "ws"
    shutil.copytree(served_ws, root)
    with TestClient(make_app(root)) as c:
        rows = _live_rows(c.app.state.service.ctx, 40)
        answers = [c.post("/decide", json={"rows": [row]}) for row in rows]
        assert all(r.status_code == 200 for r in answers), answers[0].text
        alone = [r.json()["decisions"][0] for r in answers]
        again = c.post("/decide", json={"rows": rows[:5]}).json()["decisions"]  # a retry: no event twice
    np.testing.assert_array_equal(again, alone[:5])
    (root / "history.duckdb").rename(tmp_path / "first.duckdb")  # a fresh store from train and dev: one batch
    with TestClient(make_app(root)) as c:
        batch = c.post("/decide", json={"rows": rows}).json()["decisions"]
    np.testing.assert_array_equal(alone, batch)
    import duckdb

    with duckdb.connect(str(tmp_path / "first.duckdb"), read_only=True) as con:
        held = con.execute(f"SELECT tx_id, count(*) FROM events WHERE tx_id >= {LIVE} GROUP BY tx_id").fetchall()
    assert sorted(i for i, _ in held) == sorted(r["tx_id"] for r in rows) and {n for _, n in held} == {1}


def test_a_kill_minus_9_under_load_loses_no_acknowledged_event(served_ws, tmp_path):
    import duckdb

    root = tmp_path / "ws"
    shutil.copytree(served_ws, root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ratchet = Path(sys.executable).parent / "ratchet"
    server = subprocess.Popen([str(ratchet), "serve", str(root), "--port", str(port)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "ratchet serve exited before answering"
                time.sleep(0.5)
        from optimizer.records.context import load_context

        rows = _live_rows(load_context(root), 400)

        def send() -> None:
            for row in rows:
                request = urllib.request.Request(f"{url}/decide", data=json.dumps({"rows": [row]}).encode(),
                                                 headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as r:
                        if r.status == 200:
                            acked.append(row["tx_id"])
                except OSError:
                    return

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        while len(acked) < 60 and sender.is_alive():
            time.sleep(0.01)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its sandbox, mid-request
        server.wait(timeout=60)
    sender.join(timeout=60)
    assert len(acked) >= 60
    from optimizer.records.context import load_context
    from optimizer.workspace.history import EventStore

    with EventStore(load_context(root)) as store:  # opening moves what the log holds into DuckDB
        held = set(store.events()["tx_id"])
    assert set(acked) <= held, f"acknowledged but lost: {sorted(set(acked) - held)[:5]}"
    with duckdb.connect(str(root / "history.duckdb"), read_only=True) as con:
        stored = {i for (i,) in con.execute(f"SELECT tx_id FROM events WHERE tx_id >= {LIVE}").fetchall()}
    assert set(acked) <= stored and not (root / "history.log").read_bytes()


def test_a_slow_challenger_is_shadowed_off_the_request_path(served_ws, tmp_path):
    """A challenger that sleeps 1 s per decide, its queue cut to one request: four requests are answered while it
    still decides the first, so the work that finds the queue full is dropped and counted, never waited for; what
    it decided is logged for both policies, with its own call's latency."""
    from optimizer.lifecycle.config_events import change_config
    from optimizer.records.context import load_context
    from tests.optimizer.test_shadow_latency import slowed

    root = tmp_path / "ws"
    shutil.copytree(served_ws, root)
    ctx = load_context(root)
    change_config(root, {"static.allowed_imports": [*ctx.config.static.allowed_imports, "time"]},
                  approved_by="test", reason="a challenger that sleeps in decide")
    slow = _commit_aside(root, slowed((root / "policy.py").read_text(), 1.0))
    store = ShadowStore(root / "shadow.duckdb")
    store.add_trial(Trial("trial-0001", "2025-07-01T00:00:00+00:00", ctx.champion().commit, slow, slow[:12],
                          "0" * 64), pd.DataFrame({"event_id": ["e1"], "ts": [pd.Timestamp("2025-07-01")]}))
    with TestClient(make_app(root)) as c:
        service = c.app.state.service
        assert service.shadowing and service.shadow_sandbox is not service.sandbox
        service.lane.capacity = 1
        rows = _live_rows(service.ctx, 12)
        answers = [c.post("/decide", json={"rows": rows[i:i + 3]}) for i in range(0, 12, 3)]
        assert [r.status_code for r in answers] == [200] * 4
        trial = c.get("/health").json()["trial"]
        assert trial["shadow_dropped"] >= 1 and trial["challenger_failures"] == 0
    dropped = service.lane.counts["shadow_dropped"]
    logged = store.query("SELECT policy, event_id, latency_ms, source FROM decisions")
    counts = logged.groupby("policy").size().to_dict()
    assert counts == {"champion": 3 * (4 - dropped), "challenger": 3 * (4 - dropped)} and dropped < 4
    assert set(logged["source"]) == {"serve"}
    assert (logged.loc[logged["policy"] == "challenger", "latency_ms"] >= 1000).all()  # its own call, not the answer's
    returned = {str(r["tx_id"]) for r in rows}
    assert set(logged["event_id"]) <= returned


def _commit_aside(root: Path, source: str) -> str:
    """A commit of policy.py as `source`; the workspace stays at its champion (the commit is not checked out)."""
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (root / "policy.py").write_text(source)
    subprocess.run([*git, "commit", "-qam", "a slow challenger"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "reset", "-q", "--hard", "HEAD~1"], check=True)
    return commit
