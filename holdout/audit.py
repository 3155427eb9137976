"""`ratchet audit`: re-derive every hash from the files themselves, trusting no cached state."""
from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from domains.errors import RatchetError
from holdout import audit_mlflow, evidence, lineage, queries, upgrades
from holdout.checks import Check, CheckStatus
from holdout.entries import ConfigChange, view
from holdout.hashing import canonical_json, content_hash, sha256_bytes, sha256_file, verify_signature
from holdout.ledger import Entry, Kind, Ledger, verify_chain
from holdout.manifest import MANIFEST, SEAL_KEY_ENV, manifest_body, manifest_sha256, read_manifest
from holdout.records import TrackingRecords

SEAL_KINDS = ("seal", "reseal")


@dataclass(frozen=True)
class AuditReport:
    workspace: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def unverified(self) -> tuple[Check, ...]:
        """Checks that could not be made (MLflow unreachable or unreadable): an outage, not a verdict."""
        return tuple(c for c in self.checks if c.status == CheckStatus.NOT_VERIFIED)

    @property
    def not_checked(self) -> tuple[Check, ...]:
        """Checks not made here by design (hmac without RATCHET_SEAL_KEY): shown as such, never as a pass."""
        return tuple(c for c in self.checks if c.status == CheckStatus.NOT_CHECKED)

    @property
    def status(self) -> str:
        """intact, unverified (every failure is a check that could not be made) or failed."""
        failed = [c for c in self.checks if not c.passed]
        return "intact" if not failed else ("unverified" if len(failed) == len(self.unverified) else "failed")

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "ok": self.ok, "status": self.status,
                "checks": [{"check": c.name, "status": c.status, "passed": c.passed, "detail": c.detail}
                           for c in self.checks]}


def _files(holdout_dir: Path, manifest: dict[str, Any]) -> list[Check]:
    out = []
    for name, expected in sorted(manifest.get("files", {}).items()):
        path = holdout_dir / name
        if not path.is_file():
            out.append(Check("holdout_file", False, f"{path}: missing (sealed sha256 {expected[:12]})"))
            continue
        actual = sha256_file(path)
        ok = actual == expected
        out.append(Check("holdout_file", ok, f"{path}: sha256 {actual[:12]}" + ("" if ok else f" != sealed {expected[:12]}")))
    extra = sorted(p.name for p in holdout_dir.iterdir() if p.name not in manifest.get("files", {}) and p.name != MANIFEST)
    if extra:
        out.append(Check("holdout_file", False, f"{holdout_dir}: files not in the manifest: {', '.join(extra)}"))
    return out


def _content(holdout_dir: Path, manifest: dict[str, Any]) -> Check:
    name = next(iter(manifest.get("files", {})), "")  # none named: the folder itself, which is no Parquet file
    try:
        frame = pd.read_parquet(holdout_dir / name)
    except Exception as exc:
        return Check("content", False, f"{holdout_dir / str(name)}: cannot be read as Parquet ({type(exc).__name__})")
    actual = content_hash(frame)
    ok = actual == manifest.get("content_sha256") and len(frame) == manifest.get("rows")
    return Check("content", ok, f"row content sha256 {actual[:12]}, {len(frame)} rows" +
                 ("" if ok else f" != sealed {str(manifest.get('content_sha256'))[:12]}, {manifest.get('rows')} rows"))


def _signature(manifest: dict[str, Any]) -> Check:
    key = os.environ.get(SEAL_KEY_ENV)
    sig = manifest.get("hmac")
    if not key:
        return Check("hmac", True, f"not checked: {SEAL_KEY_ENV} is not set" + (" (manifest is signed)" if sig else ""),
                     checked=False)
    if not sig:
        return Check("hmac", False, f"{MANIFEST} carries no signature, but {SEAL_KEY_ENV} is set: it was not sealed with it")
    ok = verify_signature(manifest_body(manifest), key, sig)
    return Check("hmac", ok, "manifest signature valid" if ok else f"{MANIFEST}: HMAC signature does not match its content")


