"""The parent side: stages each phase's inputs in a workdir, asks the fork server to run it (see _connection), and
reads back only inert files (JSON, .npy, model bytes)."""
from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from optimizer.base.errors import RatchetError
from optimizer.sandbox import _isolation, _leftovers, _outcome
from optimizer.sandbox import _protocol as P
from optimizer.sandbox._channel import Broker
from optimizer.sandbox._connection import Connection
from optimizer.sandbox._quota import DISK_MB, MAX_FILES
from optimizer.sandbox._results import DecideResult, FitResult, ModelHandle, SandboxStatus, sha256_of
from optimizer.sandbox._rowfiles import CACHED_FROM, RowFiles, write_rows
from optimizer.sandbox._worker import Worker

DEFAULT_PRELOAD = ("numpy", "pandas", "pyarrow", "sklearn", "xgboost", "scipy")


class Sandbox:
    """Runs policy code in fresh, contained processes forked from a warm server.

    Use as a context manager. `layers` names the isolation layers active on this machine,
    `device` is "cuda" or "cpu" as the server found it. Model handles live in this sandbox's
    folder and are removed by close(): copy `handle.path` elsewhere to keep a model.
    """

    def __init__(self, *, memory_mb: int = 4096, isolation: str = "auto", preload: tuple[str, ...] = DEFAULT_PRELOAD,
                 broker: Broker | None = None, disk_mb: float = DISK_MB, max_files: int = MAX_FILES) -> None:
        if memory_mb <= 0 or not 0 < disk_mb <= 1 << 20 or not 0 < max_files <= 10**7:
            raise ValueError("memory_mb, disk_mb (at most 1 TiB) and max_files must be positive")
        self.memory_mb = int(memory_mb)
        self.disk = (int(disk_mb * 2**20), int(max_files))  # the write quota of every phase (see _quota)
        self.preload = tuple(preload)
        self._plan = _isolation.plan(isolation)
        self.layers: tuple[str, ...] = self._plan.layers
        self.device = "cpu"
        self._lock = threading.RLock()
        self._connection = Connection()  # the fork server's process and the lines to and from it
        self._base: Path | None = None
        self._count = 0
        self.preload_errors: dict[str, str] = {}  # library -> why the server could not import it
        self.broker = broker  # answers policies' model requests (see _channel); None: no channel
        self._rows: RowFiles | None = None  # how row sets reach a phase's workdir

    @property
    def _process(self) -> subprocess.Popen | None:
        """The fork server's process (None before start and after close)."""
        return self._connection.process

    @property
    def _folder(self) -> Path:
        """The base folder; start() makes it, and every phase starts the sandbox first."""
        assert self._base is not None, "the sandbox is started before its folder is used"
        return self._base

    @property
    def _row_files(self) -> RowFiles:
        """How row sets reach a workdir; start() makes it, and every phase starts the sandbox first."""
        assert self._rows is not None, "the sandbox is started before rows are placed"
        return self._rows

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        with self._lock:
            if self._base is None:
                _leftovers.clean()  # what a killed run left: labelled rows, models, holdout rows mid-decide
                self._base = _leftovers.make_folder()
                # With uid-drop the child (nobody) must pass through to its own workdir, and may list nothing.
                os.chmod(self._base, 0o711 if self._plan.drop_uid else 0o700)
                (self._base / "models").mkdir(mode=0o700)
                self._rows = RowFiles(self._base / "rows", link=self._plan.drop_uid)
            if not self._connection.running():
                self._launch()

    def close(self) -> None:
        with self._lock:
            self._connection.close()  # stops the server, kills what is left and removes the base folder (models too)
            self._base = None

    def kill(self) -> None:
        """End the server and its children now; a request in flight (another thread's) returns as a crash."""
        self._connection.kill()

    def _launch(self) -> None:
        config = {"preload": list(self.preload), "memory_mb": self.memory_mb,
                  "uid": self._plan.uid if self._plan.drop_uid else None, "gid": self._plan.gid,
                  "landlock_abi": self._plan.landlock_abi, "data_limit": "rlimit-data" in self.layers,
                  "private_shm": self._plan.netns is not None, "disk_bytes": self.disk[0], "disk_files": self.disk[1]}
        ready = self._connection.launch(self, self._plan, str(self._base), config)
        self.device = ready["device"]
        self.preload_errors = dict(ready.get("preload_errors", {}))
        if not ready.get("subreaper"):
            self.layers = tuple(layer for layer in self.layers if layer != "subreaper")

    def _run(self, request: dict, budget_s: float) -> tuple[dict | None, str]:
        """One request to the server, started afresh if it is not running: (its reply, "") or (None, why it was
        lost)."""
        if not self._connection.running():
            self._launch()
        return self._connection.request(request, budget_s)

    # workdirs --------------------------------------------------------------------------------
    def _workdir(self) -> Path:
        self._count += 1
        path = self._folder / f"w{self._count}-{secrets.token_hex(6)}"
        path.mkdir(mode=0o700)
        return path

    def _write_rows(self, frame: pd.DataFrame | tuple, path: Path) -> None:
        """A worker's rows (or rows and history), pickled into its workdir; what the worker left there is removed first
        and never followed (O_EXCL | O_NOFOLLOW): the parent writes only where it means to."""
        path.unlink(missing_ok=True)
        write_rows(frame, path, owner=(self._plan.uid, self._plan.gid) if self._plan.drop_uid else None)

    def _remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def _hand_over(self, path: Path, linked: tuple[str, ...] = ()) -> None:
        """The workdir and what the parent wrote in it become the child's; linked row files stay the parent's."""
        if not self._plan.drop_uid:
            return
        for item in (path, *path.iterdir()):
            if item.name not in linked:
                os.chown(item, self._plan.uid, self._plan.gid, follow_symlinks=False)

    # phases ----------------------------------------------------------------------------------
    def fit(self, policy_source: str, train: pd.DataFrame, *, budget_s: float,
            constants: tuple[str, ...] = ()) -> FitResult:
        """Run the policy's fit(train) in a fresh child; the model comes back as a file handle."""
        started = time.perf_counter()
        _check_budget(budget_s)
        with self._lock:
            self.start()
            work = self._workdir()
            try:
                (work / P.POLICY_FILE).write_text(policy_source, encoding="utf-8")
                linked = self._row_files.place({P.TRAIN_FILE: train}, work)
                self._hand_over(work, (P.TRAIN_FILE,))
                self._connection.phase(self.broker, "fit", ("train",), budget_s)
                try:
                    reply, lost = self._run({"phase": "fit", "workdir": str(work),
                                             "budget_s": float(budget_s), "broker": self.broker is not None,
                                             "constants": list(constants)}, budget_s)
                finally:
                    self._connection.end_phase()
                    self._row_files.check(linked)
                meta = _outcome.read_meta(work)
                status, error = _outcome.fit_status(reply, meta, lost, budget_s, self.memory_mb)
                model = None
                if status is SandboxStatus.OK:
                    model, problem = self._keep_model(work / P.MODEL_FILE)
                    if model is None:
                        status, error = SandboxStatus.CRASH, problem
            finally:
                shutil.rmtree(work, ignore_errors=True)
        fit_seconds = _outcome.seconds(meta.get("fit_seconds"))
        return FitResult(
            status=status, seconds=time.perf_counter() - started, error=error,
            violations=tuple(reply["violations"]) if reply else (),
            log=reply["log"] if reply else "", model=model,
            device=_outcome.device(meta), fit_seconds=fit_seconds,
            constants=_outcome.constants(meta, constants) if status is SandboxStatus.OK else {})

    def decide(self, policy_source: str, model: ModelHandle, rows: Mapping[str, Any], *,
               budget_s: float, constants: tuple[str, ...] = (),
               history: Mapping[str, Any] | None = None) -> DecideResult:
        """Run decide(model, frame[, history]) once per row set in a fresh child; its output is discarded.
        `history`: per row-set name, the earlier events its rows may read (domains.history). A row set given as a
        list of frames is decided one frame per call (its history a list alike), its decisions concatenated."""
        started = time.perf_counter()
        _check_budget(budget_s)
        _check_model(model, "decide")
        names = list(rows)
        with self._lock:
            work = self._staged(policy_source, model)
            try:
                files = {P.rows_file(index): rows[name] for index, name in enumerate(names)}
                given = [index for index, name in enumerate(names) if history and name in history]
                files.update({P.history_file(index): history[names[index]] for index in given})  # type: ignore[index]
                small = frozenset(name for name, frame in files.items()
                                  if isinstance(frame, list) or len(frame) < CACHED_FROM)
                linked = self._row_files.place(files, work, owner=(self._plan.uid, self._plan.gid), fresh=small)
                self._hand_over(work, tuple(files))
                self._connection.phase(self.broker, "decide", tuple(names), budget_s)
                try:
                    reply, lost = self._run({"phase": "decide", "workdir": str(work),
                                             "budget_s": float(budget_s), "count": len(names),
                                             "broker": self.broker is not None,
                                             "constants": list(constants), "history": given}, budget_s)
                finally:
                    self._connection.end_phase()
                    self._row_files.check(linked)
                meta = _outcome.read_meta(work)
                status, error = _outcome.decide_status(reply, meta, lost, budget_s, self.memory_mb,
                                                       names)
                decisions: dict[str, np.ndarray] = {}
                if status is SandboxStatus.OK:
                    sizes = {name: sum(map(len, v)) if isinstance(v, list) else len(v) for name, v in rows.items()}
                    decisions, problem, loaded = _outcome.load_decisions(work, names, sizes)
                    if problem:
                        status, error, decisions = loaded, problem, {}
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return DecideResult(
            status=status, seconds=time.perf_counter() - started, error=error,
            violations=tuple(reply["violations"]) if reply else (), log="",
            decisions=decisions,
            constants=_outcome.constants(meta, constants) if status is SandboxStatus.OK else {},
            decide_seconds=_outcome.seconds(meta.get("decide_seconds")),
            device=_outcome.device(meta))

    def worker(self, policy_source: str, model: ModelHandle, *, budget_s: float) -> Worker:
        """Start a persistent decide worker for this policy and model (see _worker); RatchetError when it
        cannot load them, with the same closed-vocabulary reasons decide gives."""
        _check_budget(budget_s)
        _check_model(model, "worker")
        if self.broker is not None:
            raise RatchetError("decide workers have no model broker: use Sandbox.decide for policies that ask "
                               "a language model (task_agent.enabled)")
        with self._lock:
            work = self._staged(policy_source, model)
            try:
                self._hand_over(work)
                reply, lost = self._run({"phase": "worker", "workdir": str(work), "budget_s": float(budget_s)},
                                        budget_s)
            except BaseException:
                self._remove(work)
                raise
            facts = (reply or {}).get("facts") or {}
            if reply is None or "worker" not in reply:
                self._remove(work)
                status, error = _outcome.decide_status(reply, facts, lost, budget_s, self.memory_mb, ["rows"])
                raise RatchetError(f"the decide worker did not start ({status}): {error}")
            return Worker(self, reply["worker"], work, self._connection.generation, _outcome.device(facts))

    def _staged(self, policy_source: str, model: ModelHandle) -> Path:
        """A fresh workdir holding the policy source and a verified copy of its model (removed if that fails)."""
        self.start()
        work = self._workdir()
        try:
            (work / P.POLICY_FILE).write_text(policy_source, encoding="utf-8")
            self._copy_model(model, work / P.MODEL_FILE)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return work

    # model files -----------------------------------------------------------------------------
    def _keep_model(self, produced: Path) -> tuple[ModelHandle | None, str]:
        """Copy the child's model.pkl into the parent-owned folder: bytes only, never unpickled."""
        target = self._folder / "models" / f"model-{self._count}-{secrets.token_hex(4)}.pkl"
        try:
            _copy_regular(produced, target)
        except (OSError, ValueError) as exc:
            return None, f"fit wrote no usable {P.MODEL_FILE} ({exc})"
        digest, size = sha256_of(target)
        return ModelHandle(target, digest, size), ""

    def adopt(self, data: bytes) -> ModelHandle:
        """A model fitted elsewhere (another machine's sandbox) as a handle here: bytes only, never unpickled."""
        with self._lock:
            self.start()
            self._count += 1
            target = self._folder / "models" / f"model-{self._count}-{secrets.token_hex(4)}.pkl"
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return ModelHandle.from_file(target)

    def _copy_model(self, model: ModelHandle, target: Path) -> None:
        _copy_regular(model.path, target)
        digest, _ = sha256_of(target)
        if digest != model.sha256:
            from optimizer.base.errors import IntegrityError

            raise IntegrityError(f"model file {model.path} does not match its handle's sha256")


def _check_model(model: ModelHandle, phase: str) -> None:
    if not isinstance(model, ModelHandle):
        raise TypeError(f"{phase} needs the ModelHandle of a successful fit, got {model!r}")


def _check_budget(budget_s: float) -> None:
    if not budget_s > 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")


def _copy_regular(source: Path, target: Path) -> None:
    """Copy a regular file without following a symlink at `source` (the candidate made it)."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise ValueError(f"{source.name} is not a plain file")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
