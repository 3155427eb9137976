"""MLflow records: the seal, one parent run per loop, a nested run per experiment.

Tracking URI: the workspace owns its store. `ratchet init` uses MLFLOW_TRACKING_URI when set, else sqlite under
./mlflow/ in the current directory (artifacts beside it), and the seal entry records it: the URI, and for a local
store its path relative to the workspace. Every later command uses that store from any folder (the relative path
first, so a workspace moved together with its store keeps it), unless MLFLOW_TRACKING_URI names another, which is
said once on stderr. Dataset digests are our sha256, not MLflow's own (which only reads the first rows and cannot
prove integrity).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pandas as pd

from holdout import queries
from holdout.entries import Seal, view
from holdout.records import (  # noqa: F401 (SEAL_TAG re-exported: the tag the audit reads)
    SEAL_TAG,
    Tag,
    fail_fast,
    unreachable,
)
from optimizer import __version__
from optimizer.base.errors import RatchetError
from optimizer.base.faults import fault

if TYPE_CHECKING:
    from optimizer.records.context import Context


def default_store() -> Path:
    return Path.cwd() / "mlflow"


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = default_store()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


_NOTICED: set[tuple[str, str]] = set()  # (workspace, MLFLOW_TRACKING_URI) overrides already said


def store_fields(uri: str, workspace: Path) -> dict[str, str]:
    """What the seal records of the store at init: the URI, and a local store's path relative to the workspace."""
    if uri.startswith("sqlite:///"):
        return {"uri": uri, "store": os.path.relpath(Path(uri[len("sqlite:///"):]).resolve(), Path(workspace).resolve())}
    return {"uri": uri}


def _same_store(a: str, b: str) -> bool:
    if a.startswith("sqlite:///") and b.startswith("sqlite:///"):
        return Path(a[len("sqlite:///"):]).resolve() == Path(b[len("sqlite:///"):]).resolve()
    return a.rstrip("/") == b.rstrip("/")


def workspace_uri(root: Path, entries: list | None = None) -> str:
    """The store every command of the workspace at `root` records to: MLFLOW_TRACKING_URI when set (said once on
    stderr when it is not the store the workspace recorded at init), else the recorded store, else (a seal that
    recorded none) the current folder's default."""
    import sys

    from holdout.ledger import Kind, Ledger
    from holdout.records import recorded_store

    if entries is None:
        try:
            entries = Ledger(Path(root) / "ledger.duckdb").entries(Kind.SEAL)
        except Exception:  # noqa: BLE001 - no readable ledger: the integrity checks say why, not this
            entries = []
    seal = next((view(e, Seal) for e in entries if e.kind == Kind.SEAL), None)
    info = seal.mlflow if seal is not None else None
    recorded = recorded_store(root, dict(info)) if info and info.get("uri") else None
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        if recorded and not _same_store(env, recorded) and (str(root), env) not in _NOTICED:
            _NOTICED.add((str(root), env))
            sys.stderr.write(f"ratchet: MLFLOW_TRACKING_URI={env} is used, not the store {root} recorded at init "
                             f"({recorded}); unset it to record there.\n")
        return env
    return recorded or tracking_uri()


def _opened_store(experiment: str) -> str | None:
    """The store of the workspace this process opened whose seal names `experiment` (None if it opened none, or
    when MLFLOW_TRACKING_URI names the store for every command anyway)."""
    from holdout.ledger import Kind, Ledger
    from optimizer.workspace.layout import OPENED

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    for root in reversed(list(OPENED)):
        try:
            seals = Ledger(root / "ledger.duckdb").entries(Kind.SEAL)
        except Exception:  # noqa: BLE001
            continue
        if seals and (view(seals[0], Seal).mlflow or {}).get("experiment") == experiment:
            return workspace_uri(root, seals)
    return None


