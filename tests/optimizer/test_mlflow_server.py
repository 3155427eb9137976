"""Against a real `mlflow server`: the seal, an experiment and the audit all go through HTTP."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BASELINE, mlflow_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The server's URL; a test may stop it and start it again on the same port and store."""

    proc: subprocess.Popen
    command: list
    env: dict

    def start(self) -> None:
        # Its own process group: `mlflow server` starts uvicorn as a child, and stop() ends the whole group.
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail("mlflow server did not come up within 90 s")

    def stop(self) -> None:
        """The server and every process it started (uvicorn's worker) are gone when this returns: the port is free
        for a restart, and nothing is left running after the test."""
        import psutil

        group = self.proc.pid  # the group's id: start_new_session made the server its leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while True:
            left = [p for p in psutil.process_iter(["status"])
                    if p.info["status"] != psutil.STATUS_ZOMBIE and _group(p.pid) == group]
            if not left:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.1)
        self.proc.wait(timeout=30)


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


@pytest.fixture
def server(tmp_path, monkeypatch):
    # The client's retries stay ratchet's (fail_fast: 2), without the back-off sleeps between them: against a
    # stopped local server every retry is refused at once, and the sleeps were most of each outage's seconds.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    port = _free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    handle = Server(f"http://127.0.0.1:{port}")
    # The server's store starts as a copy of the migrated empty store (no alembic migrations at its first start);
    # MLflow's job runner (huey consumers for GenAI jobs, which ratchet never submits) stays off: seven processes
    # each importing mlflow on every start competed with the test for the CPUs.
    handle.env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    handle.command = [mlflow_bin, "server", "--backend-store-uri", mlflow_store(tmp_path / "server.db"),
                      "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                      "--port", str(port), "--workers", "1"]
    handle.start()
    yield handle
    handle.stop()


def test_ratchet_caps_the_mlflow_clients_retries_unless_the_caller_set_them(monkeypatch):
    """What the server fixture overrides (the back-off) is ratchet's own setting otherwise: MLflow's defaults
    retry for minutes; fail_fast makes an outage known in seconds, and a caller's own settings win."""
    from holdout.records import fail_fast

    for name in ("MAX_RETRIES", "BACKOFF_FACTOR", "TIMEOUT"):
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{name}", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    fail_fast()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "0"  # the caller's
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    fail_fast()
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_seal_experiment_and_audit_through_a_server(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from holdout.audit import audit
    from optimizer.cli import app
    from optimizer.lifecycle.initialize import init_workspace, source_root
    from optimizer.tracking.runs import SEAL_TAG, Tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    res = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 12_000, "seal.canaries": 2})
    cand = tmp_path / "cand.py"
    cand.write_text(BASELINE.replace("THRESHOLD = 0.3 ", "THRESHOLD = 0.4 "))
    result = CliRunner().invoke(app, ["try", str(res.workspace.root), str(cand), "--json"])
    assert result.exit_code in (0, 1), result.output
    verdict = json.loads(result.stdout)

    seal = json.loads(json.dumps(res.manifest_sha256))
    tracker = Tracker(f"ratchet-ws-{seal[:12]}", uri=server)
    runs = tracker.runs()
    kinds = {r.data.tags.get("ratchet.kind") for r in runs}
    assert {"seal", "baseline", "experiment"} <= kinds
    sealed = [r for r in runs if r.data.tags.get("ratchet.kind") == "seal"][0]
    assert sealed.data.tags[SEAL_TAG] == res.manifest_sha256
    exp = [r for r in runs if r.data.tags.get("ratchet.kind") == "experiment"][0]
    assert exp.data.tags["ratchet.experiment"] == verdict["experiment"]
    artifacts = {a.path for a in tracker.client.list_artifacts(exp.info.run_id)}
    assert {"policy.py", "diff.patch", "trace.json", "record.json"} <= artifacts
    report = audit(res.workspace.root, source_root=source_root())
    assert report.ok, [c for c in report.checks if not c.passed]

    # The server goes away: the next try says so in seconds and records nothing; the audit calls it an outage.
    from holdout.ledger import Ledger

    server.stop()
    before = len(Ledger(res.workspace.root / "ledger.duckdb").entries())
    down = CliRunner().invoke(app, ["try", str(res.workspace.root), str(cand), "--json"])
    assert down.exit_code == 2 and f"MLflow at {server}: unreachable" in down.output, down.output
    assert "nothing was recorded" in down.output
    assert len(Ledger(res.workspace.root / "ledger.duckdb").entries()) == before
    outage = CliRunner().invoke(app, ["audit", str(res.workspace.root)])
    assert outage.exit_code == 4 and "NOT VERIFIED" in outage.output and "INTEGRITY" not in outage.output