def _scorer(root: Path, entries: list[Entry], manifest: dict[str, Any], source_root: Path) -> Check:
    """Each span of the ledger against the scorer sources in force then, the installed code against the last."""
    return Check("scorer_source", *upgrades.report(root, entries, manifest, source_root))


def _gate_replay(entries: list[Entry]) -> Check:
    """Every holdout answer is re-derived from its recorded inputs and draws."""
    from holdout.gate import replay

    gates = [e for e in entries if e.kind == Kind.GATE]
    stream: list[int] = []  # the holdout tests that passed under the current seal, as the next test must name them
    tests = 0
    for e in entries:
        if e.kind in (Kind.SEAL, Kind.RESEAL):
            stream, tests = [], 0
        elif e.kind == Kind.GATE and e.data.get("kind") == "lord":
            d = e.data
            if d.get("test") != tests + 1 or d.get("discoveries") != stream:
                return Check("gate_replay", False, f"ledger entry {e.seq} (gate query {d.get('query')}): holdout test "
                             f"{d.get('test')} with earlier passes {d.get('discoveries')} does not follow the ledger's "
                             f"stream (test {tests + 1}, passes {stream}): its level was not the one it was owed")
            tests += 1
            stream = stream + [tests] if d.get("passed") else stream
    for e in gates:
        d = e.data
        try:
            again = replay(d, seed=d["seed"], query=d["query"]).to_dict()
        except (KeyError, TypeError, ValueError) as exc:  # an entry ratchet never wrote: a finding, not a crash
            return Check("gate_replay", False, f"ledger entry {e.seq} is not a holdout answer ratchet wrote "
                         f"({type(exc).__name__}: {exc})")
        if any(again.get(k) != d.get(k) for k in again):
            wrong = sorted(k for k in again if again.get(k) != d.get(k))
            return Check("gate_replay", False, f"ledger entry {e.seq} (gate query {d['query']}): replay disagrees on "
                         f"{', '.join(wrong)}")
    return Check("gate_replay", True, f"{len(gates)} holdout answers replayed exactly")


def _gate_settings(entries: list[Entry], settings: Mapping[str, float] | str) -> Check:
    """Each answer used the workspace config's multiples of its recorded standard error: a loop that widened
    the threshold or thinned the noise would replay exactly and still be caught here."""
    if isinstance(settings, str):
        return Check("gate_settings", False, f"the gate's settings cannot be read: {settings}")
    for e in (e for e in entries if e.kind == Kind.GATE and e.data.get("kind") == "lord"):
        if e.data["fdr"] != settings.get("fdr"):
            return Check("gate_settings", False, f"ledger entry {e.seq} (gate query {e.data['query']}): fdr "
                         f"{e.data['fdr']:g} is not gate.fdr {settings.get('fdr')} from ratchet.yaml")
    for e in (e for e in entries if e.kind == Kind.GATE and e.data.get("kind") == "thresholdout" and "se" in e.data):
        d = e.data
        for key in ("threshold", "sigma"):
            expected = settings[f"{key}_se"] * d["se"]
            if not math.isclose(d[key], expected, rel_tol=1e-9, abs_tol=1e-12):
                return Check("gate_settings", False, f"ledger entry {e.seq} (gate query {d['query']}): {key} "
                             f"{d[key]:.6g} is not {key}_se {settings[f'{key}_se']:g} x se {d['se']:.6g} from ratchet.yaml")
    return Check("gate_settings", True, "every holdout answer used the configured threshold and noise")


def _sealed_holdouts(root: Path, entries: list[Entry]) -> Check:
    problems, summary = lineage.sealed_holdouts(root, entries)
    return Check("sealed_holdouts", not problems, "; ".join(problems[:5]) or summary)


