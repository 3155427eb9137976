"""The policy phases a contained child runs: fit, decide, and a decide worker's loop.

Everything here runs after _child has contained the process, and is the only code that touches the candidate:
it loads policy.py as a fresh module named ``policy``, unpickles the model (decide, worker), calls the policy's
functions and holds what they return to the contract (``_as_decisions``). What leaves goes out as inert files
written without following links (meta.json, model.pkl, out-<i>.npy with allow_pickle=False) or, for a worker,
one JSON line of facts per request on its answer pipe. Decide failures are named from a closed vocabulary
(stage, row-set index, builtin exception names), never from candidate text (see _outcome).

The fork server imports this module (through _child) before it forks, and pre-reads its source for tracebacks
(the child may not read it; see _server.main).
"""
from __future__ import annotations

import builtins
import inspect
import io
import json
import numbers
import os
import pickle
import sys
import time
import traceback
import types

import numpy as np
import pandas as pd

from optimizer.sandbox import _channel
from optimizer.sandbox import _protocol as P


class _Refused(Exception):
    """The policy broke the contract in a way the runner names precisely."""

    def __init__(self, text: str, **facts) -> None:
        super().__init__(text)
        self.facts = facts


def _read_rows(name: str) -> pd.DataFrame:
    """A row set as the parent pickled it (see _rowfiles)."""
    with open(name, "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the parent's bytes


def _with_history(decide):
    """decide as (model, rows, history): a policy whose decide takes a third argument gets the earlier events it
    may read (an empty frame of the rows' columns when none were given); a two-argument decide gets none."""
    try:
        params = list(inspect.signature(decide).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return lambda model, rows, history: decide(model, rows)
    return lambda model, rows, history: decide(model, rows, rows.iloc[:0].copy() if history is None else history)


def _load_policy() -> types.ModuleType:
    path = os.path.abspath(P.POLICY_FILE)
    with open(path, "rb") as handle:
        source = handle.read()
    module = types.ModuleType("policy")
    module.__file__ = path
    sys.modules["policy"] = module  # pickles of classes defined in the policy resolve here
    exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    return module


def _function(module: types.ModuleType, name: str):
    function = getattr(module, name, None)
    if not callable(function):
        raise _Refused(f"policy.py defines no callable {name}()", reason="missing", function=name)
    return function


def _device(module: types.ModuleType, available: str) -> str:
    declared = getattr(module, "DEVICE", None)
    if isinstance(declared, str) and declared == "auto":
        # resolved before fit/decide, so xgboost never guesses and warns
        module.DEVICE = available  # type: ignore[attr-defined]  # the policy module's global, set at run time
        return available
    return "cuda" if isinstance(declared, str) and declared == "cuda" and available == "cuda" else "cpu"


def _constants(module: types.ModuleType, names: list) -> dict:
    found = {}
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            continue
        value = getattr(module, name, None)
        if isinstance(value, np.generic):
            value = value.item()
        if type(value) in (bool, int, float) or (
                type(value) is str and len(value) <= P.MAX_CONSTANT_CHARS):
            found[name] = value
    return found


def _write_new(name: str, data: bytes) -> None:
    """Write a fresh file; a symlink the candidate planted under this name is removed, not followed."""
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _is_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "bad_alloc" in text or "Cannot allocate memory" in text or "Unable to allocate" in text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    line = f"{name}: {text}" if text else name
    return line if len(line) <= 300 else line[:297] + "..."


def fit(request: dict) -> int:
    """The fit phase: fit(train), its model pickled to model.pkl; meta.json says how it went."""
    meta: dict = {"status": "crash"}
    stage = "reading the train rows"
    try:
        train = _read_rows(P.TRAIN_FILE)
        stage = "loading policy.py"
        policy = _load_policy()
        meta["device"] = _device(policy, request["device"])
        fit = _function(policy, "fit")
        stage = "fit"
        start = time.perf_counter()
        model = fit(train)
        meta["fit_seconds"] = time.perf_counter() - start
        del train
        stage = "pickling the model fit returned"
        _write_new(P.MODEL_FILE, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        meta["constants"] = _constants(policy, request["constants"])
        meta["status"] = "ok"
    except _Refused as exc:
        meta["error"] = str(exc)
    except BaseException as exc:  # noqa: BLE001 - any failure of candidate code is a result
        traceback.print_exc()  # fit output is the candidate's own log (train rows only)
        if _is_memory(exc):
            meta["status"] = "memory"
            meta["error"] = f"{stage} ran out of memory ({type(exc).__name__})"
        else:
            meta["error"] = f"{stage} raised {_one_line(exc)}"
    _write_new(P.META_FILE, json.dumps(meta).encode())
    return {"ok": P.EXIT_OK, "memory": P.EXIT_MEMORY}.get(meta["status"], P.EXIT_CRASH)


def _type_name(value) -> str:
    name = type(value).__name__
    module = type(value).__module__ or ""
    trusted = module == "builtins" or module.split(".")[0] in ("numpy", "pandas")
    return name if trusted and name in P.TYPE_NAMES else "other"


def _as_decisions(out, expected: int) -> np.ndarray:
    if out is None or isinstance(out, (str, bytes, dict, set, frozenset, pd.DataFrame)) or np.isscalar(out):
        raise _Refused("type", reason="type", type=_type_name(out))
    try:
        array = np.asarray(out)
    except Exception:  # noqa: BLE001
        raise _Refused("type", reason="type", type=_type_name(out)) from None
    if array.ndim != 1:
        raise _Refused("shape", reason="shape", shape=[int(n) for n in array.shape[:4]])
    if len(array) != expected:
        raise _Refused("length", reason="length", expected=expected, actual=int(len(array)))
    kind = array.dtype.kind
    if kind in "biuf":
        return array.astype(np.float64)
    if kind in "US":
        return array.astype(str)
    if kind == "O":
        if all(isinstance(v, numbers.Real) and not isinstance(v, (str, bytes)) for v in array):
            return array.astype(np.float64)
        return np.asarray(array, dtype=str)
    raise _Refused("dtype", reason="dtype", dtype=array.dtype.str[:12])


def _exception_name(exc: BaseException) -> str:
    kind = type(exc)
    builtin = kind.__module__ == "builtins" and getattr(builtins, kind.__name__, None) is kind
    return kind.__name__ if builtin else "non-builtin"


def decide(request: dict) -> int:
    """The decide phase: decide(model, rows[, history]) per row set, each to out-<i>.npy; meta.json says how it went."""
    meta: dict = {"status": "crash"}
    stage, index, total = "load_policy", None, 0.0
    try:
        policy = _load_policy()
        meta["device"] = _device(policy, request["device"])
        decide = _with_history(_function(policy, "decide"))
        stage = "load_model"
        with open(P.MODEL_FILE, "rb") as handle:
            model = pickle.load(handle)  # noqa: S301 - candidate bytes, unpickled inside the child
        histories = set(request.get("history") or ())
        for index in range(int(request["count"])):
            stage = "read_rows"
            rows = _read_rows(P.rows_file(index))
            history = _read_rows(P.history_file(index)) if index in histories else None
            if isinstance(rows, list):  # events decided one at a time (the parity guard), each with its history
                parts = []
                for j, one in enumerate(rows):
                    stage = "decide"
                    start = time.perf_counter()
                    out = decide(model, one, None if history is None else history[j])
                    total += time.perf_counter() - start
                    stage = "convert"
                    parts.append(_as_decisions(out, len(one)))
                array = np.concatenate(parts) if parts else np.zeros(0)
            else:
                stage = "decide"
                start = time.perf_counter()
                out = decide(model, rows, history)
                total += time.perf_counter() - start
                stage = "convert"
                array = _as_decisions(out, len(rows))
            stage = "write"
            del rows, history, out
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            _write_new(P.out_file(index), buffer.getvalue())
        index = None
        meta.update(status="ok", decide_seconds=total,
                    constants=_constants(policy, request["constants"]))
    except _Refused as exc:
        meta.update(exc.facts)
    except BaseException as exc:  # noqa: BLE001
        if _is_memory(exc):
            meta.update(status="memory", reason="memory")
        else:
            meta.update(reason="exception", exception=_exception_name(exc))
    if meta["status"] != "ok":
        meta.update(stage=stage, index=index)
    _write_new(P.META_FILE, json.dumps(meta).encode())
    return {"ok": P.EXIT_OK, "memory": P.EXIT_MEMORY}.get(meta["status"], P.EXIT_CRASH)


def _send(facts: dict) -> None:
    line = json.dumps(facts).encode() + b"\n"
    view = memoryview(line)
    while view:
        view = view[os.write(_channel.REQUEST_FD, view):]


def _requests():
    """The worker's requests, one JSON line each, until the server closes the pipe."""
    pending = bytearray()
    while True:
        while b"\n" not in pending:
            chunk = os.read(_channel.REPLY_FD, 1 << 16)
            if not chunk:
                return
            pending += chunk
        cut = pending.index(b"\n")
        line = bytes(pending[:cut])
        del pending[:cut + 1]
        yield json.loads(line)


def work(request: dict) -> int:
    """A persistent decide worker: load the policy and the model once, then decide one row file per request.

    Each answer is one line of facts in the decide vocabulary (see _outcome); the rows arrive as
    rows.pkl and the decisions leave as out-0.npy, both in the workdir. A failing request is
    answered and the worker goes on; the server ends it on a violation or an overrun. The rows come pickled
    (the parent's bytes, loaded here: pickle only ever flows into the sandbox), ten times faster than Parquet."""
    stage = "load_policy"
    try:
        policy = _load_policy()
        device = _device(policy, request["device"])
        decide = _with_history(_function(policy, "decide"))
        stage = "load_model"
        with open(P.MODEL_FILE, "rb") as handle:
            model = pickle.load(handle)  # noqa: S301 - candidate bytes, unpickled inside the child
    except _Refused as exc:
        _send({"status": "crash", "stage": stage, **exc.facts})
        return P.EXIT_CRASH
    except BaseException as exc:  # noqa: BLE001
        _send({"status": "memory", "reason": "memory", "stage": stage} if _is_memory(exc)
              else {"status": "crash", "reason": "exception", "exception": _exception_name(exc), "stage": stage})
        return P.EXIT_CRASH
    _send({"status": "ready", "device": device})
    for request in _requests():
        _send(_work_one(policy, decide, model, request.get("constants") or [], bool(request.get("history"))))
    return P.EXIT_OK


def _work_one(policy: types.ModuleType, decide, model, constants: list, with_history: bool) -> dict:
    stage = "read_rows"
    try:
        rows, history = _read_rows(P.WORKER_ROWS) if with_history else (_read_rows(P.WORKER_ROWS), None)
        stage = "decide"
        start = time.perf_counter()
        out = decide(model, rows, history)
        seconds = time.perf_counter() - start
        stage = "convert"
        array = _as_decisions(out, len(rows))
        stage = "write"
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        _write_new(P.out_file(0), buffer.getvalue())
        return {"status": "ok", "decide_seconds": seconds, "constants": _constants(policy, constants)}
    except _Refused as exc:
        return {"status": "crash", "stage": stage, "index": 0, **exc.facts}
    except BaseException as exc:  # noqa: BLE001
        if _is_memory(exc):
            return {"status": "memory", "reason": "memory", "stage": stage, "index": 0}
        return {"status": "crash", "reason": "exception", "exception": _exception_name(exc), "stage": stage,
                "index": 0}
