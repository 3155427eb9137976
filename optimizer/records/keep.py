"""A keep is one transaction; a stop at any step is completed or rolled back on the next load.

The steps, in order:
1. ledger `keep_intent`: the whole experiment record (without its commit) and the candidate's source;
2. git commit of policy.py (HEAD moves to the candidate);
3. the new champion state is written to `champion.next/` and swapped in (`champion/` -> `champion.prev/`);
4. ledger `experiment`, the completion: the record with its commit and the new champion state's evidence;
5. `champion.prev/` is removed.
A stop before the swap completed rolls back: HEAD returns to the parent, the old state is restored and the
experiment is recorded as crashed (the gate query it spent stays spent and counted). A stop after it rolls
forward: the completion is written from the intent. Either way git, state, ledger and files agree again.

A keep with MLflow up also registers the policy as a model version and records it (a `model` entry). A stop
between the two, or a removed entry, leaves a registered version the ledger does not hold: `complete_models`
enters it from the registry (its tags say which kept commit and policy it is) whenever the tracking store is
opened, so a repaired keep can be promoted like any other.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from guards import GuardName
from holdout import queries
from holdout.evidence import bind_state
from holdout.hashing import sha256_bytes
from holdout.ledger import Entry, Kind
from optimizer.base.faults import fault

INTENT = Kind.KEEP_INTENT
STEPS = ("intent", "commit", "state", "swap", "complete", "cleanup")


def _reached(step: str) -> None:
    """Called after each step: a fault point (RATCHET_FAULT=keep:<step>), and tests replace it to stop there."""
    fault(f"keep:{step}")


def _dirs(ctx: Any) -> tuple[Path, Path, Path]:
    champion = ctx.champion_dir
    return champion, champion.with_name("champion.next"), champion.with_name("champion.prev")


def write_record(ws: Any, record: dict[str, Any], source: str, diff: str, trace: dict[str, Any] | None) -> Path:
    """The experiment's immutable folder: policy, diff, record and (dev-only) trace, read-only."""
    folder = ws.experiments / record["experiment"]
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "policy.py").write_text(source)
    (folder / "diff.patch").write_text(diff)
    (folder / "record.json").write_text(json.dumps({**record, "diff": diff}, indent=2, default=str))
    if trace is not None:
        (folder / "trace.json").write_text(json.dumps(trace, indent=2, default=str))
    for p in folder.iterdir():
        p.chmod(0o444)
    return folder


def keep(ctx: Any, payload: dict[str, Any], source: str, state: Any, message: str) -> Entry:
    """Commit `source` as the champion with `state` (its commit filled in); returns the completion entry."""
    champion, nxt, prev = _dirs(ctx)
    ctx.ledger.append(INTENT, {"experiment": payload["experiment"], "parent_commit": payload["parent_commit"],
                               "policy_sha256": payload["policy_sha256"], "record": payload, "source": source})
    _reached("intent")
    commit = ctx.ws.keep(message)
    _reached("commit")
    shutil.rmtree(nxt, ignore_errors=True)
    replace(state, commit=commit).save(nxt)
    _reached("state")
    shutil.rmtree(prev, ignore_errors=True)
    if champion.exists():
        champion.rename(prev)
    nxt.rename(champion)
    _reached("swap")
    entry = _complete(ctx, payload, commit)
    _reached("complete")
    shutil.rmtree(prev, ignore_errors=True)
    _reached("cleanup")
    return entry


def _complete(ctx: Any, payload: dict[str, Any], commit: str) -> Entry:
    return ctx.ledger.append(Kind.EXPERIMENT, {**payload, "commit": commit,
                                            "evidence": bind_state(ctx.ws.root, "champion")})


