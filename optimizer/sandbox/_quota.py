"""The write quota of one phase: how many bytes and files a child may add to its workdir (and private /dev/shm).

RLIMIT_FSIZE bounds one file, not a folder: a fit writing many files filled gigabytes and still passed. So the
fork server measures what the child added while it runs, every TICK_S (less often when a measurement is slow), and
kills its process group once the total passes the quota; a last measurement after the child ends catches a writer
faster than a tick. Files already there when the phase began (the policy, row files, the model) count only by what
they grew. A file the child deleted but still holds open occupies the disk invisibly: it is found through the
child's open descriptors and counted too. The walk never follows links, and stops as soon as the file count is over.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

DISK_MB = 1024  # default quota: bytes a phase may write, in MiB
MAX_FILES = 10_000  # default quota: files and folders a phase may create
TICK_S = 0.1


@dataclass(frozen=True)
class Usage:
    """What a phase added: bytes (the larger of a file's size and its allocated blocks) and entries."""

    bytes: int
    files: int


def _size(info: os.stat_result) -> int:
    return max(info.st_size, getattr(info, "st_blocks", 0) * 512) if stat.S_ISREG(info.st_mode) else 0


def snapshot(folders: tuple[str, ...]) -> dict[tuple[int, int], int]:
    """(device, inode) -> bytes of every entry already in `folders`: the phase's starting point."""
    seen: dict[tuple[int, int], int] = {}
    _walk(folders, seen, {}, cap=1 << 62)
    return seen


def _walk(folders: tuple[str, ...], found: dict, base: dict, cap: int) -> int:
    """Add every entry below `folders` to `found`; returns the count of new entries (stops past `cap`)."""
    stack, new = list(folders), 0
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed meanwhile, or not a folder
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in found:
                continue
            found[key] = _size(info)
            new += key not in base
            if new > cap:
                return new
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return new


def _held(pid: int, found: dict) -> None:
    """Deleted files the process still holds open (invisible to the walk, yet on disk)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return  # ended, or not ours to read: the walk still bounds what is visible
    for name in names:
        try:
            info = os.stat(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 0:
            found.setdefault((info.st_dev, info.st_ino), _size(info))


class Quota:
    """One phase's quota on `folders`, measured against the state when it was made; `over()` is cheap to call often:
    it measures only when a tick has passed (later when the last measurement was slow)."""

    def __init__(self, folders: tuple[str, ...], limit_bytes: int, limit_files: int) -> None:
        self.folders, self.limit_bytes, self.limit_files = folders, limit_bytes, limit_files
        self.base = snapshot(folders)
        self.due = 0.0

    def allow(self, paths) -> None:
        """Files the parent just wrote (a worker's rows for its next request): they count as already there."""
        for path in paths:
            try:
                info = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            self.base[(info.st_dev, info.st_ino)] = _size(info)

    def measure(self, pid: int | None = None) -> Usage:
        found: dict[tuple[int, int], int] = {}
        files = _walk(self.folders, found, self.base, cap=self.limit_files)
        if pid is not None:
            _held(pid, found)
        added = sum(max(size - self.base.get(key, 0), 0) for key, size in found.items())
        return Usage(added, files)

    def over(self, pid: int | None = None, *, now: bool = False) -> dict | None:
        """The facts of an overrun ({bytes, files, limit_bytes, limit_files}), or None while within the quota."""
        started = time.monotonic()
        if not now and started < self.due:
            return None
        usage = self.measure(pid)
        spent = time.monotonic() - started
        self.due = time.monotonic() + max(TICK_S, 10 * spent)  # the walk takes at most a tenth of the server's time
        if usage.bytes > self.limit_bytes or usage.files > self.limit_files:
            return {"bytes": usage.bytes, "files": usage.files, "limit_bytes": self.limit_bytes,
                    "limit_files": self.limit_files}
        return None

    def wait_s(self, remaining: float) -> float:
        """How long the server may block before the next measurement is due."""
        return max(min(remaining, self.due - time.monotonic()), 0.0)


def describe(phase: str, facts: dict) -> str:
    """One line for the parent: what was written, and the limit."""
    def mib(n: object) -> str:
        return f"{n / 2**20:,.1f} MiB" if isinstance(n, int) else "?"
    return (f"{phase} wrote {mib(facts.get('bytes'))} in {facts.get('files')} new files in its sandbox folder, over "
            f"the quota of {mib(facts.get('limit_bytes'))} and {facts.get('limit_files')} files; its process group "
            "was killed")
