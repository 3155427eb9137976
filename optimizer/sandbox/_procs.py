"""Process facts the fork server gathers: its children, their output tails, their audit records."""
from __future__ import annotations

import os
import shutil
import signal


def children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                found.update(int(pid) for pid in handle.read().split())
        except OSError:
            continue
    return found


def sweep(keep: frozenset[int] | set[int] = frozenset()) -> int:
    """Kill and reap every remaining child but `keep` (live workers): as subreaper, escaped grandchildren
    land here."""
    killed = 0
    for _ in range(100):
        strays = children() - set(keep)
        if not strays:
            break
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
                killed += 1
            except ChildProcessError:
                pass
    return killed


def empty(folder: str) -> None:
    """Remove everything in the namespace's private /dev/shm: no run leaves data for the next."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def kill_group(pid: int) -> None:
    for kill in (os.kill, os.killpg):  # kill first: the child may not have called setsid yet
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Tail:
    """The last `cap` bytes of a stream, plus how many were dropped."""

    def __init__(self, cap: int) -> None:
        self.cap, self.data, self.dropped = cap, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            cut = len(self.data) - self.cap
            self.dropped += cut
            del self.data[:cut]

    def text(self) -> str:
        cut = max(len(self.data) - self.cap, 0)
        body = bytes(self.data[cut:]).decode("utf-8", "replace")
        dropped = self.dropped + cut
        return f"[... {dropped} earlier bytes dropped ...]\n{body}" if dropped else body


def read_into(fd: int, tails: dict, open_fds: set) -> None:
    chunk = os.read(fd, 1 << 16)
    if chunk:
        tails[fd].add(chunk)
    else:
        open_fds.discard(fd)


def records(tail: Tail) -> list[str]:
    seen: list[str] = []
    for line in bytes(tail.data).decode("utf-8", "replace").splitlines():
        if line and line not in seen:
            seen.append(line)
    return seen
