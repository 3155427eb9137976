"""The audit's checks of the MLflow records against the ledger: the seal run, every experiment run, the registered
versions and the registry's aliases. MLflow unreachable or unreadable: "not verified", never "intact"."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from holdout import lineage, queries
from holdout.checks import Check, unverified
from holdout.ledger import Entry, Kind
from holdout.records import CHAMPION, PREVIOUS, MlflowRecords, RecordsUnavailable, TrackingRecords, recorded_store


def open_records(root: Path, seal_payload: dict[str, Any], open_records: Callable[[str, str], TrackingRecords] | None,
                 ) -> tuple[TrackingRecords | None, str | None]:
    """The tracking store the workspace recorded at init (MLFLOW_TRACKING_URI overrides it), or why it cannot be
    read."""
    info = seal_payload.get("mlflow", {})
    uri = os.environ.get("MLFLOW_TRACKING_URI") or recorded_store(root, info)
    try:
        return (open_records or MlflowRecords)(info["experiment"], uri), None
    except KeyError:
        return None, f"the ledger's seal entry names no MLflow experiment (uri {uri})"
    except RecordsUnavailable as exc:
        return None, f"MLflow at {uri} cannot be read: {exc}"


def seal_run(records: TrackingRecords | None, why: str | None, seal_payload: dict[str, Any], expected: str) -> Check:
    run_id = seal_payload.get("mlflow", {}).get("run_id")
    if records is None:
        return unverified("mlflow_seal", str(why))
    try:
        recorded = records.seal_hash(run_id)
    except RecordsUnavailable as exc:
        return unverified("mlflow_seal", f"MLflow at {records.uri} cannot be read: {exc}")
    if recorded is None:
        return Check("mlflow_seal", False, f"MLflow run {run_id} at {records.uri}: no seal hash recorded")
    ok = recorded == expected
    return Check("mlflow_seal", ok, f"MLflow run {run_id}: seal {recorded[:12]}" +
                 ("" if ok else f" != ledger {expected[:12]}"))


def experiment_runs(records: TrackingRecords | None, why: str | None, entries: list[Entry]) -> Check:
    """Each experiment MLflow knows of must be in the ledger under the same id (no truncation)."""
    if records is None:
        return unverified("mlflow_experiments", str(why))
    try:
        runs = records.experiment_runs()
    except RecordsUnavailable as exc:
        return unverified("mlflow_experiments", f"MLflow at {records.uri} cannot be read: {exc}")
    by_seq = {e.seq: e for e in entries if e.kind == Kind.EXPERIMENT}
    for run in runs:
        seq, name = run.ledger_seq, run.experiment
        entry = by_seq.get(int(seq)) if seq and seq.isdigit() else None
        if entry is None or entry.data.get("experiment") != name:
            return Check("mlflow_experiments", False, f"MLflow run {run.run_id} records {name} at ledger seq "
                         f"{seq}, which the ledger does not hold: entries were removed")
    # A run the ledger holds and MLflow lacks (an outage, a kill, a command that wrote to another store) is not
    # tampering, but the records are not whole: not verified until `ratchet sync` writes it.
    finished = {run.ledger_seq for run in runs if run.status == "FINISHED"}
    lacking = [e.data.get("experiment") for seq, e in by_seq.items() if str(seq) not in finished]
    if lacking:
        return unverified("mlflow_experiments", f"{len(lacking)} experiment(s) the ledger holds have "
                     f"no finished MLflow run at {records.uri} ({', '.join(map(str, lacking[:5]))}"
                     f"{', ...' if len(lacking) > 5 else ''}): run `ratchet sync DIR` to write them")
    return Check("mlflow_experiments", True, f"{len(runs)} MLflow experiment runs all found in the ledger, and "
                 f"each of its {len(by_seq)} experiments in MLflow")


def model_entries(records: TrackingRecords | None, why: str | None, entries: list[Entry], name: str) -> Check:
    """Every registered version of the workspace's model has its ledger entry and every entry its version: a keep
    writes both, so a removed model entry (the version can then never be promoted) fails here."""
    if records is None:
        return unverified("model_entries", str(why))
    try:
        versions = records.model_versions(name)
    except RecordsUnavailable as exc:
        return unverified("model_entries", f"MLflow at {records.uri} cannot be read: {exc}")
    problems = lineage.model_problems(versions, entries, name)
    return Check("model_entries", not problems, "; ".join(problems[:5]) or
                 f"{len(versions)} registered version(s) of {name}, each with its ledger entry")


def registry_aliases(records: TrackingRecords | None, why: str | None, entries: list[Entry]) -> Check:
    """The registry's champion and previous aliases are where the ledger's last promotion or rollback put them
    (with nothing promoted, neither is set): an alias moved behind the ledger's back fails here."""
    moves, move = queries.moves(entries), queries.latest_move(entries)
    named = move.name if move is not None else next((m.name for m in reversed(queries.models(entries))), None)
    if move is None and named is None:
        return Check("registry_aliases", True, "nothing promoted")
    if records is None:
        return unverified("registry_aliases", str(why))
    name = str(named)
    try:
        aliases = records.model_aliases(name)
    except RecordsUnavailable as exc:
        return unverified("registry_aliases", f"MLflow at {records.uri} cannot be read: {exc}")
    champion, previous = queries.aliases_set(entries)
    want = {CHAMPION: champion, PREVIOUS: previous}
    if aliases is None:
        return (Check("registry_aliases", True, "nothing promoted") if not moves else
                Check("registry_aliases", False, f"registered model {name} not found at {records.uri}; ledger entry "
                      f"{moves[-1].seq} ({moves[-1].kind}) set champion to version {want[CHAMPION]}"))
    have = {alias: aliases.get(alias) for alias in want}
    since = f"ledger entry {moves[-1].seq} ({moves[-1].kind})" if moves else "the ledger (nothing promoted)"
    wrong = [f"alias {a} is {_version(have[a])}, {since} says {_version(want[a])}" for a in want if have[a] != want[a]]
    if wrong:
        return Check("registry_aliases", False, f"registered model {name} at {records.uri}: " + "; ".join(wrong) +
                     ": moved outside `ratchet promote`/`ratchet rollback`")
    if not moves:
        return Check("registry_aliases", True, f"nothing promoted; {name} has no champion alias")
    return Check("registry_aliases", True, f"{name}: champion {_version(want[CHAMPION])}, previous "
                 f"{_version(want[PREVIOUS])}, as {since} set them (approved by {move.approved_by if move else None})")


def _version(version: int | None) -> str:
    return "unset" if version is None else f"version {version}"