def _artifact_root(uri: str) -> str | None:
    """Artifacts beside a local sqlite store; a server picks its own root."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
    return None


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\..*")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # MLflow prints run URLs to stdout for server URIs; stdout belongs to `ratchet try --json`.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    fail_fast()
    import mlflow  # noqa: F401  (its import configures the loggers we then quieten)

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


SCHEMA_ROWS = 1000  # rows an MLflow dataset's schema is inferred from


class Tracker:
    """A thin, explicit client over one MLflow experiment."""

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        _quiet()
        from mlflow.tracking import MlflowClient

        import mlflow

        self.uri = uri or _opened_store(experiment) or tracking_uri()
        down = unreachable(self.uri)
        if down:
            raise RatchetError(f"MLflow at {self.uri}: {down}; nothing was recorded. Start the tracking server or "
                               "point MLFLOW_TRACKING_URI at a reachable one.")
        self.mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id if found
                else self.client.create_experiment(experiment, artifact_location=_artifact_root(self.uri))
            )
        except Exception as exc:  # any backend failure is a user-facing configuration problem
            raise RatchetError(f"MLflow at {self.uri}: cannot open experiment {experiment!r} ({exc}). "
                               "Check MLFLOW_TRACKING_URI or that the server is up.") from None
        self.experiment = experiment
        self.down: str | None = None  # why MLflow stopped answering mid-command (None: it answers)
        self.recorder: Any = None  # writes runs that keep nothing from a second process (recorder.behind)
        self.missed: list[str] = []  # what was not recorded meanwhile (the ledger holds it; `ratchet sync` writes it)

    @contextmanager
    def run(self, name: str, *, nested: bool = False, tags: Mapping[str, str] | None = None) -> Iterator[Any]:
        """An MLflow run around the body. If ending it fails while a Ctrl-C unwinds, or once MLflow is down, the
        body's own outcome is what propagates: the run stays RUNNING and the next command's `end_stale_runs` marks
        it KILLED."""
        active = self.mlflow.start_run(experiment_id=self.experiment_id, run_name=name, nested=nested,
                                       tags={Tag.VERSION: __version__, **(tags or {})})
        try:
            yield active
        except BaseException as exc:
            try:
                active.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:  # noqa: BLE001 - e.g. "database is locked" by the write an interrupt cut short
                if not (isinstance(exc, KeyboardInterrupt) or self.down or unreachable(self.uri)):
                    raise
                # MLflow took the run off its active stack before the write that failed
            raise
        try:
            active.__exit__(None, None, None)
        except Exception:  # noqa: BLE001
            if not self.down:
                raise

    def attempt(self, what: str, write: Callable[[], Any], *, catch_up: Callable[[], Any] | None = None) -> bool:
        """`write` (records of `what`) unless MLflow is down; False when it is. A failure while the server no longer
        answers /health marks it down; once it answers again, `catch_up` first writes what it missed meanwhile.
        Any other failure is raised: a bug, not an outage."""
        if self.down:
            if unreachable(self.uri):
                self.missed.append(what)
                return False
            self.down = None
            if catch_up is not None:
                catch_up()
            self.missed.clear()
        try:
            write()
            return True
        except Exception:
            why = unreachable(self.uri)
            if why is None:
                raise
            self.down = why
            self.missed.append(what)
            return False

    def log_batch(self, run_id: str, *, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Parameters and metrics (at step 0, now) in one write: the fluent calls write each kind separately and
        look up the run's logged models for every metric batch."""
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()])

    def log_artifacts(self, artifact_uri: str, folder: Path) -> None:
        """A folder's files into a run's artifacts, at the run's known artifact URI (the client would read the whole
        run back first, every metric included, only to learn it)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(artifact_uri, tracking_uri=self.uri).log_artifacts(str(folder))

    def log_json(self, data: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
            self.mlflow.log_artifact(str(path))

    def log_text(self, text: str, name: str) -> None:
        self.mlflow.log_text(text, name)

    def log_dataset(self, frame: pd.DataFrame, *, name: str, digest: str, context: str, source: str) -> None:
        """MLflow caps a digest at 36 characters: it gets our sha256's prefix, the run tag the whole. MLflow infers a
        schema row by row in Python (about 5 s per million rows): it is inferred from the first SCHEMA_ROWS rows,
        and the profile still counts every row. The digest is always ours: MLflow's own digest code fails on an
        empty frame with pandas 3 string columns."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.pandas_dataset import PandasDataset

        class Counted(PandasDataset):
            @property
            def profile(self) -> dict[str, int]:
                return {"num_rows": len(frame), "num_elements": int(frame.size)}

        head = frame.head(SCHEMA_ROWS)
        ds = Counted(head, source=resolve_dataset_source(source), name=name, digest=digest[:36])
        self.mlflow.log_input(ds, context=context, tags={"sha256": digest})
        self.mlflow.set_tag(f"ratchet.sha256.{name}", digest)

    def end_stale_runs(self) -> int:
        """Mark KILLED the runs a killed process left RUNNING (the caller holds the workspace's runner lock, so none
        of them is live); returns how many."""
        active = self.mlflow.active_run()
        stale = [r for r in self.runs("attributes.status = 'RUNNING'")
                 if active is None or r.info.run_id != active.info.run_id]
        for r in stale:
            self.client.set_terminated(r.info.run_id, status="KILLED")
        return len(stale)

    def runs(self, filter_string: str = "") -> list[Any]:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=5000)


