"""MLflow's own serving works on what the registry holds: a registered policy version carries a signature and an
input example, `mlflow models serve` answers it with the sandbox's decisions, and the loaded pyfunc keeps one warm
sandboxed decide worker."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from holdout.ledger import Kind, Ledger

BIN = Path(sys.executable).parent  # the venv's scripts: mlflow, and the uvicorn that `mlflow models serve` runs


@dataclass(frozen=True)
class Registered:
    ws: Path
    uri: str  # the test's own MLflow store
    name: str
    version: int
    folder: Path  # the version's artifact folder (MLmodel, artifacts/policy.py, artifacts/model.bin)
    view: pd.DataFrame  # dev as the policy sees it (no label)
    budget_s: float
    constants: tuple[str, ...]

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def source(self) -> str:
        return (self.folder / "artifacts" / "policy.py").read_text()

    @property
    def model(self) -> bytes:
        return (self.folder / "artifacts" / "model.bin").read_bytes()  # bytes only, never unpickled here

    def rows(self, start: int, n: int) -> pd.DataFrame:
        return self.view.iloc[start:start + n].reset_index(drop=True)


@pytest.fixture(scope="module")
def registered(small_workspace, tmp_path_factory) -> Registered:
    """A copy of the small fraud workspace whose baseline the loop evaluated and registered (version 1), in its own
    MLflow store."""
    from mlflow.tracking import MlflowClient

    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox
    from optimizer.tracking.runs import open_tracker

    base = tmp_path_factory.mktemp("registry-serving")
    shutil.copytree(small_workspace, base / "ws")
    shutil.copy(small_workspace.parent / "mlflow.db", base / "mlflow.db")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        ctx = load_context(base / "ws")
        ctx.config = ctx.config.model_copy(update={"decision": ctx.config.decision.model_copy(update={"refits": 0})})
        with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
            ensure_baseline(ctx, sandbox, open_tracker(ctx))
    entry = Ledger(base / "ws" / "ledger.duckdb").last(Kind.MODEL).data
    # Loaded from its folder, so no test depends on MLflow's process-global tracking URI.
    folder = MlflowClient(uri).get_model_version_download_uri(entry["name"], str(entry["version"]))
    return Registered(base / "ws", uri, entry["name"], int(entry["version"]), Path(folder.removeprefix("file://")),
                      ctx.domain.policy_view(ctx.dev, with_label=False), float(ctx.config.sandbox.budget_s),
                      tuple(ctx.domain.constants))


def loop_decisions(reg: Registered, start: int, n: int) -> np.ndarray:
    """What the loop decided for dev rows start..start+n (the registered version is the champion, the baseline):
    a model that reads history as `ratchet serve` does gives exactly these, alone or in any batch."""
    return np.load(reg.ws / "champion" / "dev.npy")[start:start + n]


def test_the_version_carries_a_signature_and_an_input_example(registered):
    from mlflow.models import get_model_info
    from mlflow.types import DataType

    info = get_model_info(str(registered.folder))
    view = registered.rows(0, 1)
    inputs = {c.name: c.type for c in info.signature.inputs.inputs}
    assert list(inputs) == list(view.columns)
    assert inputs["ts"] == DataType.datetime and inputs["amount"] == DataType.double
    assert inputs["customer_id"] == DataType.long
    assert [c.name for c in info.signature.outputs.inputs] == ["decision", "THRESHOLD"]
    assert info.saved_input_example_info["type"] == "dataframe"


def test_the_loaded_model_reuses_one_warm_worker_and_decides_as_the_sandbox(registered, monkeypatch):
    import pickle

    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(registered.folder))
    inner = model.unwrap_python_model()

    def unpickle(*args, **kwargs):
        raise AssertionError("the parent unpickled something")

    rows = registered.rows(40, 12)
    expected = loop_decisions(registered, 40, 12)
    monkeypatch.setattr(pickle, "loads", unpickle)
    monkeypatch.setattr(pickle, "load", unpickle)
    try:
        assert inner.worker is None  # started lazily
        first = model.predict(rows)
        worker = inner.worker
        second = model.predict(rows.iloc[3:4])
        assert inner.worker is worker and worker.alive and inner.worker_starts == 1
        np.testing.assert_array_equal(first["decision"].to_numpy(), expected)
        np.testing.assert_array_equal(second["decision"].to_numpy(), expected[3:4])
        assert (first["THRESHOLD"] == first["THRESHOLD"].iloc[0]).all()

        worker.close()  # a worker that ended is replaced on the next call
        np.testing.assert_array_equal(model.predict(rows)["decision"].to_numpy(), expected)
        assert inner.worker is not worker and inner.worker_starts == 2

        from mlflow.exceptions import MlflowException

        with pytest.raises(MlflowException, match=r"missing inputs \['amount'\]"):  # the signature refuses it
            model.predict(rows.drop(columns=["amount"]))
    finally:
        inner.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def mlflow_serving(registered, tmp_path):
    """`mlflow models serve` of the registered version (local env), in its own process group; yields its URL."""
    missing = [m for m in ("uvicorn", "fastapi") if importlib.util.find_spec(m) is None]
    if missing or not (BIN / "uvicorn").exists() or not (BIN / "mlflow").exists():
        pytest.skip(f"`mlflow models serve` cannot start here: missing {', '.join(missing) or 'the uvicorn script'}")
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", registered.model_uri, "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"mlflow models serve exited ({proc.returncode}): {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"mlflow models serve did not answer /ping: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        temp = Path(tempfile.gettempdir())
        folders = [f for pid in _members(proc.pid) for f in temp.glob(f"ratchet-sandbox-{pid}-*")]
        servers = _working_in(folders)  # the model's sandbox fork server (its cwd is its folder)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # uvicorn re-raises SIGTERM after its graceful shutdown, so no atexit runs: the fork server ends on its closed
    # stdin, and the folder it leaves (no holdout ever enters it) is an orphan the next Sandbox start removes.
    deadline = time.monotonic() + 30
    while (_members(proc.pid) or _alive(servers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folders or servers, f"no process works in the served model's sandbox folders {folders}"
    assert not _alive(servers), f"the served model's sandbox server outlived the server: {servers}"
    from optimizer.sandbox._leftovers import clean

    clean()
    assert not [f for f in folders if f.exists()], "the served model's sandbox folder was not reclaimed"


def _members(pgid: int) -> list[int]:
    """The live processes of a process group (the mlflow CLI and the uvicorn it runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append(int(entry.name))
            except ProcessLookupError:
                pass
    return found


def _working_in(folders: list[Path]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) in folders:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_mlflow_models_serve_answers_with_the_loops_decisions(registered, mlflow_serving):
    rows = registered.rows(100, 20)
    expected = loop_decisions(registered, 100, 20)
    split = json.loads(rows.to_json(orient="split", date_format="iso", index=False))
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    one = json.loads(rows.iloc[[5]].to_json(orient="split", date_format="iso", index=False))

    status, body = _post(f"{mlflow_serving}/invocations", {"dataframe_split": one})
    assert status == 200, body
    assert [p["decision"] for p in body["predictions"]] == pytest.approx(expected[5:6].tolist(), rel=1e-12, abs=0)
    for payload in ({"dataframe_split": split}, {"dataframe_records": records}):
        status, body = _post(f"{mlflow_serving}/invocations", payload)
        assert status == 200, body
        decided = [p["decision"] for p in body["predictions"]]
        assert decided == pytest.approx(expected.tolist(), rel=1e-12, abs=0)
        assert len({p["THRESHOLD"] for p in body["predictions"]}) == 1

    records[2]["ts"] = "not a time"
    status, body = _post(f"{mlflow_serving}/invocations", {"dataframe_records": records})
    assert status == 400 and "ts" in body["message"], body


def test_a_failed_decide_on_live_rows_says_what_failed_not_that_holdout_rows_were_there(registered, tmp_path):
    """A policy that raises in decide: the pyfunc's error names the status and the stage, and no holdout."""
    from mlflow.exceptions import MlflowException

    from optimizer.sandbox import Sandbox
    from optimizer.tracking.registry_model import PolicyModel

    source = "def fit(train):\n    return {'n': len(train)}\n\n\ndef decide(model, rows):\n    raise ValueError('no')\n"
    view, folder = registered.view, tmp_path
    with Sandbox() as box:
        fitted = box.fit(source, view.head(50), budget_s=60)
        assert fitted.status == "ok", fitted.error
        (folder / "policy.py").write_text(source)
        shutil.copyfile(fitted.model.path, folder / "model.bin")

    class Context:
        artifacts = {"policy": str(folder / "policy.py"), "model": str(folder / "model.bin")}
        model_config = {"domain": "fraud", "constants": ["THRESHOLD"], "model_sha256": fitted.model.sha256,
                        "budget_s": 60.0, "memory_mb": 2048, "task_agent": False,
                        "columns": [[c, str(view[c].dtype)] for c in view.columns]}

    model = PolicyModel()
    model.load_context(Context())
    try:
        with pytest.raises(MlflowException) as failed:
            model.predict(None, view.head(3))
    finally:
        model.close()
    message = failed.value.message
    assert "(crash)" in message and "decide raised ValueError" in message, message
    assert "holdout" not in message, message
    assert failed.value.get_http_status_code() == 503

    from optimizer.base.errors import IntegrityError

    (folder / "model.bin").write_bytes(b"altered")
    with pytest.raises(IntegrityError, match="the artifact was altered"):
        PolicyModel().load_context(Context())


def test_incoming_columns_are_coerced_to_the_dev_dtypes():
    """Times as text (MLflow hands them so without a signature) or with a zone, narrower integers, extra columns."""
    from mlflow.exceptions import MlflowException

    from optimizer.tracking.registry_model import coerce

    columns = [["tx_id", "int64"], ["ts", "datetime64[ns]"], ["amount", "float64"]]
    frame = pd.DataFrame({"amount": ["12.5", "3"], "is_fraud": [0, 1], "tx_id": np.array([7, 8], dtype="int32"),
                          "ts": ["2025-06-12T20:21:05", "2025-06-12T22:21:05+02:00"]}, index=[5, 9])
    out = coerce(frame, columns, "fraud")
    assert list(out.columns) == ["tx_id", "ts", "amount"] and list(out.index) == [0, 1]
    assert [str(t) for t in out.dtypes] == ["int64", "datetime64[ns]", "float64"]
    assert out["ts"].tolist() == [pd.Timestamp("2025-06-12 20:21:05")] * 2  # a zone is read as UTC
    assert out["amount"].tolist() == [12.5, 3.0]
    with pytest.raises(MlflowException, match="column 'ts'"):
        coerce(frame.assign(ts=["2025-06-12", "not a time"]), columns, "fraud")
    with pytest.raises(MlflowException, match="column 'tx_id'"):
        coerce(frame.assign(tx_id=[1.5, 2.0]), columns, "fraud")


def test_the_registered_model_decides_dev_as_the_loop_did(registered):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(registered.folder))
    try:
        decided = model.predict(registered.rows(0, 300))["decision"].to_numpy()
    finally:
        model.unwrap_python_model().close()
    np.testing.assert_allclose(decided, np.load(registered.ws / "champion" / "dev.npy")[:300], rtol=1e-9)


@pytest.mark.parametrize("old_path", ["optimizer.registry", "optimizer.registry_model"])
def test_a_version_pickled_under_an_old_module_path_still_loads(old_path):
    """A registered version's python_model.pkl names PolicyModel's module as it was when it was registered: a fresh
    interpreter (as `mlflow models serve` starts) resolves it to the class where it lives now; other old paths stay
    gone, so no stale import in the project resolves by accident."""
    pickled = f"c{old_path}\nPolicyModel\n.".encode()
    probe = ("import pickle, sys\n"
             "cls = pickle.loads(sys.stdin.buffer.read())\n"
             "print(cls.__module__, cls.__qualname__)\n"
             "try:\n    import optimizer.keep\nexcept ImportError:\n    print('optimizer.keep gone')\n")
    out = subprocess.run([sys.executable, "-c", probe], input=pickled, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split("\n")[:2] == ["optimizer.tracking.registry_model PolicyModel",
                                                  "optimizer.keep gone"]
