"""A registered policy version as an MLflow pyfunc: MLflow's own serving (`mlflow models serve`) and
`mlflow.pyfunc.load_model(...).predict` decide through ratchet's sandbox, never in this process.

The model's artifacts are the policy source and the candidate's fitted bytes (its own pickle): they are handed to a
sandbox as bytes and never imported or unpickled here. The first predict starts a sandbox and one persistent decide
worker (optimizer.sandbox.Worker, as `ratchet serve` uses); later predicts reuse it, and a worker that ended (an
overrun, a denied access, a crash) is replaced on the next call. Incoming columns are coerced to the dev split's
dtypes recorded at registration (MLflow may hand times as text), and decisions are held to the domain's output
contract, as `ratchet serve` does. A policy that reads history gets it as `ratchet serve` gives it: from the
workspace's history.duckdb and its sealed holdout (the workspace's path is in the model's config), and each call's rows are appended to it before the
answer leaves (optimizer.workspace.history.LiveHistory); the file is one process's at a time, so a registered model and
`ratchet serve` do not serve one workspace at once.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

POLICY, MODEL = "policy", "model"  # artifact keys: the policy source, the fitted model bytes
FAILED = "TEMPORARILY_UNAVAILABLE"  # the sandbox or the policy failed: 503, as `ratchet serve` answers
_HOLDOUT_CLAUSE = re.compile(r"\s*\(details discarded: holdout rows were present\)")


class PolicyModel(PythonModel):
    """A kept policy as a pyfunc; decides in a warm sandboxed worker kept for the model's lifetime."""

    def load_context(self, context: Any) -> None:
        self._source = Path(context.artifacts[POLICY]).read_text()
        self._model_bytes = Path(context.artifacts[MODEL]).read_bytes()  # bytes only: the sandbox unpickles them
        self._config = dict(context.model_config or {})
        digest = hashlib.sha256(self._model_bytes).hexdigest()
        if digest != self._config.get("model_sha256"):
            from optimizer.base.errors import IntegrityError

            raise IntegrityError(f"{context.artifacts[MODEL]}: sha256 {digest[:12]} is not the registered model's "
                                 f"{str(self._config.get('model_sha256'))[:12]}; the artifact was altered.")
        self._lock = threading.Lock()
        self._sandbox: Any = None  # optimizer.sandbox.Sandbox, opened on the first predict
        self._handle: Any = None  # the fitted bytes adopted into that sandbox (never unpickled here)
        self.worker: Any = None  # the live optimizer.sandbox.Worker
        self.worker_starts = 0
        self._history: Any = None  # optimizer.workspace.history.LiveHistory, opened on the first predict that needs it

    # `model_input: pd.DataFrame` is a hint MLflow reads no schema from (the logged signature says it) and converts
    # nothing for; without a hint MLflow warns, past any warnings filter (it forces "once" around its check), when this
    # class is defined: on every demo, promote, rollback and upgrade.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """One decision per row of `model_input` (the columns of the model's signature; others are ignored)."""
        cfg = self._config
        if cfg.get("task_agent"):
            raise _error("this policy asks a language model through ratchet's model broker, which only `ratchet "
                         "serve` holds: decide with `ratchet serve`.", code="NOT_IMPLEMENTED")
        rows = coerce(pd.DataFrame(model_input), cfg.get("columns"), cfg["domain"])
        live = self._live_history()
        with live.lock if live is not None else contextlib.nullcontext():
            result = self._live_worker().decide(rows, budget_s=float(cfg["budget_s"]),
                                                constants=tuple(cfg["constants"]),
                                                history=live.read(self._source, rows) if live is not None else None)
            if not result.ok:
                raise _error(live_error(result), code=FAILED)
            decisions = next(iter(result.decisions.values()))
            problem = _contract_problem(cfg, decisions, dict(result.constants), rows)
            if problem:
                raise _error(f"the policy's decisions break the output contract: {problem}", code=FAILED)
            if live is not None:
                try:
                    live.record(rows)
                except Exception as exc:  # noqa: BLE001 - an event not in the history must not be answered
                    raise _error(f"history not written ({live.store.path}): {exc}; retry", code=FAILED) from None
        return pd.DataFrame({"decision": decisions, **dict(result.constants)})

    def _live_history(self) -> Any:
        """The workspace's history, opened once, when the policy reads history (None when it does not, or for a
        version registered before history existed)."""
        from domains.history import lookback
        from optimizer.base.errors import RatchetError
        from optimizer.records.context import load_context
        from optimizer.workspace.history import LiveHistory

        workspace = self._config.get("workspace")
        if not workspace or lookback(self._source) <= 0:
            return None
        with self._lock:
            if self._history is None:
                try:  # the workspace loaded and verified as `ratchet serve` loads it
                    self._history = LiveHistory(load_context(Path(workspace), repair=False))
                except (RatchetError, OSError) as exc:
                    raise _error(f"the policy reads history, which is not available from the workspace {workspace} "
                                 f"({exc})", code=FAILED) from None
            return self._history

    def _live_worker(self) -> Any:
        """The warm decide worker: started on first use, and again after one ended."""
        from optimizer.base.errors import RatchetError
        from optimizer.sandbox import Sandbox

        cfg = self._config
        with self._lock:
            if self.worker is not None and self.worker.alive:
                return self.worker
            try:
                if self._sandbox is None:
                    box = Sandbox(memory_mb=int(cfg["memory_mb"]))
                    try:
                        self._handle = box.adopt(self._model_bytes)  # starts it; the bytes were checked at load
                    except BaseException:
                        box.close()
                        raise
                    self._sandbox = box
                self.worker = self._sandbox.worker(self._source, self._handle, budget_s=float(cfg["budget_s"]))
            except RatchetError as exc:
                raise _error(f"the policy's decide worker did not start: {exc}", code=FAILED) from None
            self.worker_starts += 1
            return self.worker

    def close(self) -> None:
        """End the worker and the sandbox now (they also end with the process)."""
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
            if self._history is not None:
                self._history.close()
            self._sandbox, self._handle, self.worker, self._history = None, None, None, None


