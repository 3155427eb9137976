"""Policies that behave: decisions, models, constants, logs and contract errors, through real processes."""
from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from optimizer.sandbox import DecideResult, FitResult, ModelHandle, Sandbox, SandboxStatus

LIGHT = ("numpy", "pandas", "pyarrow")

MEAN_POLICY = """
import numpy as np
THRESHOLD = np.float32(0.25)
LABEL = "block"
STRICT = True
TABLE = [1, 2]
DEVICE = "auto"

def fit(train):
    print("fit saw", len(train), "rows on", DEVICE)
    return {"mean": float(train["y"].mean())}

def decide(model, rows):
    return rows["x"].to_numpy() * 2 + model["mean"]
"""


@pytest.fixture(scope="module")
def box():
    with Sandbox(preload=LIGHT) as sandbox:
        yield sandbox


@pytest.fixture()
def train():
    return pd.DataFrame({"x": np.arange(20, dtype=float), "y": np.arange(20) % 4})


def _fit(box, source, train, **kw) -> FitResult:
    return box.fit(source, train, budget_s=30, **kw)


def test_trivial_policy_round_trips_decisions_and_model(box, train):
    fitted = _fit(box, MEAN_POLICY, train)
    assert fitted.status == "ok", fitted.error
    assert isinstance(fitted.model, ModelHandle) and fitted.model.path.is_file()
    assert ModelHandle.from_file(fitted.model.path) == fitted.model  # bytes only, hash re-derived
    rows = {"dev": train[["x"]].iloc[:5], "holdout": train[["x"]].iloc[5:8]}
    result = box.decide(MEAN_POLICY, fitted.model, rows, budget_s=30)
    assert result.status == "ok", result.error
    assert list(result.decisions) == ["dev", "holdout"]
    mean = train["y"].mean()  # only the fitted model carries this into decide
    np.testing.assert_array_equal(result.decisions["dev"], np.arange(5) * 2.0 + mean)
    np.testing.assert_array_equal(result.decisions["holdout"], np.arange(5, 8) * 2.0 + mean)
    assert result.decisions["dev"].dtype == np.float64
    assert result.violations == () and result.error == ""


def test_constants_come_back_as_json_scalars_only(box, train):
    fitted = _fit(box, MEAN_POLICY, train, constants=("THRESHOLD", "TABLE"))
    assert dict(fitted.constants) == {"THRESHOLD": 0.25}
    result = box.decide(MEAN_POLICY, fitted.model, {"dev": train[["x"]]}, budget_s=30,
                        constants=("THRESHOLD", "LABEL", "STRICT", "TABLE", "MISSING"))
    assert dict(result.constants) == {"THRESHOLD": 0.25, "LABEL": "block", "STRICT": True}
    assert type(result.constants["THRESHOLD"]) is float


def test_device_auto_is_resolved_before_fit(box, train):
    fitted = _fit(box, MEAN_POLICY, train)
    assert fitted.device == box.device
    assert f"on {box.device}" in fitted.log  # the module attribute was rewritten, not "auto"


def test_string_decisions_become_fixed_width_unicode(box, train):
    source = """
def fit(train):
    return None
def decide(model, rows):
    return ["team-a" if x % 2 else "team-b" for x in rows["x"]]
"""
    fitted = _fit(box, source, train)
    result = box.decide(source, fitted.model, {"dev": train[["x"]].iloc[:4]}, budget_s=30)
    assert result.status == "ok", result.error
    assert result.decisions["dev"].dtype.kind == "U"
    assert result.decisions["dev"].tolist() == ["team-b", "team-a", "team-b", "team-a"]


def test_fit_output_is_captured_and_decide_output_discarded(box, train):
    source = """
import os, sys
def fit(train):
    print("hello from fit")
    print("warning from fit", file=sys.stderr)
    return 1
def decide(model, rows):
    print("HOLDOUT-ROW", rows["x"].tolist())
    print("HOLDOUT-ERR", file=sys.stderr)
    os.write(1, b"HOLDOUT-RAW")
    return rows["x"]
"""
    fitted = _fit(box, source, train)
    assert "hello from fit" in fitted.log and "warning from fit" in fitted.log
    result = box.decide(source, fitted.model, {"holdout": train[["x"]]}, budget_s=30)
    assert result.status == "ok", result.error
    assert result.log == ""
    server_log = (box._base / "server.log").read_text()
    assert "HOLDOUT" not in server_log  # not parked anywhere else either


def test_wrong_length_is_a_precise_output_failure(box, train):
    source = """
def fit(train):
    return 0
def decide(model, rows):
    return rows["x"].to_numpy()[:-1]
"""
    fitted = _fit(box, source, train)
    result = box.decide(source, fitted.model, {"dev": train[["x"]].iloc[:7]}, budget_s=30)
    assert result.status is SandboxStatus.OUTPUT  # the process ran to its end: what it returned is wrong
    assert "'dev'" in result.error and "6 values" in result.error and "expected 7" in result.error
    assert result.decisions == {}


