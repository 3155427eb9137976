"""The workspace's git reads without a git process: the same answers as git, and a revert that restores bytes."""
import subprocess

import pytest

from optimizer.workspace.layout import Workspace


@pytest.fixture()
def ws(tmp_path):
    for name, text in (("policy.py", "THRESHOLD = 0.5\r\n"), ("program.md", "# direction\n"), ("ratchet.yaml", "seed: 0\n")):
        (tmp_path / name).write_bytes(text.encode())
    workspace = Workspace(tmp_path)
    workspace.init_repo()
    return workspace


def _git(ws, *args) -> str:
    return subprocess.run(["git", *args], cwd=ws.root, capture_output=True, text=True, check=True).stdout.strip()


def test_head_and_champion_source_agree_with_git(ws):
    assert ws.head() == _git(ws, "rev-parse", "HEAD")
    assert ws.champion_source() == "THRESHOLD = 0.5\n"  # newlines as Python reads text, as before
    ws.stage("THRESHOLD = 0.4\n")
    kept = ws.keep("keep 0.4")
    assert kept == ws.head() == _git(ws, "rev-parse", "HEAD")
    assert ws.champion_source() == "THRESHOLD = 0.4\n"
    _git(ws, "pack-refs", "--all")  # no loose ref file left: asked of git
    assert not (ws.root / ".git/refs/heads/main").exists()
    assert ws.head() == kept and ws.champion_source() == "THRESHOLD = 0.4\n"


def test_revert_restores_the_kept_bytes(ws):
    ws.stage("THRESHOLD = 0.1\n")
    ws.revert()
    assert ws.policy.read_bytes() == b"THRESHOLD = 0.5\r\n"
    assert ws.changed_files() == []


def test_revert_replaces_a_symlink_without_writing_through_it(ws, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "target.txt"
    outside.write_text("not the workspace's")
    ws.policy.unlink()
    ws.policy.symlink_to(outside)
    ws.revert()
    assert not ws.policy.is_symlink() and ws.policy.read_bytes() == b"THRESHOLD = 0.5\r\n"
    assert outside.read_text() == "not the workspace's"