def _diff_summary(diff: str, limit: int = 480) -> str:
    """The changed lines of a unified diff, compact enough for an MLflow parameter."""
    from optimizer.base.diffs import changed_lines

    changed = changed_lines(diff)
    text = " | ".join(ln.strip() for ln in changed)
    return (text[: limit - 3] + "...") if len(text) > limit else (text or "(no change)")


def record_experiment(tracker: Tracker, ctx: Any, record: Any, folder: Path, *, nested: bool,
                      evaluation: Any = None, parent_run: str | None = None) -> str:
    """One MLflow run per experiment: parameters, dev metrics, guard results, gate answer, artifacts; a kept
    policy is also logged as a model and registered (`evaluation` holds its fitted model's handle). `parent_run`:
    the loop's run, named by id (from another process, where it is not the active run)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from optimizer.base.tunables import parse

    source = (folder / "policy.py").read_text()
    try:
        tunables = {f"policy.{t.name}": t.value for t in parse(source)}
    except (ValueError, SyntaxError):
        tunables = {}
    tags = {
        Tag.KIND: "experiment", Tag.EXPERIMENT: record.experiment, Tag.VERDICT: str(record.status),
        Tag.PROPOSER: record.proposer, Tag.POLICY_SHA256: record.policy_sha256,
        Tag.SEAL: ctx.manifest_sha256, Tag.COMMIT: record.commit or record.parent_commit,
        Tag.LEDGER_SEQ: str(record.ledger_seq), Tag.DEVICE: str(record.fit.get("device", "")),
        **({MLFLOW_PARENT_RUN_ID: parent_run} if parent_run else {}),
    }
    with tracker.run(record.experiment, nested=nested, tags=tags) as active:
        fault("mlflow:experiment")  # its MLflow run is open, half logged
        params = {"diff": _diff_summary(record.diff), "hypothesis": record.hypothesis[:500] or "-",
                  "proposer": record.proposer, "device": record.fit.get("device", "-"), **tunables}
        metrics = {f"dev_{k}": v for k, v in record.dev_metrics.items()}
        metrics.update({f"seconds_{k}": v for k, v in record.seconds.items()})
        for key in ("fit_seconds", "decide_seconds"):
            if isinstance(record.fit.get(key), (int, float)):
                metrics[f"policy_{key}"] = float(record.fit[key])
        if record.gate and record.gate.get("answer") is not None:
            metrics["holdout_gate_answer"] = float(record.gate["answer"])
            metrics["holdout_gate_budget_left"] = float(record.gate["budget_left"])
        for r in record.verdict.results:
            metrics[f"guard_{r.name}_passed"] = float(r.passed)
            for key, value in r.figures.items():  # e.g. drift psi, significance bounds
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    metrics[re.sub(r"[^A-Za-z0-9_./ -]", "_", f"guard_{r.name}_{key}")] = float(value)
        metrics.update({k: float(v) for k, v in record.proposal.items()  # e.g. the meta-agent's tokens and cost
                        if k.startswith("agent_") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        metrics.update({f"task_agent_{k}": float(v) for k, v in record.fit.get("task_agent", {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})  # requests, tokens, cost
        metrics["kept"] = float(record.kept)
        tracker.log_batch(active.info.run_id, params=params, metrics=metrics)
        tracker.log_artifacts(active.info.artifact_uri, folder)
        if record.kept and evaluation is not None and evaluation.model is not None:
            from optimizer.tracking.registry import register

            register(tracker, ctx, experiment=record.experiment, commit=record.commit, source=source,
                     model=evaluation.model, run_id=active.info.run_id)
        return active.info.run_id


def open_tracker(ctx: Context) -> "Tracker":
    """The workspace's own tracking store (recorded at init; MLFLOW_TRACKING_URI overrides it), with what a stop
    left there settled: runs left RUNNING marked KILLED, and registered versions whose ledger entry is missing
    entered from the registry (a keep writes both)."""
    from optimizer.records.keep import complete_models

    entries = ctx.ledger.entries()
    tracker = Tracker(queries.tracking_experiment(entries), workspace_uri(ctx.ws.root, entries))
    tracker.end_stale_runs()  # a killed run's loop and experiment runs stay RUNNING otherwise
    done = complete_models(ctx, tracker.client)
    if done:
        ctx.repaired = "; ".join(filter(None, (ctx.repaired, done)))
    return tracker