def live_error(result: Any) -> str:
    """A failed decide on live rows in one line: the status and the stage that failed. The sandbox never returns
    text the policy wrote; its closed-vocabulary message says "holdout rows were present", which is never so for a
    registered model's rows, so that clause is replaced by what is true here."""
    error = _HOLDOUT_CLAUSE.sub(" (the sandbox keeps the policy's own message out of results)", result.error or "")
    return f"the policy's decide failed in the sandbox ({result.status}): {' '.join(error.split())[:400]}"


def coerce(frame: Any, columns: list | None, domain: str) -> Any:
    """`frame`'s decision-time columns in the dev split's dtypes, in the registered order; an error naming the column
    when one is missing or a value does not convert. Versions registered before signatures: the domain's view."""
    import pandas as pd

    if not columns:  # no recorded columns: the domain's policy view, as predict did before
        from domains import get_domain

        return get_domain(domain).policy_view(frame, with_label=False).reset_index(drop=True)
    missing = [name for name, _ in columns if name not in frame.columns]
    if missing:
        raise _error(f"column {missing[0]!r} is missing: the policy decides on {', '.join(n for n, _ in columns)}")
    return pd.DataFrame({name: _column(frame[name], dtype, name) for name, dtype in columns},
                        index=pd.RangeIndex(len(frame)))


def _column(values: Any, dtype: str, name: str) -> Any:
    import numpy as np
    import pandas as pd

    target = pd.api.types.pandas_dtype(dtype)
    values = values.reset_index(drop=True)
    if values.dtype == target:  # what MLflow's signature already enforced
        return values.array
    try:
        if pd.api.types.is_datetime64_any_dtype(target):
            # Text is ISO 8601; a zone is converted to the dev split's, naive is UTC (as `ratchet serve` reads times).
            parsed = pd.to_datetime(values, utc=True, format="ISO8601" if values.dtype.kind not in "Mm" else None)
            return parsed.dt.tz_convert(getattr(target, "tz", None)).astype(target).array
        if pd.api.types.is_bool_dtype(target) or isinstance(target, pd.CategoricalDtype):
            return values.astype(target)
        if pd.api.types.is_numeric_dtype(target):
            numbers = pd.to_numeric(values, errors="raise")
            if pd.api.types.is_integer_dtype(target) and not np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0):
                raise ValueError("a value is not a whole number")
            return numbers.astype(target).array
        return values.astype(target).array  # text
    except (TypeError, ValueError, OverflowError) as exc:
        raise _error(f"column {name!r}: values do not convert to {dtype} ({' '.join(str(exc).split())[:200]})") \
            from None


def _contract_problem(cfg: dict, decisions: Any, constants: dict, rows: Any) -> str | None:
    """The domain's output contract on these decisions, as `ratchet serve` checks it (None: met, or not recorded)."""
    if "scoring" not in cfg:
        return None
    from domains import Decisions, get_domain

    return get_domain(cfg["domain"]).check_decisions(Decisions(decisions, constants), rows, cfg["scoring"])


def _error(message: str, *, code: str = "INVALID_PARAMETER_VALUE") -> Exception:
    """An MlflowException, so `mlflow models serve` answers with this message: 400 for the request's rows, 503 when
    the sandbox or the policy failed (as `ratchet serve` answers), 501 for what only `ratchet serve` can do."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException(message, error_code=getattr(databricks_pb2, code))