def reconcile(ctx: Any, reason: str = "") -> str | None:
    """Bring git, champion state and ledger back to one story after a stop; what was done, or None.

    `reason`: why the keep stopped, when the caller knows (a failed git commit); recorded with the rollback."""
    from optimizer.base.errors import IntegrityError

    ws, ledger = ctx.ws, ctx.ledger
    entries = ledger.entries()
    champion, nxt, prev = _dirs(ctx)
    if not any(e.kind == Kind.BASELINE for e in entries):
        # A first run stopped after writing the baseline state but before recording it: nothing was judged yet.
        for folder in (ctx.baseline_dir, champion, nxt, prev):
            shutil.rmtree(folder, ignore_errors=True)
        return None
    done = {e.data.get("experiment") for e in entries if e.kind == Kind.EXPERIMENT}
    pending = [e for e in entries if e.kind == INTENT and e.data["experiment"] not in done]
    if not pending:
        shutil.rmtree(nxt, ignore_errors=True)
        if champion.is_dir():
            shutil.rmtree(prev, ignore_errors=True)  # a keep completed; only its cleanup was left
        orphan = _unrecorded_gate(entries, done)
        if orphan is not None:
            return _record_stopped(ctx, orphan)
        last = next((e for e in reversed(entries) if e.kind == Kind.EXPERIMENT), None)
        if last is not None and not (ws.experiments / last.data["experiment"]).exists():  # stopped after the entry
            intent = next((e for e in reversed(entries) if e.kind == INTENT
                           and e.data["experiment"] == last.data["experiment"]), None)
            if intent is not None:
                source, parent = intent.data["source"], intent.data["parent_commit"]
            else:  # a verdict without a keep: its candidate is still the working copy, unless someone changed it
                working = ws.policy.read_text() if ws.policy.is_file() else ""
                source = working if sha256_bytes(working.encode()) == last.data.get("policy_sha256") else ""
                parent = last.data["parent_commit"]
                ws.revert()
            _write_recovered(ws, {**last.data, "ledger_seq": last.seq}, source, parent)
            return f"{last.data['experiment']}: its record folder was rewritten from the ledger"
        return None
    intent = pending[-1].data
    payload, parent, exp = intent["record"], intent["parent_commit"], intent["experiment"]
    if not champion.exists() and prev.is_dir():
        prev.rename(champion)  # stopped between the two renames of the swap
    head = ws.head()
    from optimizer.records.policy_state import PolicyState

    state = PolicyState.load(champion)
    moved = head != parent
    if moved and (ws.git("rev-parse", f"{head}^").strip() != parent
                  or sha256_bytes(ws.git("show", f"{head}:policy.py").encode()) != intent["policy_sha256"]):
        raise IntegrityError(f"{ws.root}: git HEAD {head[:12]} is neither the parent {parent[:12]} of the "
                             f"interrupted keep of {exp} nor its commit: the history was changed by hand. "
                             f"Run `git -C {ws.root} reset {parent}` and then `ratchet audit {ws.root}`.")
    if state is not None and state.experiment == exp and moved and state.commit == head:
        entry = _complete(ctx, payload, head)
        shutil.rmtree(prev, ignore_errors=True)
        _write_recovered(ws, {**payload, "commit": head, "ledger_seq": entry.seq}, intent["source"], parent)
        return f"{exp}: the interrupted keep was completed (commit {head[:12]})"
    if state is not None and state.experiment == exp:
        shutil.rmtree(champion)
        prev.rename(champion)
    shutil.rmtree(nxt, ignore_errors=True)
    if moved:
        ws.git("reset", "-q", parent)
    ws.revert()
    why = reason or "stopped before the new champion state was in place"
    crashed = {**payload, "status": "crashed", "kept": False, "commit": None,
               "reasons": [*payload["reasons"], {"guard": GuardName.RECORD, "passed": False, "figures": {},
                                                  "detail": f"the keep was interrupted ({why}) and rolled back; "
                                                            "the holdout query it spent stays counted"}]}
    entry = ledger.append(Kind.EXPERIMENT, crashed)
    _write_recovered(ws, {**crashed, "ledger_seq": entry.seq}, intent["source"], parent)
    return f"{exp}: the interrupted keep was rolled back to {parent[:12]}"