def _finished_experiments(server, ws) -> dict[str, str]:
    from holdout.ledger import Kind, Ledger
    from optimizer.tracking.runs import Tracker

    name = Ledger(ws / "ledger.duckdb").entries(Kind.SEAL)[-1].data["mlflow"]["experiment"]
    runs = Tracker(name, uri=server).runs("attributes.status = 'FINISHED'")
    return {r.data.tags["ratchet.experiment"]: r.data.tags.get("ratchet.synced", "")
            for r in runs if r.data.tags.get("ratchet.kind") == "experiment"}


def test_a_server_stopped_and_restarted_mid_run_misses_nothing(server, tmp_path, monkeypatch):
    """The server stops after the first experiment and comes back after the second: the run carries on on the
    ledger, says so both times, writes the missed run once MLflow answers, and the audit is intact."""
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import init_workspace, source_root
    from optimizer.loop.run import Recorded, TrackingChanged, run_loop

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    ws = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 12_000, "seal.canaries": 2,
                                                               "decision.refits": 0}).workspace.root
    events = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, Recorded) and event.record.experiment == "exp-0001":
            server.stop()
        if isinstance(event, Recorded) and event.record.experiment == "exp-0002":
            server.start()

    summary = run_loop(ws, experiments=4, proposer="optuna", on_event=on_event)
    assert len(summary.records) == 4 and summary.untracked == ()
    changes = [e for e in events if isinstance(e, TrackingChanged)]
    assert [bool(e.down) for e in changes] == [True, False], changes
    assert "unreachable" in changes[0].down
    runs = _finished_experiments(server, ws)
    assert sorted(runs) == ["exp-0001", "exp-0002", "exp-0003", "exp-0004"]
    assert runs["exp-0002"] == "true" and runs["exp-0003"] == ""  # written on the way back, then as usual
    report = audit(ws, source_root=source_root())
    assert report.ok, [c for c in report.checks if not c.passed]


def test_a_server_gone_for_the_rest_of_a_run_is_said_and_sync_writes_it_later(server, tmp_path, monkeypatch):
    """With the server gone for good the run still records every experiment in the ledger and says which ones
    MLflow missed; with `tracking.on_outage: stop` it stops cleanly after the record; `ratchet sync` writes them."""
    from typer.testing import CliRunner

    from holdout.ledger import Kind, Ledger
    from optimizer.cli import app
    from optimizer.lifecycle.initialize import init_workspace

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    ws = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 12_000, "seal.canaries": 2,
                                                               "decision.refits": 0}).workspace.root
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(ws), "--experiments", "1", "--proposer", "optuna"])
    assert first.exit_code == 0, first.output
    from optimizer.loop.run import run_loop

    summary = run_loop(ws, experiments=2, proposer="optuna",
                       on_event=lambda e: server.stop() if getattr(e, "champion", None) is not None else None)
    assert [r.experiment for r in summary.records] == ["exp-0002", "exp-0003"]
    assert summary.untracked == ("exp-0002", "exp-0003")
    assert len(Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT)) == 3
    server.start()
    changed = runner.invoke(app, ["config", str(ws), "set", "tracking.on_outage=stop", "--approved-by", "ops",
                                  "--reason", "stop on an outage"])
    assert changed.exit_code == 0, changed.output
    from optimizer.base.errors import RatchetError

    with pytest.raises(RatchetError, match=r"while exp-0004 was recorded; the ledger and experiments/exp-0004 hold"):
        run_loop(ws, experiments=3, proposer="optuna",
                 on_event=lambda e: server.stop() if getattr(e, "champion", None) is not None else None)
    assert len(Ledger(ws / "ledger.duckdb").entries(Kind.EXPERIMENT)) == 4
    server.start()
    synced = runner.invoke(app, ["sync", str(ws)])
    assert synced.exit_code == 0 and "written now: exp-0002, exp-0003, exp-0004" in synced.output, synced.output
    audit = runner.invoke(app, ["audit", str(ws)])
    assert audit.exit_code == 0 and "audit: intact" in audit.output, audit.output