def _head(root: Path, entries: list[Entry]) -> Check:
    """HEAD is the last commit the ledger recorded and holds its policy (a pending keep: see keep_transactions)."""
    return Check("kept_head", *lineage.head_report(root, entries))


def _verdict_inputs(root: Path, entries: list[Entry]) -> Check:
    """Splits, config and the cached decisions and states of baseline, champion and reference vs the ledger."""
    problems = evidence.verify(root, entries)
    if problems:
        return Check("verdict_inputs", False, "; ".join(problems))
    bound, _ = evidence.expected(entries)
    return Check("verdict_inputs", True, f"{sum(v is not None for v in bound.values())} files (splits, config, "
                 "cached decisions and states) match the ledger")


def _records_files(root: Path, entries: list[Entry]) -> Check:
    """Every experiment in the ledger has its folder, and its record.json says what the ledger says."""
    problems = []
    experiments = [e for e in entries if e.kind == Kind.EXPERIMENT]
    for e in experiments:
        d = e.data
        path = root / "experiments" / str(d.get("experiment")) / "record.json"
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            problems.append(f"{path.relative_to(root)} is missing (ledger entry {e.seq})")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{path.relative_to(root)} cannot be read ({type(exc).__name__})")
            continue
        fields = [k for k in d if k != "evidence" and canonical_json(stored.get(k)) != canonical_json(d[k])]
        if fields:
            problems.append(f"{path.relative_to(root)} disagrees with ledger entry {e.seq} on {', '.join(sorted(fields))}")
    if problems:
        return Check("experiment_records", False, "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                                                              if len(problems) > 5 else ""))
    return Check("experiment_records", True, f"{len(experiments)} experiment records match the ledger")


def _experiment_ids(root: Path, entries: list[Entry]) -> Check:
    """Each experiment id once, each folder with its entry, each holdout query with its experiment, and each kept
    commit holding the policy.py the ledger recorded (what two runs at once, or a kill, would break)."""
    ids = [str(e.data.get("experiment")) for e in entries if e.kind == Kind.EXPERIMENT]
    problems = sorted({f"{i} is in the ledger {ids.count(i)} times" for i in ids if ids.count(i) > 1})
    folder = root / "experiments"
    extra = sorted(p.name for p in folder.iterdir() if p.name not in ids) if folder.is_dir() else []
    problems += [f"experiments/{name} has no ledger entry" for name in extra]
    problems += [f"holdout query {e.data.get('query')} (ledger entry {e.seq}) names {e.data['experiment']}, which "
                 "the ledger does not hold: run `ratchet repair DIR`" for e in entries
                 if e.kind == Kind.GATE and e.data.get("experiment") and e.data["experiment"] not in ids]
    for e in entries:
        if e.kind == Kind.EXPERIMENT and e.data.get("kept") and e.data.get("commit"):
            shown = subprocess.run(["git", "show", f"{e.data['commit']}:policy.py"], cwd=root, capture_output=True)
            if shown.returncode != 0 or sha256_bytes(shown.stdout) != e.data.get("policy_sha256"):
                problems.append(f"kept commit {str(e.data['commit'])[:12]} of {e.data['experiment']} does not hold "
                                "the policy.py the ledger recorded")
    if problems:
        return Check("experiment_ids", False, "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                                                          if len(problems) > 5 else ""))
    return Check("experiment_ids", True, f"{len(ids)} experiment ids, each once, each folder and holdout query "
                 "with its entry, each kept commit holding its recorded policy")


def _keeps(entries: list[Entry]) -> Check:
    """A keep intent without its completion is a keep a stop interrupted; the next load repairs it."""
    pending = queries.pending_keeps(entries)
    if pending:
        return Check("keep_transactions", False, f"the keep of {pending[-1].experiment} (ledger entry "
                     f"{pending[-1].seq}) was interrupted: run `ratchet repair DIR` to complete or roll it back")
    kept = sum(e.kind == Kind.KEEP_INTENT for e in entries)
    return Check("keep_transactions", True, f"{kept} keeps, each completed")


def _config_changes(entries: list[Entry]) -> Check:
    """Every change of the resolved config after the seal, with its approver (the file itself is verified by
    verdict_inputs against the last of these)."""
    changes = [e for e in entries if e.kind == Kind.CONFIG]
    if not changes:
        return Check("config_changes", True, "no config change since the seal")
    return Check("config_changes", True, f"{len(changes)} recorded: " + "; ".join(map(describe_change, changes)))


def describe_change(entry: Any) -> str:
    """One config event as a line: what changed, who approved it, why."""
    change = view(entry, ConfigChange)
    what = ", ".join(f"{k} {v['old']!r} -> {v['new']!r}" for k, v in change.changes.items())
    return f"entry {entry.seq}: {what}; approved by {change.approved_by}: {change.reason}"


def audit(root: Path, *, source_root: Path, gate_settings: Mapping[str, float] | str | None = None,
          records: Callable[[str, str], TrackingRecords] | None = None) -> AuditReport:
    """Every check, without trusting the optimizer. `gate_settings`: the config's gate multiples to hold the
    ledger's answers to (or why they could not be read); None skips that check. `records`: opens the tracking
    store (experiment name, uri); MLflow's by default."""
    root = Path(root).resolve()
    holdout_dir = root / "holdout"
    checks: list[Check] = []
    try:
        manifest = read_manifest(holdout_dir)
    except RatchetError as exc:
        return AuditReport(str(root), (Check("manifest", False, str(exc)),))
    current = manifest_sha256(manifest)
    checks += _files(holdout_dir, manifest)
    checks.append(_content(holdout_dir, manifest))
    checks.append(_signature(manifest))

    try:
        entries = Ledger(root / "ledger.duckdb").entries()
    except Exception as exc:
        entries = []
        checks.append(Check("ledger_chain", False, f"{root / 'ledger.duckdb'}: unreadable ({exc})"))
    else:
        broken = verify_chain(entries)
        checks.append(Check("ledger_chain", not broken, "; ".join(broken) or f"{len(entries)} entries, chain intact"))
    seals = [e for e in entries if e.kind in SEAL_KINDS]
    if seals:
        sealed = seals[-1].data.get("manifest_sha256", "")
        ok = sealed == current
        checks.append(Check("manifest_vs_ledger", ok, f"{MANIFEST} sha256 {current[:12]}" +
                            (" matches the ledger's seal entry" if ok else
                             f" != ledger entry {seals[-1].seq} ({seals[-1].kind}) {sealed[:12]}: the manifest was rewritten")))
        store, why = audit_mlflow.open_records(root, seals[-1].data, records)
        checks.append(audit_mlflow.seal_run(store, why, seals[-1].data, sealed))
        if seals[0].data.get("mlflow") != seals[-1].data.get("mlflow"):  # a reseal may record elsewhere
            store, why = audit_mlflow.open_records(root, seals[0].data, records)
        checks.append(audit_mlflow.experiment_runs(store, why, entries))
        checks.append(audit_mlflow.registry_aliases(store, why, entries))
        checks.append(audit_mlflow.model_entries(store, why, entries, queries.model_name(entries, root.name)))
    else:
        checks.append(Check("manifest_vs_ledger", False, "the ledger has no seal entry"))
    if entries:
        keeps = _keeps(entries)
        checks += [_verdict_inputs(root, entries), _records_files(root, entries), _experiment_ids(root, entries),
                   keeps, *([_head(root, entries)] if keeps.passed else []), _sealed_holdouts(root, entries),
                   _config_changes(entries)]
    checks.append(_gate_replay(entries))
    if gate_settings is not None:
        checks.append(_gate_settings(entries, gate_settings))
    checks.append(_scorer(root, entries, manifest, Path(source_root)))
    return AuditReport(str(root), tuple(checks))
