"""Which containment layers this machine offers, and how the fork server is launched with them."""
from __future__ import annotations

import functools
import glob
import grp
import os
import pwd
import shlex
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass

ISOLATION_MODES = ("auto", "strict", "hook-only")

# Read-only system files the scientific stack touches (shared libraries, time zones, CPU facts).
SYSTEM_READ = (
    "/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/usr/share/zoneinfo",
    "/etc/localtime", "/etc/timezone", "/etc/ld.so.cache", "/dev/null", "/dev/zero",
    "/dev/urandom", "/dev/random", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node", "/sys/fs/cgroup", "/sys/kernel/mm/transparent_hugepage",
)
# What a CUDA runtime needs on top, only when a GPU is visible.
GPU_READ = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
            "/dev/nvidia-caps", "/proc/driver/nvidia", "/sys/bus/pci", "/sys/devices")


def python_roots() -> tuple[str, ...]:
    """The interpreter, its standard library and site-packages: readable, never writable."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths.update(site.getsitepackages())
    found = set()
    for path in paths:
        for variant in (os.path.abspath(path), os.path.realpath(path)):
            if os.path.isdir(variant):
                found.add(variant)
    return _outermost(found)


def _outermost(paths) -> tuple[str, ...]:
    ordered = sorted(paths)
    kept: list[str] = []
    for path in ordered:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


def gpu_paths() -> tuple[str, ...]:
    return GPU_READ + tuple(sorted(glob.glob("/dev/nvidia[0-9]*")))


def _others_can_enter(path: str) -> bool:
    """True when an unprivileged uid can reach and read `path` (every ancestor o+x, itself o+rx)."""
    parts = os.path.realpath(path).split("/")
    for depth in range(2, len(parts) + 1):
        mode = os.stat("/".join(parts[:depth]) or "/").st_mode
        need = stat.S_IXOTH | (stat.S_IROTH if depth == len(parts) else 0)
        if mode & need != need:
            return False
    return True


def _hidden_ancestor(path: str) -> str | None:
    """The outermost ancestor of `path` an unprivileged uid cannot enter (e.g. /root), if any."""
    parts = os.path.realpath(path).split("/")
    for depth in range(2, len(parts)):
        ancestor = "/".join(parts[:depth])
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


@dataclass(frozen=True)
class Probe:
    """What this machine offers; detected once per process."""

    root: bool
    netns: tuple[str, ...] | None  # the unshare prefix that works, or None
    netns_reason: str
    landlock_abi: int
    uid: int
    gid: int
    uid_reason: str  # "" when the privilege drop can be used
    remounts: tuple[tuple[str, tuple[str, ...]], ...]  # (hidden ancestor, python roots under it)
    gpu: bool


def _try(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when unavailable."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        version = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def _gpu_visible() -> bool:
    if os.path.exists("/dev/nvidia0"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


@functools.lru_cache(maxsize=None)
def probe() -> Probe:
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    netns, netns_reason = None, "no unshare binary"
    if unshare:
        prefix = (unshare, "-n") if root else (unshare, "-rn")
        # the server also mounts a private /dev/shm there (see server_command): try exactly that
        probe_cmd = [*prefix, "-m", "--propagation", "private", "--", "/bin/sh", "-c",
                     "mount -t tmpfs -o size=1m ratchet-probe /dev/shm"]
        netns = prefix if _try(probe_cmd) else None
        netns_reason = "" if netns else f"`{' '.join(prefix)} -m` with a tmpfs mount failed"
    try:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        try:
            gid = grp.getgrnam("nogroup").gr_gid
        except KeyError:
            pass
    except KeyError:
        uid = gid = 65534
    uid_reason = "" if root else "not running as root"
    groups: dict[str, list[str]] = {}
    if root:
        for path in python_roots():
            if _others_can_enter(path):
                continue
            ancestor = _hidden_ancestor(path)
            if ancestor is None:
                uid_reason = f"python install {path} is not readable by other users"
            else:
                groups.setdefault(ancestor, []).append(path)
        if groups and not uid_reason:
            # the server's private mount namespace re-exposes only the install (see server_command)
            if netns is None:
                uid_reason = f"python install under {min(groups)} is hidden and no namespace is possible"
    remounts = tuple((a, tuple(sorted(p))) for a, p in sorted(groups.items()))
    return Probe(root, netns, netns_reason, landlock_abi(), uid, gid, uid_reason, remounts,
                 _gpu_visible())


@dataclass(frozen=True)
class Plan:
    """The layers one Sandbox will use, and the command that starts its server."""

    layers: tuple[str, ...]
    skipped: dict
    netns: tuple[str, ...] | None
    drop_uid: bool
    uid: int
    gid: int
    landlock_abi: int
    remounts: tuple


def plan(isolation: str) -> Plan:
    if isolation not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
    found = probe()
    full = isolation != "hook-only"
    skipped: dict[str, str] = {}
    netns = found.netns if full else None
    drop = full and found.root and not found.uid_reason
    abi = found.landlock_abi if full else 0
    if not full:
        skipped = {"netns": "hook-only", "uid-drop": "hook-only", "landlock": "hook-only"}
    else:
        if netns is None:
            skipped["netns"] = found.netns_reason
        if not drop:
            skipped["uid-drop"] = found.uid_reason
        if not abi:
            skipped["landlock"] = "kernel has no Landlock"
    if isolation == "strict" and skipped:
        from optimizer.base.errors import RatchetError

        missing = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise RatchetError(f"sandbox isolation 'strict' needs every OS layer ({missing})")
    layers = [name for name, on in (("netns", netns is not None), ("uid-drop", drop),
                                     ("landlock", abi > 0)) if on]
    layers += ["audit-hook", "rlimit-data" if found.gpu else "rlimit-as", "scrubbed-env",
               "subreaper"]
    return Plan(tuple(layers), skipped, netns, drop, found.uid, found.gid, abi,
                found.remounts if drop else ())


def server_env(home: str) -> dict[str, str]:
    """A minimal environment: nothing inherited, so no API key or seal key can reach a candidate."""
    threads = str(len(os.sched_getaffinity(0)))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": home, "TMPDIR": home, "USER": "sandbox", "LOGNAME": "sandbox",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        # Sleep rather than spin when idle: spinning OpenMP threads collapse throughput on a busy host.
        "OMP_WAIT_POLICY": "PASSIVE",
        "MALLOC_ARENA_MAX": "2",  # fewer per-thread arenas: address-space limits stay meaningful
    }
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # device selection, not a secret
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return env


def server_command(chosen: Plan, keep_visible: tuple[str, ...] = ()) -> list[str]:
    """`python -m optimizer.sandbox._server` inside fresh network and mount namespaces.

    The mount namespace gives the sandbox its own /dev/shm (thread pools need POSIX semaphores;
    the server empties it after every request, so no run can leave data for the next) and, when
    the Python install sits in a folder others cannot enter (e.g. /root), covers that folder with
    an empty tmpfs and mounts back only the install plus `keep_visible` (this package, the
    sandbox folder). Mounts are staged in the fresh /dev/shm, outside any folder being covered.
    """
    argv = [sys.executable, "-P", "-s", "-B", "-m", "optimizer.sandbox._server"]
    if chosen.netns is None:
        return argv
    q = shlex.quote
    lines = ["set -e", "mount -t tmpfs -o mode=1777,size=256m,nosuid,nodev,noexec ratchet-shm /dev/shm"]
    for index, (ancestor, roots) in enumerate(chosen.remounts):
        extra = [p for p in keep_visible if p.startswith(ancestor.rstrip("/") + "/")]
        shown = _outermost(set(roots) | set(extra))
        stages = [f"/dev/shm/.stage-{index}-{j}" for j in range(len(shown))]
        for path, stage in zip(shown, stages):
            lines += [f"mkdir -p {q(stage)}", f"mount --bind {q(path)} {q(stage)}"]
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m ratchet-hidden {q(ancestor)}")
        for path, stage in zip(shown, stages):
            lines += [f"mkdir -p {q(path)}", f"mount --move {q(stage)} {q(path)}",
                      f"rmdir {q(stage)}"]
    lines.append('exec "$@"')
    return [*chosen.netns, "-m", "--propagation", "private", "--", "/bin/sh", "-c",
            "\n".join(lines), "ratchet-sandbox", *argv]


def describe_isolation(isolation: str = "auto") -> dict:
    """What layers a Sandbox would use here, and why any is missing (for `ratchet doctor`)."""
    chosen = plan(isolation) if isolation != "strict" else plan("auto")
    found = probe()
    return {
        "isolation": isolation,
        "layers": list(chosen.layers),
        "skipped": dict(chosen.skipped),
        "root": found.root,
        "network_namespace": " ".join(chosen.netns) if chosen.netns else None,
        "unprivileged_uid": found.uid if chosen.drop_uid else None,
        "landlock_abi": chosen.landlock_abi,
        "hidden_mounts": [a for a, _ in chosen.remounts],
        "gpu_visible": found.gpu,
        "python_roots": list(python_roots()),
    }
