"""Against a real `mlflow server`: the seal, an experiment and the audit all go through HTTP."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BASELINE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The server's URL, with its process (a test may stop it)."""

    proc: subprocess.Popen


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not come up within 90 s")
    handle = Server(url)
    handle.proc = proc
    yield handle
    proc.terminate()
    proc.wait(timeout=30)


def test_seal_experiment_and_audit_through_a_server(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from holdout.audit import audit
    from optimizer.cli import app
    from optimizer.initialize import init_workspace, source_root
    from optimizer.tracking import SEAL_TAG, Tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    res = init_workspace("fraud", tmp_path / "ws", overrides={"data.rows": 12_000, "seal.canaries": 2})
    cand = tmp_path / "cand.py"
    cand.write_text(BASELINE.replace("THRESHOLD = 0.1 ", "THRESHOLD = 0.2 "))
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

    server.proc.terminate()
    server.proc.wait(timeout=30)
    before = len(Ledger(res.workspace.root / "ledger.duckdb").entries())
    down = CliRunner().invoke(app, ["try", str(res.workspace.root), str(cand), "--json"])
    assert down.exit_code == 2 and f"MLflow at {server}: unreachable" in down.output, down.output
    assert "nothing was recorded" in down.output
    assert len(Ledger(res.workspace.root / "ledger.duckdb").entries()) == before
    outage = CliRunner().invoke(app, ["audit", str(res.workspace.root)])
    assert outage.exit_code == 4 and "NOT VERIFIED" in outage.output and "INTEGRITY" not in outage.output
