"""Shared fixtures. Every test records to its own MLflow sqlite store, never the repo's."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    store = tmp_path_factory.getbasetemp() / "mlflow-store"
    store.mkdir(exist_ok=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.delenv("RATCHET_SEAL_KEY", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory) -> Path:
    """One sealed fraud workspace on small generated data, built once per test process."""
    from optimizer.initialize import init_workspace

    base = tmp_path_factory.mktemp("ws-shared")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    try:
        result = init_workspace("fraud", base / "ws", overrides={"data.rows": 30_000, "seal.canaries": 4})
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return result.workspace.root
