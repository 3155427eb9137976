"""What the audit reads from the tracking store, through an interface it owns (not the optimizer's client).

`TrackingRecords` is the whole contract: the seal hash a run carries, the experiment runs with the
ledger entry each names, and the aliases of the workspace's registered model. `MlflowRecords` reads it from an
MLflow store with MLflow's own client; an outage raises `RecordsUnavailable` with the store's own error, so the
audit reports the real cause.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class Tag:
    """The MLflow tags ratchet writes on its runs (plain strings: MLflow's keys), in one place."""

    SEAL = "ratchet.holdout.manifest_sha256"  # the seal a run was made under (the audit reads it)
    KIND = "ratchet.kind"  # seal | reseal | loop | baseline | experiment
    EXPERIMENT = "ratchet.experiment"  # exp-0001 ...
    LEDGER_SEQ = "ratchet.ledger_seq"  # the ledger entry the run records
    VERDICT = "ratchet.verdict"  # the experiment's status
    COMMIT = "ratchet.commit"
    DOMAIN = "ratchet.domain"
    PROPOSER = "ratchet.proposer"
    POLICY_SHA256 = "ratchet.policy_sha256"
    DEVICE = "ratchet.device"
    MODEL_SHA256 = "ratchet.model_sha256"  # on a model version: its fitted bytes
    APPROVED_BY = "ratchet.approved_by"  # on a promoted model version: who approved it
    REASON = "ratchet.reason"
    TRIAL = "ratchet.trial"  # the passed shadow trial it was promoted on
    VERSION = "ratchet.version"  # the ratchet release that wrote the run


SEAL_TAG = Tag.SEAL
CHAMPION, PREVIOUS = "champion", "previous"  # the registry aliases only `ratchet promote` and `rollback` move


class RecordsUnavailable(Exception):
    """The tracking store could not be read (not: it was read and disagrees)."""

    @classmethod
    def of(cls, exc: Exception, where: str = "") -> "RecordsUnavailable":
        return cls(f"{where}{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment: str | None  # the ratchet experiment id the run records
    ledger_seq: str | None  # the ledger entry it names
    status: str = "FINISHED"  # MLflow's run status: only a FINISHED run holds the whole record


@dataclass(frozen=True)
class VersionRecord:
    """A registered version of the workspace's model, with what ratchet tagged it with when it registered it."""

    version: int
    experiment: str | None
    commit: str | None
    policy_sha256: str | None
    model_sha256: str | None
    run_id: str | None


class TrackingRecords(Protocol):
    uri: str

    def seal_hash(self, run_id: str) -> str | None: ...

    def experiment_runs(self) -> list[RunRecord]: ...

    def model_aliases(self, name: str) -> dict[str, int] | None: ...

    def model_versions(self, name: str) -> list[VersionRecord]: ...


PROBE_S = 5.0  # how long a tracking server may take to answer /health before it counts as unreachable


def fail_fast() -> None:
    """MLflow's HTTP client retries for minutes by default; a loop and an audit need to know in seconds (the
    caller's own MLFLOW_HTTP_REQUEST_* settings win)."""
    import os

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def unreachable(uri: str, timeout: float = PROBE_S) -> str | None:
    """Why the tracking server at an http(s) `uri` does not answer its /health within `timeout`, or None (local
    stores are not probed)."""
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        return f"unreachable ({type(exc).__name__} within {timeout:g} s)"
    return None if answer.status_code < 500 else f"answered HTTP {answer.status_code} on /health"


class MlflowRecords:
    """One MLflow experiment, read only."""

    def __init__(self, experiment: str, uri: str) -> None:
        import logging
        import os

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        fail_fast()
        down = unreachable(uri)
        if down:
            raise RecordsUnavailable(down)
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        self.uri, self.name = uri, experiment
        self.client = MlflowClient(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
        except Exception as exc:  # noqa: BLE001 - any backend failure is an outage to report, not a verdict
            raise RecordsUnavailable.of(exc) from None
        if found is None:
            raise RecordsUnavailable(f"no MLflow experiment named {experiment!r} in this store")
        self.experiment_id = found.experiment_id

    def seal_hash(self, run_id: str) -> str | None:
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001
            raise RecordsUnavailable.of(exc, f"run {run_id}: ") from None
        return run.data.tags.get(SEAL_TAG)

    def experiment_runs(self) -> list[RunRecord]:
        try:
            runs = self.client.search_runs([self.experiment_id], "tags.`ratchet.kind` = 'experiment'",
                                           max_results=50_000)
        except Exception as exc:  # noqa: BLE001
            raise RecordsUnavailable.of(exc) from None
        return [RunRecord(r.info.run_id, r.data.tags.get(Tag.EXPERIMENT), r.data.tags.get(Tag.LEDGER_SEQ),
                          r.info.status) for r in runs]

    def model_aliases(self, name: str) -> dict[str, int] | None:
        """Alias -> version of a registered model; None when the registry has no model of that name."""
        try:
            model = self.client.get_registered_model(name)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise RecordsUnavailable.of(exc, f"registered model {name}: ") from None
        return {alias: int(version) for alias, version in (model.aliases or {}).items()}

    def model_versions(self, name: str) -> list[VersionRecord]:
        """Every registered version of `name` (none when the registry has no such model)."""
        return versions_of(self.client, name)


def versions_of(client: MlflowClient, name: str) -> list[VersionRecord]:
    """Every registered version of `name` with its ratchet tags, read with MLflow's client."""
    try:
        found = client.search_model_versions(f"name = '{name}'", max_results=10_000)
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise RecordsUnavailable.of(exc, f"registered model {name}: ") from None
    return sorted((VersionRecord(int(v.version), v.tags.get(Tag.EXPERIMENT), v.tags.get(Tag.COMMIT),
                                 v.tags.get(Tag.POLICY_SHA256), v.tags.get(Tag.MODEL_SHA256), v.run_id)
                   for v in found), key=lambda v: v.version)


def recorded_store(root: Path, info: dict[str, Any]) -> str:
    """The tracking store a workspace recorded at init (`info`: its seal entry's `mlflow`): a local store's path
    relative to the workspace when that file exists there (the workspace and its store were moved together), else
    the URI as recorded (absolute; a server's URL)."""
    store = info.get("store")
    if store:
        path = (Path(root) / store).resolve()
        if path.is_file():
            return f"sqlite:///{path}"
    return str(info.get("uri", ""))
