"""The command line: help with examples, one-line errors with a non-zero exit, audit exit codes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimizer.cli import app

RATCHET = str(Path(sys.executable).parent / "ratchet")
COMMANDS = ("init", "run", "try", "audit", "reseal", "demo", "doctor", "config", "repair", "sync", "upgrade")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example: ratchet" in result.output


@pytest.mark.parametrize("args, words", [
    (["init", "fraud", "--workspace", "{tmp}/ws", "--data", "{tmp}/missing.csv", "--label", "y", "--time", "t",
      "--amount", "a"], ["missing.csv", "not found"]),
    (["init", "fraud", "--workspace", "{tmp}/ws", "--data", "{tmp}/x.csv"], ["--label", "--time", "--amount"]),
    (["init", "routing-x", "--workspace", "{tmp}/ws"], ["unknown domain", "fraud", "pricing"]),
    (["init", "pricing", "--workspace", "{tmp}/ws", "--data", "{tmp}/x.csv", "--map", "propensity"],
     ["--map 'propensity'", "KEY=COLUMN"]),
    (["init", "pricing", "--workspace", "{tmp}/ws", "--map", "time=t"], ["--map", "only apply with --data"]),
    (["demo", "--domain", "weather"], ["--domain 'weather'", "unknown domain"]),
    (["run", "{tmp}"], ["not a ratchet workspace", "ratchet init"]),
    (["audit", "{tmp}"], ["not a ratchet workspace"]),
    (["run", "{tmp}/nope"], ["nope: no such folder", "ratchet init"]),
    (["try", "{tmp}", "{tmp}/latin1.py"], ["latin1.py", "not UTF-8", "byte 10"]),
    (["try", "{tmp}", "{tmp}/empty.py"], ["empty.py", "empty"]),
    (["init", "fraud", "--workspace", "{tmp}/ws", "--data", "{tmp}/one_class.csv", "--label", "y", "--time", "t",
      "--amount", "a"], ["one_class.csv", "(the label) holds only 0", "both outcomes"]),
    (["init", "fraud", "--workspace", "{tmp}/ws", "--data", "{tmp}/one_row.csv", "--label", "y", "--time", "t",
      "--amount", "a"], ["one_row.csv", "1 row(s)", "at least 100"]),
    (["init", "fraud", "--workspace", "{tmp}/ws", "--data", "{tmp}/semi.csv", "--label", "y", "--time", "t",
      "--amount", "a"], ["semi.csv", "';'-delimited"]),
    (["init", "fraud", "--workspace", "{tmp}/ws", "--config", "{tmp}/bad.yaml"], ["bad.yaml", "sandbox.budget_s"]),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, words):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.yaml").write_text("sandbox:\n  budget_s: soon\n")
    (tmp_path / "latin1.py").write_bytes("# prix en \u20ac\n".encode("cp1252"))
    (tmp_path / "empty.py").write_text("\n")
    (tmp_path / "one_class.csv").write_text("t,a,y\n" + "".join(f"2025-01-{1 + i % 28:02d}T10:{i % 60:02d}:00,{i},0\n"
                                                               for i in range(300)))
    (tmp_path / "one_row.csv").write_text("t,a,y\n2025-01-01T00:00:00,5.0,1\n")
    (tmp_path / "semi.csv").write_text("t;a;y\n2025-01-01T00:00:00;5,0;1\n")
    proc = subprocess.run([RATCHET, *[a.format(tmp=tmp_path) for a in args]], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0]


def test_audit_cli_exit_codes(small_workspace, tmp_path, monkeypatch):
    import duckdb

    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    uri = json.loads(duckdb.connect(str(ws / "ledger.duckdb"), read_only=True)
                     .execute("SELECT payload FROM ledger WHERE seq = 1").fetchone()[0])["mlflow"]["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ok = CliRunner().invoke(app, ["audit", str(ws), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    path = ws / "holdout" / "holdout.parquet"
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["audit", str(ws)])
    assert bad.exit_code == 1 and "FAIL" in bad.output and "holdout.parquet" in bad.output


def test_doctor_reports_layers():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0 and "audit-hook" in result.output


def test_doctor_clean_removes_what_a_dead_owner_left(tmp_path):
    import tempfile

    from optimizer.sandbox._leftovers import OWNER, PREFIX

    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    (folder / OWNER).write_text(json.dumps({"pid": os.getpid(), "started": "0"}))  # our pid, another start time
    (folder / "holdout.parquet").write_bytes(b"x" * 2_000_000)
    result = CliRunner().invoke(app, ["doctor", "--clean"])
    assert result.exit_code == 0 and "removed" in result.output and "MB" in result.output
    assert not folder.exists()
