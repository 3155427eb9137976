"""Sandbox folders a killed process left behind: found by their owner record, removed once the owner is gone.

A Sandbox's folder holds train rows with labels, fitted models and, mid-decide, holdout rows: nothing that
may outlive the run. close() and the finalizer remove it; a SIGKILL skips both. So each folder records its
owner (pid and the kernel's start time of that process, which a reused pid does not share), and every new
Sandbox first removes the folders of owners that are gone (`ratchet doctor --clean` does it on demand).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "ratchet-sandbox-"
OWNER = "owner.json"


def _started(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat: starttime (the first two fields are cut above)
    except (OSError, IndexError):
        return None


def make_folder() -> Path:
    """A fresh private sandbox folder in the temp dir, with this process recorded as its owner."""
    base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    record = os.open(base / OWNER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(record, "w") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "started": _started(os.getpid())}))
    return base


def _orphaned(folder: Path) -> bool:
    try:
        owner = json.loads((folder / OWNER).read_text())
        pid, started = int(owner["pid"]), owner["started"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours to judge (written by an older version, or half made): `doctor --clean --all`
    return _started(pid) != started


def leftovers(everything: bool = False) -> list[Path]:
    """Sandbox folders in the temp dir whose owner process is gone (`everything`: also those with no owner
    record), this user's only."""
    found = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _orphaned(folder) or (everything and not (folder / OWNER).is_file()):
            found.append(folder)
    return found


def clean(everything: bool = False) -> tuple[int, int]:
    """Remove the left-over folders; (folders removed, bytes freed)."""
    removed, freed = 0, 0
    for folder in leftovers(everything):
        try:
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        except OSError:
            size = 0
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed, freed = removed + 1, freed + size
    return removed, freed
