"""Turn process facts and the child's files into a status and a one-line error, in the parent.

Everything read here is untrusted: meta.json may have been forged by a candidate thread, .npy files
swapped for symlinks. So values are type-checked, decide messages are built from a closed vocabulary,
and arrays are loaded with allow_pickle=False from files opened without following links.
"""
from __future__ import annotations

import builtins
import json
import math
import os
import re
import signal
import stat
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from optimizer.sandbox import _protocol as P
from optimizer.sandbox import _quota
from optimizer.sandbox._results import SandboxStatus

_META_CAP = 1 << 20
_DTYPE = re.compile(r"^[<>|=]?[A-Za-z]\d*(\[[A-Za-z0-9]+\])?$")


def _open_plain(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise ValueError(f"{path.name} is not a plain file")
    return handle


def read_meta(work: Path) -> dict:
    try:
        with _open_plain(work / P.META_FILE) as handle:
            meta = json.loads(handle.read(_META_CAP))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def seconds(value) -> float:
    return float(value) if type(value) in (int, float) and math.isfinite(value) and value >= 0 else 0.0


def device(meta: dict) -> str:
    return "cuda" if meta.get("device") == "cuda" else "cpu"


def constants(meta: dict, requested) -> dict:
    found = meta.get("constants")
    if not isinstance(found, dict):
        return {}
    kept = {}
    for name in requested:
        value = found.get(name)
        if type(value) in (bool, int, float) or (
                type(value) is str and len(value) <= P.MAX_CONSTANT_CHARS):
            kept[name] = value
    return kept


def _process_status(phase: str, reply: dict | None, lost: str, budget_s: float,
                    memory_mb: int) -> tuple[SandboxStatus, str] | None:
    """The verdict that follows from process facts alone, or None when the files must decide."""
    if reply is None:
        return SandboxStatus.CRASH, lost
    violations = reply.get("violations") or []
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return SandboxStatus.VIOLATION, f"{phase} attempted a forbidden access: {violations[0]}{more}"
    stop = reply.get("broker_stop")
    if isinstance(stop, str) and stop:  # the parent's own words: safe with holdout rows present
        return SandboxStatus.VIOLATION, f"{phase} was stopped by the model broker: {stop}"
    if reply.get("exit") == P.EXIT_UNRECORDED:
        return SandboxStatus.VIOLATION, f"{phase} tampered with the sandbox's audit record channel"
    if isinstance(reply.get("quota"), dict):  # the server's own measurement: safe with holdout rows present
        return SandboxStatus.DISK, _quota.describe(phase, reply["quota"])
    if reply.get("timed_out"):
        return SandboxStatus.TIMEOUT, f"{phase} exceeded its {budget_s:g} s budget; its process group was killed"
    if reply.get("exit") == P.EXIT_MEMORY:
        return SandboxStatus.MEMORY, f"{phase} ran out of memory (limit {memory_mb} MB above the server's baseline)"
    sig = reply.get("signal")
    if sig == signal.SIGKILL:
        return SandboxStatus.MEMORY, (f"{phase} was killed by SIGKILL, most likely out of memory "
                          f"(limit {memory_mb} MB)")
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return SandboxStatus.CRASH, f"{phase} died from signal {name}"
    if reply.get("exit") == P.EXIT_SETUP:
        return SandboxStatus.CRASH, f"the sandbox could not set up the {phase} process (see the server log)"
    code = reply.get("exit")
    if code not in (P.EXIT_OK, P.EXIT_CRASH):
        return SandboxStatus.CRASH, f"the policy ended the {phase} process with exit code {code} before it finished"
    return None


def fit_status(reply, meta: dict, lost: str, budget_s: float, memory_mb: int) -> tuple[SandboxStatus, str]:
    settled = _process_status("fit", reply, lost, budget_s, memory_mb)
    if settled:
        return settled
    error = meta.get("error")
    error = " ".join(error.split())[:400] if isinstance(error, str) else ""
    if reply["exit"] == P.EXIT_OK and meta.get("status") == "ok":
        return SandboxStatus.OK, ""
    return SandboxStatus.CRASH, error or "the fit process ended without writing its result"


def _builtin_exception(name) -> str:
    kind = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return name
    return "an exception of a non-builtin type"


def decide_status(reply, meta: dict, lost: str, budget_s: float, memory_mb: int,
                  names: list[str]) -> tuple[SandboxStatus, str]:
    settled = _process_status("decide", reply, lost, budget_s, memory_mb)
    if settled:
        return settled
    if reply["exit"] == P.EXIT_OK and meta.get("status") == "ok":
        return SandboxStatus.OK, ""
    if meta.get("status") == "memory":  # a worker answers a MemoryError and lives on
        return SandboxStatus.MEMORY, f"decide ran out of memory (limit {memory_mb} MB above the server's baseline)"
    # The process ran to its end and the policy returned the wrong thing: the output contract's business.
    status = SandboxStatus.OUTPUT if meta.get("reason") in OUTPUT_REASONS else SandboxStatus.CRASH
    return status, _decide_error(meta, names)


def _decide_error(meta: dict, names: list[str]) -> str:
    """One line from structured facts only: candidate text never reaches it (holdout was present)."""
    index = meta.get("index")
    where = (f" for row set {names[index]!r}" if type(index) is int and 0 <= index < len(names)
             else "")
    reason, stage = meta.get("reason"), meta.get("stage")

    def number(key: str) -> int | None:
        value = meta.get(key)
        return value if type(value) is int else None

    if reason == "missing" and meta.get("function") in ("fit", "decide"):
        return f"policy.py defines no callable {meta['function']}()"
    if reason == "exception" and stage in P.DECIDE_STAGES:
        what = _builtin_exception(meta.get("exception"))
        doing = {"load_policy": "loading policy.py", "load_model": "loading the fitted model",
                 "read_rows": "reading the rows", "decide": "decide", "convert":
                 "converting the decisions", "write": "writing the decisions"}[stage]
        return f"{doing} raised {what}{where} (details discarded: holdout rows were present)"
    if reason == "type":
        kind = meta.get("type") if meta.get("type") in P.TYPE_NAMES else "other"
        return f"decide returned a {kind}{where}; expected one value per row (array-like)"
    if reason == "shape" and isinstance(meta.get("shape"), list):
        shape = tuple(n for n in meta["shape"] if type(n) is int)
        return f"decide returned an array of shape {shape}{where}; expected a flat array (n,)"
    if reason == "length" and number("expected") is not None and number("actual") is not None:
        return (f"decide returned {number('actual')} values{where}; expected {number('expected')}"
                " (one per row, same order)")
    if reason == "dtype" and isinstance(meta.get("dtype"), str) and _DTYPE.match(meta["dtype"]):
        return f"decide returned dtype {meta['dtype']}{where}; expected numbers or strings"
    return "the decide process ended without writing its result"


OUTPUT_REASONS = ("type", "shape", "length", "dtype")  # what decide returned, not how its process ended


def load_decisions(work: Path, names: list[str],
                   rows: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str, SandboxStatus]:
    """Load and re-check every decision array: numbers as float64 or fixed-width strings only (`rows`: per name, its
    rows or their count).
    Returns (decisions, problem, status): status "output" for a wrong shape or dtype, "crash" for a
    missing or unreadable file."""
    decisions = {}
    for index, name in enumerate(names):
        expected = rows[name] if isinstance(rows[name], int) else len(rows[name])
        try:
            with _open_plain(work / P.out_file(index)) as handle:
                array = np.load(handle, allow_pickle=False)
        except (OSError, ValueError) as exc:
            return {}, (f"decisions for row set {name!r} are missing or unreadable "
                        f"({type(exc).__name__})"), SandboxStatus.CRASH
        if array.ndim != 1 or len(array) != expected:
            return {}, (f"decisions for row set {name!r} have shape {array.shape}; "
                        f"expected ({expected},)"), SandboxStatus.OUTPUT
        if array.dtype != np.float64 and array.dtype.kind != "U":
            return {}, (f"decisions for row set {name!r} have dtype {array.dtype}; "
                        "expected float64 or str"), SandboxStatus.OUTPUT
        decisions[name] = array
    return decisions, "", SandboxStatus.OK
