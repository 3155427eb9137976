"""A shadow trial bound to the ledger: what a verdict reads is hashed when it is written and verified before use.

A trial's start entry (SHADOW_TRIAL) holds the sha256 of its rows in shadow.duckdb (the trial's record, its events,
its own decisions, its quarantine) and of the files beside them (`shadow/<trial>/events.parquet` and each policy's
constants, e.g. the THRESHOLD the report applies); each outcomes entry (SHADOW_OUTCOMES) holds its batch's rows'.
`shadow report`, `promote` and `ratchet audit` verify the store and the files against them, so an UPDATE in
shadow.duckdb, a batch inserted by hand or an edited constants file fails all three, naming the trial.

Decisions that `ratchet serve` logs while it shadows a trial (source 'serve') are no input of a verdict (the report
reads the trial's own, source 'trial') and are written per request: they are not bound, and not verified.

Each table's hash is order-free: its columns as text, one 64-bit hash per row, sorted (holdout.hashing.content_hash),
so verifying a trial of 10k events costs a few reads and a sort, not a loop over rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from holdout import queries
from holdout.hashing import content_hash, sha256_file
from holdout.ledger import Entry
from optimizer.base.errors import IntegrityError

if TYPE_CHECKING:
    from optimizer.records.context import Context

FILES = ("events.parquet", "champion.json", "challenger.json")
_NULL = "\\N"  # a SQL NULL in the hashed text (as PostgreSQL's COPY writes it)
_COLUMNS = {  # what each bound table's hash covers, per trial
    "trials": ("champion_commit", "challenger_commit", "challenger_ref", "events_sha256"),
    "events": ("event_id", "ts", "seq"),
    "decisions": ("event_id", "ts", "policy", "decision", "latency_ms", "acted"),
    "quarantine": ("row_number", "event_id", "reason"),
}
_OUTCOMES = ("event_id", "label", "known_at", "reviewed", "extra")


def _text(columns: tuple[str, ...]) -> str:
    return ", ".join(f"coalesce(CAST({c} AS VARCHAR), '{_NULL}') AS {c}" for c in columns)


def table_hashes(store: Any, trial: str) -> dict[str, str]:
    """sha256 of the trial's rows in each bound table (its decisions: the trial's own, not serve's)."""
    out = {}
    for table, columns in _COLUMNS.items():
        only = " AND source = 'trial'" if table == "decisions" else ""
        rows = store.query(f"SELECT {_text(columns)} FROM {table} WHERE trial = ?{only}", [trial])
        out[table] = content_hash(rows)
    return out


def batch_hashes(store: Any, trial: str) -> dict[int, tuple[int, str]]:
    """Per outcomes batch of the trial in the store: (rows, sha256 of its rows)."""
    rows = store.query(f"SELECT batch, {_text(_OUTCOMES)} FROM outcomes WHERE trial = ?", [trial])
    return {int(b): (len(part), content_hash(part.drop(columns="batch").reset_index(drop=True)))
            for b, part in rows.groupby("batch", sort=True)}


def file_hashes(folder: Path) -> dict[str, str | None]:
    """sha256 of each file of the trial's folder a report reads (None for one that is missing)."""
    return {name: sha256_file(folder / name) if (folder / name).is_file() else None for name in FILES}


def problems(root: Path, trial: str, entries: list[Entry]) -> list[str]:
    """What of `trial` in the workspace at `root` differs from the ledger (empty when it verifies)."""
    from optimizer.release.shadow.store import ShadowStore

    started = queries.trial(entries, trial)
    if started is None:
        return ["the ledger has no start entry for it"]
    bound = started.store_sha256, started.files_sha256
    if not (isinstance(bound[0], dict) and isinstance(bound[1], dict)):
        return [(f"its start (ledger entry {started.seq}) holds no hashes of its rows and files (a trial started "
                 "before trials were bound to the ledger): it cannot be verified; start a new trial")]
    store = ShadowStore(Path(root) / "shadow.duckdb")
    if not store.path.exists():
        return ["shadow.duckdb is missing"]
    with store.reading():
        tables = table_hashes(store, trial)
        found = [f"its {t} rows in shadow.duckdb changed" for t in _COLUMNS if tables[t] != bound[0].get(t)]
        found += _batch_problems(store, trial, entries)
    files = file_hashes(Path(root) / "shadow" / trial)
    return found + [f"shadow/{trial}/{name} " + ("is missing" if files[name] is None else "changed")
                    for name in FILES if files[name] != bound[1].get(name)]


def _batch_problems(store: Any, trial: str, entries: list[Entry]) -> list[str]:
    """Each outcomes batch against its ledger entry, and batches the ledger never recorded."""
    recorded = {int(b.batch): b for b in queries.outcome_batches(entries, trial)}
    stored = batch_hashes(store, trial)
    found = []
    for batch, entry in sorted(recorded.items()):
        rows, digest = stored.get(batch, (0, None))
        if "rows_sha256" in entry.absent:
            found.append(f"outcomes batch {batch} (ledger entry {entry.seq}) holds no hash of its rows (joined before "
                         "outcomes were bound to the ledger)")
        elif rows != entry.rows or (rows and digest != entry.rows_sha256):
            found.append(f"its outcomes batch {batch} rows in shadow.duckdb changed")
    extra = sorted(set(stored) - set(recorded))
    if extra:
        found.append(f"outcomes batch(es) {', '.join(map(str, extra))} are in shadow.duckdb but never in the ledger")
    return found


def verify_trial(ctx: Context, trial: str, entries: list[Entry]) -> None:
    """IntegrityError naming the trial and what differs when its store rows or files differ from the ledger."""
    found = problems(ctx.ws.root, trial, entries)
    if found:
        raise IntegrityError(f"{trial}: does not match the ledger ({'; '.join(found)}); its verdict cannot be "
                             f"trusted. Run `ratchet audit {ctx.ws.root}`.")


def audit_trials(root: Path, entries: list[Entry]) -> tuple[bool, str]:
    """Every trial of the ledger verified, and any trial in shadow.duckdb the ledger never recorded: (passed,
    detail) for `ratchet audit`."""
    from optimizer.release.shadow.store import ShadowStore

    trials = queries.trial_ids(entries)
    failures = [f"{t}: does not match the ledger ({'; '.join(p)})" for t in trials if (p := problems(root, t, entries))]
    store = ShadowStore(Path(root) / "shadow.duckdb")
    unknown = sorted({t.trial for t in store.trials()} - set(trials))
    failures += [f"{t}: in shadow.duckdb but never in the ledger" for t in unknown]
    if failures:
        return False, "; ".join(failures)
    return True, (f"{len(trials)} trial(s): events, decisions, quarantine, outcomes and files match the ledger"
                  if trials else "no shadow trial")
