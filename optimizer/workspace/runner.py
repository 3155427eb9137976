"""One runner per workspace: every command that writes a workspace holds its runner lock for its whole life.

The lock is an exclusive `flock` on `runner.lock` in the workspace, taken without waiting: a second runner is
refused at once, with the holder's pid, command and start time (written into the file by the holder). The
kernel releases the lock when its process ends, however it ends, so a lock left by a killed run is never
stale: the next runner takes it and says whose it was. The ledger's own lock still guards each append; this
one keeps two runs from interleaving whole experiments (ids, folders, commits).

    with runner_lock(ws_root, "ratchet run") as taken_over:
        ...  # taken_over: the Holder a killed process left, or None

Re-entrant within a process (a command that calls another holds it once).
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Iterator, TypeVar

from optimizer.base.errors import RatchetError, WorkspaceBusy

LOCK_FILE = "runner.lock"
log = logging.getLogger("ratchet")
F = TypeVar("F", bound=Callable)
_held: dict[Path, tuple[IO[str], int]] = {}  # lock path -> (open file, depth) for this process
_guard = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a workspace's runner lock."""

    pid: int
    command: str
    since: str
    host: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, since {self.since})"

    @classmethod
    def read(cls, path: Path) -> "Holder | None":
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "null")
            return cls(int(data["pid"]), str(data["command"]), str(data["since"]), str(data["host"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None


def command_line() -> str:
    """This process's ratchet command as typed (program name and arguments, bounded)."""
    words = ["ratchet", *sys.argv[1:]] if sys.argv else ["ratchet"]
    line = " ".join(words)
    return line if len(line) <= 200 else line[:197] + "..."


@contextmanager
def runner_lock(root: Path | str, command: str | None = None) -> Iterator[Holder | None]:
    """Hold `root`'s runner lock; WorkspaceBusy (naming the holder) when another process holds it."""
    path = Path(root).resolve() / LOCK_FILE
    with _guard:
        if path in _held:
            handle, depth = _held[path]
            _held[path] = (handle, depth + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield None
        finally:
            with _guard:
                handle, depth = _held[path]
                _held[path] = (handle, depth - 1)
        return
    command = command or command_line()
    handle = _acquire(path, command)
    left = Holder.read(path)
    try:
        handle.seek(0)
        handle.truncate()
        me = Holder(os.getpid(), command, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    socket.gethostname())
        handle.write(json.dumps(me.__dict__))
        handle.flush()
        with _guard:
            _held[path] = (handle, 1)
        yield left if left is not None and left.pid != os.getpid() else None
    finally:
        with _guard:
            _held.pop(path, None)
        try:
            handle.seek(0)
            handle.truncate()  # a released lock names nobody
        except OSError:
            pass
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _acquire(path: Path, command: str) -> IO[str]:
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise RatchetError(f"{path}: cannot open the runner lock ({exc.strerror or exc}); nothing was changed. Check "
                           "that the workspace is writable (a read-only copy can be audited, not run).") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Holder.read(path)
        handle.close()
        who = holder.describe() if holder else "another process"
        raise WorkspaceBusy(f"{path.parent}: busy: {who} holds its runner lock; `{command}` was not started. Wait "
                            "for it to finish or stop it; one command at a time writes a workspace.") from None
    return handle


@contextmanager
def hold(path: Path | str) -> Iterator[None]:
    """Hold the runner lock of the workspace at `path` (checked to be one first), saying so when it takes over the
    lock of a process that ended without releasing it."""
    from optimizer.workspace.layout import Workspace

    with runner_lock(Workspace.open(Path(path)).root) as left:
        if left is not None:
            log.warning("%s: took over the runner lock that %s left when it ended without releasing it",
                        path, left.describe())
        yield


def exclusive(function: F) -> F:
    """Run `function(path, ...)` holding the runner lock of the workspace at `path` (checked to be one first)."""

    @functools.wraps(function)
    def held(path, *args, **kwargs):
        with hold(path):
            return function(path, *args, **kwargs)

    return held  # type: ignore[return-value]