@pytest.mark.parametrize("returned, fragment", [
    ("{'a': 1}", "returned a dict"),
    ("rows[['x', 'x']].to_numpy()", "shape (3, 2)"),
    ("None", "returned a NoneType"),
])
def test_unusable_decisions_are_named(box, train, returned, fragment):
    source = f"def fit(train):\n    return 0\ndef decide(model, rows):\n    return {returned}\n"
    fitted = _fit(box, source, train)
    result = box.decide(source, fitted.model, {"dev": train[["x"]].iloc[:3]}, budget_s=30)
    assert result.status == "output"
    assert fragment in result.error and "'dev'" in result.error


def test_decide_errors_carry_no_candidate_text(box, train):
    source = """
def fit(train):
    return 0
def decide(model, rows):
    raise ValueError("LEAKED " + str(rows["x"].tolist()))
"""
    fitted = _fit(box, source, train)
    result = box.decide(source, fitted.model, {"holdout": train[["x"]]}, budget_s=30)
    assert result.status == "crash"
    assert "ValueError" in result.error and "'holdout'" in result.error
    assert "LEAKED" not in result.error and result.log == ""


def test_fit_errors_name_the_exception(box, train):
    source = "def fit(train):\n    raise KeyError('no column called amount')\ndef decide(m, r):\n    return r\n"
    fitted = _fit(box, source, train)
    assert fitted.status == "crash" and fitted.model is None
    assert "fit raised KeyError" in fitted.error and "amount" in fitted.error
    assert "Traceback" in fitted.log


def test_missing_decide_is_named(box, train):
    source = "def fit(train):\n    return 0\n"
    fitted = _fit(box, source, train)
    result = box.decide(source, fitted.model, {"dev": train[["x"]]}, budget_s=30)
    assert result.status == "crash" and "no callable decide()" in result.error


def test_the_scientific_stack_runs_without_false_alarms(box, train):
    """xgboost (ctypes), threaded sklearn (semaphores), KMeans (threadpoolctl), time zones."""
    source = """
import tempfile, os
import numpy as np, pandas as pd, xgboost as xgb
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
DEVICE = "auto"

def features(rows):
    when = pd.Timestamp("2024-03-30", tz="UTC") + pd.to_timedelta(rows["x"], unit="h")
    return pd.DataFrame({"x": rows["x"], "hour": when.dt.tz_convert("Europe/Paris").dt.hour})

def fit(train):
    with tempfile.TemporaryDirectory() as scratch:
        open(os.path.join(scratch, "note"), "w").write("scratch space is the workdir")
    X, y = features(train), (train["y"] > 1).astype(int)
    KMeans(n_clusters=2, n_init=2).fit(X)
    return (xgb.XGBClassifier(n_estimators=5, max_depth=2, device=DEVICE).fit(X, y),
            HistGradientBoostingClassifier(max_iter=5).fit(X, y))

def decide(model, rows):
    X = features(rows)
    return (model[0].predict_proba(X)[:, 1] + model[1].predict_proba(X)[:, 1]) / 2
"""
    fitted = _fit(box, source, train)
    assert fitted.status == "ok", (fitted.error, fitted.violations, fitted.log[-2000:])
    result = box.decide(source, fitted.model, {"dev": train[["x"]]}, budget_s=30)
    assert result.status == "ok" and result.violations == (), (result.error, result.violations)
    assert ((result.decisions["dev"] >= 0) & (result.decisions["dev"] <= 1)).all()


def test_hand_off_overhead_figure(box, capsys):
    """Prints the process hand-off cost per experiment (fit + decide, 200k x 8); asserts no time."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200_000, 8)), columns=[f"c{i}" for i in range(8)])
    rows = {"dev": frame.iloc[:100_000], "holdout": frame.iloc[100_000:]}
    source = """
def fit(train):
    return {c: float(train[c].mean()) for c in train.columns}
def decide(model, rows):
    return rows["c0"].to_numpy() + model["c0"]
"""
    overheads = []
    for _ in range(5):
        fitted = box.fit(source, frame, budget_s=60)
        result: DecideResult = box.decide(source, fitted.model, rows, budget_s=60)
        assert fitted.ok and result.ok, (fitted.error, result.error)
        overheads.append((fitted.seconds - fitted.fit_seconds)
                         + (result.seconds - result.decide_seconds))
    with capsys.disabled():
        print(f"\n[sandbox] hand-off overhead per experiment (200k x 8, fit+decide), "
              f"median of 5: {statistics.median(overheads):.3f} s; layers: {', '.join(box.layers)}")


def test_a_result_holds_a_known_status_and_records_it_as_its_text():
    """A phase's status is one of SandboxStatus: a misspelt one fails where the result is made, and the member is
    stored and shown as the same text as before (ledger payloads and JSON do not change)."""
    import json

    made = DecideResult(status="timeout", seconds=1.0, error="x", violations=(), log="", decisions={}, constants={},
                        decide_seconds=0.0)
    assert made.status is SandboxStatus.TIMEOUT and not made.ok
    assert json.dumps({"status": made.status}) == '{"status": "timeout"}' and f"{made.status}" == "timeout"
    with pytest.raises(ValueError, match="'okay' is not a valid SandboxStatus"):
        DecideResult(status="okay", seconds=1.0, error="", violations=(), log="", decisions={}, constants={},
                     decide_seconds=0.0)
