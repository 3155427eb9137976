"""Kept policies as MLflow models: one registered model per workspace, one version per kept policy.

A version's artifacts are the policy source and its fitted model bytes, copied from the sandbox's folder while
the sandbox is open. Those bytes are the candidate's own pickle: nothing outside ratchet's sandbox ever unpickles
them, so `PolicyModel.predict` decides in a fresh sandbox (seconds to start; `ratchet serve` keeps one warm for
live traffic). The registry is for promotion and audit: which version is the champion, and who approved it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from holdout.hashing import sha256_bytes
from holdout.ledger import Entry, Kind
from holdout.records import Tag
from optimizer.errors import IntegrityError, RatchetError

ARTIFACT = "policy_model"  # the model's name inside its MLflow run
POLICY, MODEL = "policy", "model"  # artifact keys: the policy source, the fitted model bytes


# MLflow asks, when the class below is created, for predict type hints that are left out on purpose.
warnings.filterwarnings("ignore", message="Add type hints to the `predict` method", category=UserWarning)


class PolicyModel(mlflow.pyfunc.PythonModel):
    """A kept policy as a pyfunc: decides in ratchet's sandbox, so the fitted bytes are never unpickled here."""

    def load_context(self, context: Any) -> None:
        self._source = Path(context.artifacts[POLICY]).read_text()
        self._model = Path(context.artifacts[MODEL])
        self._config = dict(context.model_config or {})

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        """One decision per row of `model_input` (the rows a policy sees, label ignored), from a fresh sandbox."""
        import pandas as pd

        from domains import get_domain
        from optimizer.sandbox import ModelHandle, Sandbox

        cfg = self._config
        if cfg.get("task_agent"):
            raise RuntimeError("this policy asks a language model through ratchet's model broker, which only "
                               "`ratchet serve` holds: decide with `ratchet serve`.")
        handle = ModelHandle.from_file(self._model)
        if handle.sha256 != cfg.get("model_sha256"):
            raise RuntimeError(f"{self._model}: sha256 {handle.sha256[:12]} is not the registered model's "
                               f"{str(cfg.get('model_sha256'))[:12]}; the artifact was altered.")
        rows = get_domain(cfg["domain"]).policy_view(pd.DataFrame(model_input), with_label=False)
        with Sandbox(memory_mb=int(cfg["memory_mb"])) as box:
            result = box.decide(self._source, handle, {"rows": rows.reset_index(drop=True)},
                                budget_s=float(cfg["budget_s"]), constants=tuple(cfg["constants"]))
        if result.status != "ok":
            raise RuntimeError(f"the policy's decide phase in the sandbox: {result.status}: {result.error}")
        return pd.DataFrame({"decision": result.decisions["rows"], **dict(result.constants)})


def model_name(ctx: Any, entries: list | None = None) -> str:
    """The workspace's one registered model: the name its first version got, else `ratchet-<folder>-<seal sha12>`."""
    entries = ctx.ledger.entries() if entries is None else entries
    named = next((e.data["name"] for e in entries if e.kind == Kind.MODEL), None)
    if named:
        return named
    seal = next(e for e in entries if e.kind == Kind.SEAL).data
    return f"ratchet-{ctx.ws.root.name}-{seal['manifest_sha256'][:12]}"


def model_entries(entries: list) -> list[Entry]:
    """Every registered version the ledger holds, oldest first."""
    return [e for e in entries if e.kind == Kind.MODEL]


def register(tracker: Any, ctx: Any, *, experiment: str, commit: str, source: str, model: Any,
             run_id: str) -> Entry:
    """Log a kept policy as a model of the active run, register it as the next version and record it in the
    ledger; `model` is the sandbox's handle of its fitted bytes (the sandbox must still be open)."""
    name = model_name(ctx)
    payload = {"name": name, "experiment": experiment, "commit": commit,
               "policy_sha256": sha256_bytes(source.encode()), "model_sha256": model.sha256, "run_id": run_id}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr belongs to the progress line
    with tempfile.TemporaryDirectory(prefix="ratchet-model-") as tmp:
        artifacts = _artifacts(Path(tmp), source, model)
        try:
            info = mlflow.pyfunc.log_model(name=ARTIFACT, python_model=PolicyModel(), artifacts=artifacts,
                                           pip_requirements=_requirements(),
                                           model_config=_config(ctx, model.sha256))
            version = _new_version(tracker.client, name, info, payload)
        except Exception as exc:  # noqa: BLE001 - any backend failure is one line for the user
            raise RatchetError(f"MLflow at {tracker.uri}: cannot register {experiment} (commit {commit[:12]}) as a "
                               f"version of model {name} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                               "the keep itself is in the ledger, but only a registered version can be promoted. "
                               "Check MLFLOW_TRACKING_URI or that the server is up.") from None
    return ctx.ledger.append(Kind.MODEL, {**payload, "version": version})


def _artifacts(folder: Path, source: str, model: Any) -> dict[str, str]:
    """The policy source and a verified copy of its fitted bytes (the sandbox removes its own on close)."""
    from optimizer.sandbox import ModelHandle

    policy, fitted = folder / "policy.py", folder / "model.bin"
    policy.write_text(source)
    shutil.copyfile(model.path, fitted, follow_symlinks=False)
    if ModelHandle.from_file(fitted).sha256 != model.sha256:
        raise IntegrityError(f"model file {model.path} does not match its handle's sha256; it changed after fit.")
    return {POLICY: str(policy), MODEL: str(fitted)}


def _config(ctx: Any, model_sha256: str) -> dict[str, Any]:
    """What predict needs to decide as the pipeline did: the domain, its constants and the sandbox's limits."""
    return {"domain": ctx.domain.name, "constants": list(ctx.domain.constants), "model_sha256": model_sha256,
            "budget_s": float(ctx.config.sandbox.budget_s), "memory_mb": int(ctx.config.sandbox.memory_mb),
            "task_agent": bool(ctx.config.task_agent.enabled)}


def _requirements() -> list[str]:
    """Pinned, not inferred: inferring would import the model in a subprocess, minutes on a busy host."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ratchet = f"ratchet-loop=={version('ratchet-loop')}"
    except PackageNotFoundError:
        ratchet = "ratchet-loop"
    return [ratchet, f"mlflow=={mlflow.__version__}"]


def _new_version(client: Any, name: str, info: Any, payload: dict[str, str]) -> int:
    """The next version of `name` (created on first use), tagged with what the ledger records of it."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="ratchet: the kept policies of one workspace; the "
                                       "`champion` alias is moved only by `ratchet promote` and `ratchet rollback`.")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    tags = {Tag.EXPERIMENT: payload["experiment"], Tag.COMMIT: payload["commit"],
            Tag.POLICY_SHA256: payload["policy_sha256"], Tag.MODEL_SHA256: payload["model_sha256"]}
    version = client.create_model_version(name, source=info.model_uri, run_id=payload["run_id"], tags=tags,
                                          model_id=info.model_id)
    return int(version.version)
