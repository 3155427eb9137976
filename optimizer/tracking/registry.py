"""Kept policies as MLflow models: one registered model per workspace, one version per kept policy.

A version's artifacts are the policy source and its fitted model bytes, copied from the sandbox's folder while
the sandbox is open. Those bytes are the candidate's own pickle: nothing outside ratchet's sandbox ever unpickles
them, so the model (optimizer.tracking.registry_model.PolicyModel) decides in a warm sandboxed worker of its own. Each
version carries a signature (the dev split's decision-time columns and types; the decisions and the domain's
constants out) and an input example, so `mlflow models serve` parses times as times. The registry is for
promotion and audit: which version is the champion, and who approved it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc

from holdout import queries
from holdout.entries import ModelVersion
from holdout.hashing import sha256_bytes
from holdout.ledger import Entry, Kind
from holdout.records import Tag
from optimizer.base.errors import IntegrityError, RatchetError
from optimizer.tracking.registry_model import MODEL, POLICY, PolicyModel

if TYPE_CHECKING:
    from optimizer.records.context import Context

ARTIFACT = "policy_model"  # the model's name inside its MLflow run
EXAMPLE_ROWS = 2  # dev rows saved as the version's input example


def model_name(ctx: Context, entries: list | None = None) -> str:
    """The workspace's one registered model: the name its first version got, else `ratchet-<folder>-<seal sha12>`."""
    return queries.model_name(ctx.ledger.entries() if entries is None else entries, ctx.ws.root.name)


def model_entries(entries: list) -> list[Entry]:
    """Every registered version the ledger holds, oldest first."""
    return [e for e in entries if e.kind == Kind.MODEL]


def register(tracker: Any, ctx: Context, *, experiment: str, commit: str, source: str, model: Any,
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
            info = _log_model(ctx, artifacts, model.sha256)
            version = _new_version(tracker.client, name, info, payload)
        except Exception as exc:  # noqa: BLE001 - any backend failure is one line for the user
            raise RatchetError(f"MLflow at {tracker.uri}: cannot register {experiment} (commit {commit[:12]}) as a "
                               f"version of model {name} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                               "the keep itself is in the ledger, but only a registered version can be promoted. "
                               "Check MLFLOW_TRACKING_URI or that the server is up.") from None
    return ctx.ledger.append(Kind.MODEL, ModelVersion(**payload, version=version).to_payload())


def _artifacts(folder: Path, source: str, model: Any) -> dict[str, str]:
    """The policy source and a verified copy of its fitted bytes (the sandbox removes its own on close)."""
    from optimizer.sandbox import ModelHandle

    policy, fitted = folder / "policy.py", folder / "model.bin"
    policy.write_text(source)
    shutil.copyfile(model.path, fitted, follow_symlinks=False)
    if ModelHandle.from_file(fitted).sha256 != model.sha256:
        raise IntegrityError(f"model file {model.path} does not match its handle's sha256; it changed after fit.")
    return {POLICY: str(policy), MODEL: str(fitted)}


def _log_model(ctx: Context, artifacts: dict[str, str], model_sha256: str) -> Any:
    """mlflow.pyfunc.log_model with a signature and an input example, without MLflow's serving check of the example
    (it would load the model and start a sandbox inside the keep; tests/optimizer/test_registry_serving.py serves
    it for real instead)."""
    from mlflow.models import Model

    view = ctx.domain.policy_view(ctx.dev, with_label=False)
    return Model.log(None, name=ARTIFACT, flavor=_PyfuncWithoutServingCheck, flavor_name="pyfunc.CustomPythonModel",
                     python_model=PolicyModel(), artifacts=artifacts, pip_requirements=_requirements(),
                     signature=signature(ctx, view), input_example=view.head(EXAMPLE_ROWS).reset_index(drop=True),
                     model_config=_config(ctx, model_sha256, view), validate_serving_input=False)


class _PyfuncWithoutServingCheck:
    """mlflow.pyfunc as Model.log's flavor; `validate_serving_input` is Model.log's own switch (MLflow's
    transformers flavor passes it the same way), which pyfunc.save_model does not take."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> Any:
        return mlflow.pyfunc.save_model(**kwargs)


def signature(ctx: Context, view: Any) -> Any:
    """The decision-time columns with MLflow types (times as datetime, so MLflow parses them) in; the decision and
    the domain's constants (typed as the champion's, else as numbers) out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = Schema([ColSpec(_mlflow_type(view[c].dtype), c) for c in view.columns])
    champion = ctx.champion()
    decided = DataType.string if champion is not None and np.asarray(champion.dev).dtype.kind in "OUS" \
        else DataType.double
    found = dict(champion.constants) if champion is not None else {}
    kinds = {bool: DataType.boolean, int: DataType.long, str: DataType.string}
    outputs = Schema([ColSpec(decided, "decision"), *(ColSpec(kinds.get(type(found.get(name)), DataType.double), name)
                                                       for name in ctx.domain.constants)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _mlflow_type(dtype: Any) -> Any:
    import pandas as pd
    from mlflow.types import DataType

    if pd.api.types.is_bool_dtype(dtype):
        return DataType.boolean
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DataType.datetime
    if pd.api.types.is_integer_dtype(dtype):
        return DataType.long if dtype.itemsize >= 8 or dtype.kind == "u" and dtype.itemsize >= 4 else DataType.integer
    if pd.api.types.is_float_dtype(dtype):
        return DataType.float if dtype.itemsize <= 4 else DataType.double
    return DataType.string  # text, categories


def _config(ctx: Context, model_sha256: str, view: Any) -> dict[str, Any]:
    """What predict needs to decide as the pipeline did: the domain, its constants, the decision-time columns and
    their dev dtypes, the output contract's parameters and the sandbox's limits."""
    return {"domain": ctx.domain.name, "constants": list(ctx.domain.constants), "model_sha256": model_sha256,
            "columns": [[c, str(view[c].dtype)] for c in view.columns], "scoring": ctx.config.scoring.model_dump(),
            "budget_s": float(ctx.config.sandbox.budget_s), "memory_mb": int(ctx.config.sandbox.memory_mb),
            "task_agent": bool(ctx.config.task_agent.enabled),
            "workspace": str(ctx.ws.root)}


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
