"""A workspace: its files, and git history of the one editable file."""
from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from optimizer.base.errors import RatchetError

POLICY = "policy.py"
CONFIG = "ratchet.yaml"
PROGRAM = "program.md"
_GIT_ID = ["-c", "user.name=ratchet", "-c", "user.email=ratchet@localhost", "-c", "commit.gpgsign=false"]
_TRACKED = (POLICY, PROGRAM, CONFIG, ".gitignore")
_IGNORE = "# Only the policy, its direction file and the config are versioned here.\n*\n" + "".join(
    f"!{name}\n" for name in _TRACKED
)


OPENED: dict[Path, None] = {}  # the workspaces this process opened, most recent last (whose MLflow store to use)


@dataclass(frozen=True)
class Workspace:
    root: Path

    # --- layout -----------------------------------------------------------------------------
    @property
    def policy(self) -> Path:
        return self.root / POLICY

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def program(self) -> Path:
        return self.root / PROGRAM

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def holdout_dir(self) -> Path:
        return self.root / "holdout"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    @property
    def study(self) -> Path:
        return self.root / "study.journal"

    @classmethod
    def open(cls, path: Path) -> "Workspace":
        ws = cls(Path(path).resolve())
        if not ws.root.exists():
            raise RatchetError(f"{path}: no such folder. Create a workspace there with `ratchet init DOMAIN -w {path}`.")
        if not ws.config.is_file() or not (ws.root / ".git").is_dir():
            raise RatchetError(f"{path}: not a ratchet workspace (no {CONFIG} or git history). Create one with `ratchet init`.")
        OPENED.pop(ws.root, None)
        OPENED[ws.root] = None
        return ws

    # --- git --------------------------------------------------------------------------------
    def git(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["git", *_GIT_ID, *args], cwd=self.root, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RatchetError(f"{self.root}: git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def init_repo(self) -> None:
        (self.root / ".gitignore").write_text(_IGNORE)
        self.git("init", "-q", "-b", "main")
        self.git("add", *_TRACKED)
        self.git("commit", "-q", "-m", "baseline: initial champion policy")

    def head(self) -> str:
        """HEAD's commit, read from .git as git reads a loose branch ref (a git process costs 7-20 ms here, and the
        loop asks for it on every experiment); anything else (packed refs, an odd HEAD) is asked of git."""
        git = self.root / ".git"
        try:
            ref = (git / "HEAD").read_text().strip()
            commit = (git / ref[len("ref: "):]).read_text().strip() if ref.startswith("ref: refs/heads/") else ref
        except (OSError, UnicodeDecodeError):
            commit = ""
        if len(commit) in (40, 64) and all(c in "0123456789abcdef" for c in commit):
            return commit
        return self.git("rev-parse", "HEAD").strip()

    def champion_source(self) -> str:
        """policy.py at HEAD (newlines as Python reads text)."""
        return _policy_at(self.root, self.head()).decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")

    def changed_files(self) -> list[str]:
        """Tracked files that differ from the last kept commit, and untracked files git sees."""
        out = self.git("status", "--porcelain", "--untracked-files=all")
        return sorted(line[3:] for line in out.splitlines() if line.strip())

    def stage(self, source: str) -> None:
        self.policy.write_text(source)

    def keep(self, message: str) -> str:
        self.git("add", POLICY)
        self.git("commit", "-q", "-m", message)
        return self.head()

    def revert(self) -> None:
        """Back to the last kept policy: HEAD's bytes replace whatever is at policy.py (a symlink is replaced, not
        followed). Other files are never silently restored: a change to them is for the integrity guard to report."""
        kept = _policy_at(self.root, self.head())
        if not self.policy.is_symlink() and self.policy.is_file() and self.policy.read_bytes() == kept:
            return
        staged = self.root / f".{POLICY}.revert"
        staged.unlink(missing_ok=True)
        staged.write_bytes(kept)
        os.replace(staged, self.policy)


def policy_at(root: Path, commit: str) -> bytes:
    """policy.py's bytes in a commit of the workspace at `root`."""
    return _policy_at(root, commit)


@functools.lru_cache(maxsize=64)
def _policy_at(root: Path, commit: str) -> bytes:
    """policy.py's bytes in a commit: a commit's content never changes, so each is asked of git once."""
    proc = subprocess.run(["git", "show", f"{commit}:{POLICY}"], cwd=root, capture_output=True)
    if proc.returncode:
        raise RatchetError(f"{root}: git show {commit}:{POLICY} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
