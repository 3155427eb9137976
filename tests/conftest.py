"""Shared fixtures. Every test records to its own MLflow sqlite store, never the repo's."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from optimizer.proposers._tunables import rewrite


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


BASELINE = (Path(__file__).resolve().parents[1] / "domains" / "fraud" / "policy.py").read_text()
WEAK = rewrite(BASELINE, {"N_ESTIMATORS": 50, "MAX_DEPTH": 2, "THRESHOLD": 0.9})
LOOSE = {"alert_rate": {"floor": 0.05, "margin": 0.05}, "false_decline_rate": {"floor": 0.05, "margin": 0.05}}


@pytest.fixture(scope="session")
def weak_workspace(tmp_path_factory) -> Path:
    """Starts from a deliberately weak champion, so the shipped baseline is an honest improvement."""
    from optimizer.initialize import init_workspace

    base = tmp_path_factory.mktemp("weak")
    (base / "weak.py").write_text(WEAK)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    try:
        res = init_workspace("fraud", base / "ws", policy_file=base / "weak.py",
                             overrides={"data.rows": 30_000, "seal.canaries": 4, "guardrails": LOOSE})
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return res.workspace.root




PRICING_BASELINE = (Path(__file__).resolve().parents[1] / "domains" / "pricing" / "policy.py").read_text()
PRICING_WEAK = rewrite(PRICING_BASELINE, {"MAX_MULTIPLIER": 1.0})  # never above the reference price


@pytest.fixture(scope="session")
def pricing_workspace(tmp_path_factory) -> Path:
    """A sealed pricing workspace whose champion never prices above the reference: the shipped baseline
    is an honest improvement over it."""
    from optimizer.initialize import init_workspace

    base = tmp_path_factory.mktemp("pricing")
    (base / "weak.py").write_text(PRICING_WEAK)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    try:
        res = init_workspace("pricing", base / "ws", policy_file=base / "weak.py",
                             overrides={"data.rows": 60_000, "seal.canaries": 4})
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return res.workspace.root
