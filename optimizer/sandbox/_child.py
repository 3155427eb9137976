"""The trusted runner in each forked child: contain this process, then run one policy phase (see _phases).

Order matters: own process group, clean fds, private workdir, memory limit, unprivileged uid,
Landlock, then the audit hook. Only after that is candidate code loaded (the policy source, then,
for decide, the pickled model: a __reduce__ that runs code on load runs inside all the layers).
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import signal
import sys
import tempfile
import traceback

from optimizer.sandbox import _audit, _channel, _landlock, _phases
from optimizer.sandbox import _protocol as P

RECORD_FD = 3  # the audit pipe's fixed number in the child
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # resolved in the server, before any hook exists


def run(request: dict, record_fd: int, log_fd: int, channel: tuple[int, int] | None = None) -> None:
    """Never returns: the child ends with os._exit, skipping any atexit hook a candidate added.

    `channel` is (request write end, reply read end) of the model broker's pipes, or None; for a
    worker, (answer write end, request read end) of its own pipes, at the same fixed numbers."""
    code = P.EXIT_SETUP
    try:
        _contain(request, record_fd, log_fd, channel)
        phase = request["phase"]
        code = (_phases.fit(request) if phase == "fit" else _phases.work(request) if phase == "worker"
                else _phases.decide(request))
    except BaseException:  # noqa: BLE001 - the exit code carries the outcome
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _contain(request: dict, record_fd: int, log_fd: int, channel: tuple[int, ...] | None) -> None:
    os.setsid()  # own process group: the server kills the whole group on overrun
    # Move every pipe end above the fixed numbers first, so placing one cannot overwrite another.
    record_fd = fcntl.fcntl(record_fd, fcntl.F_DUPFD, 64)
    log_fd = fcntl.fcntl(log_fd, fcntl.F_DUPFD, 64) if log_fd >= 0 else -1
    channel = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in channel) if channel else None
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(log_fd if log_fd >= 0 else null, 1)  # decide: output goes nowhere, by construction
    os.dup2(log_fd if log_fd >= 0 else null, 2)
    os.dup2(record_fd, RECORD_FD)
    if channel:
        os.dup2(channel[0], _channel.REQUEST_FD)
        os.dup2(channel[1], _channel.REPLY_FD)
    os.closerange(_channel.REPLY_FD + 1, 1 << 16)  # the server's request pipe and anything else it holds
    if not channel:
        os.closerange(RECORD_FD + 1, _channel.REPLY_FD + 1)
    sys.modules[_channel.MODULE_NAME] = _channel.module(connected=bool(channel) and request["phase"] != "worker")
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    workdir = request["workdir"]
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    tempfile.tempdir = workdir
    os.umask(0o077)
    _limit_resources(request["memory_mb"], request["data_limit"], request["disk_bytes"])
    if request["uid"] is not None:
        os.setgroups([])
        os.setgid(request["gid"])
        os.setuid(request["uid"])
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # set after setuid, which clears it
    if os.getppid() != request["server_pid"]:
        os._exit(P.EXIT_SETUP)  # the server died before the death signal was armed
    if request["landlock_abi"]:
        rules = [(path, _landlock.READ) for path in request["read_roots"]]
        rules += [(path, _landlock.DEVICE_RW) for path in request["device_paths"]]
        rules += [("/proc/self", _landlock.READ), (workdir, _landlock.WORKDIR)]
        if request["private_shm"]:  # semaphores for thread pools; wiped after every request
            rules.append(("/dev/shm", _landlock.WORKDIR))
        _landlock.restrict(rules, request["landlock_abi"])
    _audit.install(record_fd=RECORD_FD, workdir=workdir, read_roots=tuple(request["read_roots"]),
                   list_roots=tuple(request["list_roots"]),
                   trusted_code=tuple(request["trusted_code"]), ctypes_dir=request["ctypes_dir"])


def _limit_resources(memory_mb: int, data_limit: bool, disk_bytes: int) -> None:
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    page = os.sysconf("SC_PAGE_SIZE")
    extra = memory_mb * 1024 * 1024
    # CUDA reserves huge address ranges it never touches: on a GPU host cap the data segment instead
    if data_limit:
        limit = int(fields[5]) * page + extra
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    else:
        limit = int(fields[0]) * page + extra
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    file_cap = min(max(extra, 256 * 1024 * 1024), disk_bytes + 1)  # no one file passes the phase's write quota
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_cap, file_cap))