def _unrecorded_gate(entries: list, done: set) -> Any:
    """The last holdout query when its experiment never reached the ledger (the run stopped in between), else None."""
    last = next((e for e in reversed(entries) if e.kind == Kind.GATE), None)
    exp = last.data.get("experiment") if last is not None else None
    if not exp or exp in done or any(e.kind == INTENT and e.data.get("experiment") == exp for e in entries):
        return None
    return last


def _record_stopped(ctx: Any, gate: Entry) -> str:
    """Record the experiment of an unrecorded holdout query as crashed: its id is used, its query stays counted."""
    ws = ctx.ws
    exp, parent = gate.data["experiment"], ws.head()
    working = ws.policy.read_text() if ws.policy.is_file() else ""
    source = working if working != ws.champion_source() else ""
    detail = (f"the run stopped after this experiment's holdout query (gate query {gate.data.get('query')}) and "
              "before its verdict was recorded; recorded as crashed on the next load, the query stays counted")
    payload = {"experiment": exp, "number": int(exp.split("-")[1]), "proposer": "unknown", "hypothesis": "",
               "status": "crashed", "kept": False, "parent_commit": parent, "commit": None,
               "policy_sha256": sha256_bytes(source.encode()) if source else "", "dev_metrics": {},
               "gate": dict(gate.data), "fit": {}, "seconds": {}, "proposal": {}, "decisions_sha256": {},
               "reasons": [{"guard": GuardName.RECORD, "passed": False, "figures": {}, "detail": detail}]}
    entry = ctx.ledger.append(Kind.EXPERIMENT, payload)
    ws.revert()
    _write_recovered(ws, {**payload, "ledger_seq": entry.seq}, source, parent)
    return f"{exp}: stopped after its holdout query; recorded as crashed"


def _write_recovered(ws: Any, record: dict[str, Any], source: str, parent: str) -> None:
    from optimizer.base.diffs import unified_diff as diff

    if not (ws.experiments / record["experiment"]).exists():
        write_record(ws, record, source, diff(ws.git("show", f"{parent}:policy.py"), source), None)


def complete_models(ctx: Any, client: Any) -> str | None:
    """Enter into the ledger every registered version of the workspace's model that a keep registered and the
    ledger lost (its tags name a kept experiment or the baseline, with that entry's commit and policy); what was
    done, or None. A version whose tags match nothing the ledger kept is left for the audit to name."""
    from holdout.records import RecordsUnavailable, versions_of
    entries = ctx.ledger.entries()
    name = queries.model_name(entries, ctx.ws.root.name)
    try:
        versions = versions_of(client, name)
    except RecordsUnavailable:
        return None  # the audit says it could not verify; the next command tries again
    have = {e.data.get("version") for e in entries if e.kind == Kind.MODEL and e.data.get("name") == name}
    named = {e.data.get("experiment") for e in entries if e.kind == Kind.MODEL and e.data.get("name") == name}
    kept = {e.data["experiment"]: (e.data["commit"], e.data.get("policy_sha256")) for e in queries.kept(entries)
            if e.data.get("commit")}
    base = queries.baseline(entries)
    done = []
    for v in versions:
        if v.version in have or v.experiment in named:
            continue
        if v.experiment == "baseline" and base is not None:
            ok = v.commit == base.data["commit"]
        else:
            ok = v.experiment in kept and (v.commit, v.policy_sha256) == kept[v.experiment]
        if not ok:
            continue
        ctx.ledger.append(Kind.MODEL, {"name": name, "experiment": v.experiment, "commit": v.commit,
                                       "policy_sha256": v.policy_sha256, "model_sha256": v.model_sha256,
                                       "run_id": v.run_id, "version": v.version, "recovered": "from the registry"})
        named.add(v.experiment)
        done.append(f"{v.experiment}: its registered version {v.version} of {name} was entered in the ledger")
    return "; ".join(done) or None