"""`ratchet audit --html`: the audit as a document an auditor can file. For every check: what it compared, what
an intact workspace shows, what was found, and the command that reproduces it; then the config changes,
upgrades, promotions and rollbacks with their approvers (from the ledger)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from holdout.checks import CheckStatus

W = "{ws}"  # stands for the workspace in the commands below


@dataclass(frozen=True)
class CheckDoc:
    compares: str
    intact: str
    command: str  # besides `ratchet audit WS --check NAME`, a way to see it without ratchet's audit code, if any


CATALOG = {
    "manifest": CheckDoc("holdout/MANIFEST.json can be read", "the manifest exists and parses", f"cat {W}/holdout/MANIFEST.json"),
    "holdout_file": CheckDoc("the sha256 of each holdout file with the one sealed in the manifest; no extra files",
                             "every digest equals the sealed one", f"sha256sum {W}/holdout/*.parquet"),
    "content": CheckDoc("a hash of the holdout's row content and its row count with the manifest's",
                        "the content hash and the row count equal the sealed ones", ""),
    "hmac": CheckDoc("the manifest's HMAC signature with RATCHET_SEAL_KEY, when the key is set",
                     "a valid signature (or the key is not set here)", ""),
    "ledger_chain": CheckDoc("each ledger entry's hash with sha256 of its sequence number, time, kind, payload and "
                             "the previous entry's hash", "every entry links to the one before it",
                             f"duckdb {W}/ledger.duckdb 'SELECT seq, kind, prev_hash, hash FROM ledger ORDER BY seq'"),
    "manifest_vs_ledger": CheckDoc("the manifest's sha256 with the last seal entry of the ledger",
                                   "they are equal: the manifest was not rewritten", f"sha256sum {W}/holdout/MANIFEST.json"),
    "mlflow_seal": CheckDoc("the seal hash tagged on the seal's MLflow run with the ledger's", "they are equal", ""),
    "mlflow_experiments": CheckDoc("every experiment run in MLflow with the ledger entry it names",
                                   "each run's experiment id and ledger sequence number are in the ledger", ""),
    "registry_aliases": CheckDoc("the registry's champion and previous aliases with the last promotion or rollback "
                                 "in the ledger", "the aliases point where the ledger put them", ""),
    "verdict_inputs": CheckDoc("the splits, the config and the cached decisions and states with the digests the "
                               "ledger bound them to", "every file's sha256 equals its ledger digest",
                               f"sha256sum {W}/data/*.parquet {W}/ratchet.yaml {W}/champion/* {W}/baseline/*"),
    "experiment_records": CheckDoc("each experiments/<id>/record.json with its ledger entry",
                                   "every field agrees", f"ls {W}/experiments"),
    "experiment_ids": CheckDoc("experiment ids, folders, holdout queries and kept commits with the ledger",
                               "each id once, each folder and query with its entry, each kept commit holding the "
                               "recorded policy.py", f"git -C {W} log --oneline"),
    "keep_transactions": CheckDoc("each keep intent with its completed experiment entry",
                                  "no keep left half done", ""),
    "config_changes": CheckDoc("every approved change of ratchet.yaml since the seal", "each with its approver", ""),
    "gate_replay": CheckDoc("every holdout answer with a replay of the gate from its recorded inputs and draws",
                            "every answer replays exactly", ""),
    "gate_settings": CheckDoc("each answer's threshold and noise with ratchet.yaml's gate multiples of its standard "
                              "error", "every answer used the configured settings", ""),
    "shadow_trials": CheckDoc("each shadow trial's rows in shadow.duckdb (events, decisions, quarantine, outcome "
                              "batches) and its files with the hashes its ledger entries bound them to",
                              "every table, batch and file matches; no trial or batch the ledger never recorded",
                              f"duckdb {W}/shadow.duckdb"),
    "shadow_looks": CheckDoc("every look at every trial recomputed from the store as it stood then, with the "
                             "settings the look recorded", "each verdict and bound as recorded", ""),
    "scorer_source": CheckDoc("the sha256 of each installed scorer file (holdout/scorer.py declares them) with the "
                              "sources in force: the seal's manifest, then each `ratchet upgrade`; each upgrade "
                              "with the span before it and the ledger's figures", "the installed code is the last "
                              "span's; every upgrade starts where the span before it ended and reproduced what it "
                              "says", ""),
}
CATALOG["replay"] = CheckDoc("the baseline and every kept policy re-executed at its commit in the sandbox, held "
                             "to the ledger", "the decisions, metrics and gate inputs replay", "")
GENERIC = CheckDoc("a kept policy re-executed at its commit in the sandbox, held to the ledger (--replay)",
                   "the decisions, metrics and gate inputs replay", "")


def doc(name: str) -> CheckDoc:
    return CATALOG.get(name, GENERIC)


# A status's class in the page's style.
CSS = {CheckStatus.NOT_VERIFIED: "unverified", CheckStatus.NOT_CHECKED: "unchecked"}


def write_document(report: Any, workspace: Path, path: Path) -> Path:
    from holdout.ledger import Ledger
    from optimizer.report.facts import events
    from optimizer.report.html import render

    try:
        moves = events(Ledger(Path(workspace) / "ledger.duckdb").entries())
    except Exception as exc:  # noqa: BLE001 - an unreadable ledger is already a failed check above; say so here too
        moves, why = (), f"the ledger cannot be read ({type(exc).__name__}); see ledger_chain"
    else:
        why = ""
    ws = str(workspace)
    rows = [{"check": c, "doc": doc(c.name), "command": doc(c.name).command.replace(W, ws),
             "status": c.status, "css": CSS.get(c.status, c.status)}
            for c in report.checks]
    page = render("audit.html.j2", report=report, rows=rows, events=moves, events_note=why, workspace=ws,
                  made_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
