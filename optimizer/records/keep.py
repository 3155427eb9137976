"""A keep is one transaction; a stop at any step is completed or rolled back on the next load.

The steps, in order:
1. ledger `keep_intent`: the whole experiment record (without its commit) and the candidate's source;
2. git commit of policy.py (HEAD moves to the candidate);
3. the new champion state is written to `champion.next/` and swapped in (`champion/` -> `champion.prev/`);
4. ledger `experiment`, the completion: the record with its commit and the new champion state's evidence;
5. `champion.prev/` is removed.
A stop before the swap completed rolls back: HEAD returns to the parent, the old state is restored and the
experiment is recorded as crashed (the gate query it spent stays spent and counted). A stop after it rolls
forward: the completion is written from the intent. Either way git, state, ledger and files agree again
(records/recovery.py: what a stop left, and the one repair for each case).

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
from typing import TYPE_CHECKING, Any, Mapping

from holdout import queries
from holdout.entries import Baseline, Experiment, KeepIntent, ModelVersion, of, view
from holdout.evidence import bind_state
from holdout.ledger import Entry, Kind
from optimizer.base.faults import fault

if TYPE_CHECKING:
    from optimizer.records.context import Context
    from optimizer.records.policy_state import PolicyState
    from optimizer.workspace.layout import Workspace

INTENT = Kind.KEEP_INTENT
STEPS = ("intent", "commit", "state", "swap", "complete", "cleanup")


def _reached(step: str) -> None:
    """Called after each step: a fault point (RATCHET_FAULT=keep:<step>), and tests replace it to stop there."""
    fault(f"keep:{step}")


def state_dirs(ctx: Context) -> tuple[Path, Path, Path]:
    champion = ctx.champion_dir
    return champion, champion.with_name("champion.next"), champion.with_name("champion.prev")


def write_record(ws: Workspace, record: dict[str, Any], source: str, diff: str, trace: dict[str, Any] | None) -> Path:
    """The experiment's immutable folder: policy, diff, record and (dev-only) trace, read-only."""
    folder: Path = ws.experiments / record["experiment"]
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "policy.py").write_text(source)
    (folder / "diff.patch").write_text(diff)
    (folder / "record.json").write_text(json.dumps({**record, "diff": diff}, indent=2, default=str))
    if trace is not None:
        (folder / "trace.json").write_text(json.dumps(trace, indent=2, default=str))
    for p in folder.iterdir():
        p.chmod(0o444)
    return folder


def keep(ctx: Context, payload: dict[str, Any], source: str, state: PolicyState, message: str) -> Entry:
    """Commit `source` as the champion with `state` (its commit filled in); returns the completion entry."""
    champion, nxt, prev = state_dirs(ctx)
    ctx.ledger.append(INTENT, KeepIntent(experiment=payload["experiment"], parent_commit=payload["parent_commit"],
                                         policy_sha256=payload["policy_sha256"], record=payload,
                                         source=source).to_payload())
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
    entry = complete(ctx, payload, commit)
    _reached("complete")
    shutil.rmtree(prev, ignore_errors=True)
    _reached("cleanup")
    return entry


def complete(ctx: Context, payload: Mapping[str, Any], commit: str) -> Entry:
    """Step 4: the experiment entry, with its commit and the new champion state's evidence."""
    return ctx.ledger.append(Kind.EXPERIMENT, {**payload, "commit": commit,
                                            "evidence": bind_state(ctx.ws.root, "champion")})


def complete_models(ctx: Context, client: Any) -> str | None:
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
    have = {m.version for m in queries.models(entries, name)}
    named = {m.experiment for m in queries.models(entries, name)}
    kept = {e.experiment: (e.commit, e.policy_sha256) for e in of(queries.kept(entries), Experiment) if e.commit}
    base = queries.baseline(entries)
    done = []
    for v in versions:
        if v.version in have or v.experiment in named:
            continue
        if v.experiment == "baseline" and base is not None:
            ok = v.commit == view(base, Baseline).commit
        else:
            ok = v.experiment in kept and (v.commit, v.policy_sha256) == kept[v.experiment]
        if not ok:
            continue
        ctx.ledger.append(Kind.MODEL, ModelVersion(
            name=name, experiment=v.experiment, commit=v.commit, policy_sha256=v.policy_sha256,
            model_sha256=v.model_sha256, run_id=v.run_id, version=v.version,
            recovered="from the registry").to_payload())
        named.add(v.experiment)
        done.append(f"{v.experiment}: its registered version {v.version} of {name} was entered in the ledger")
    return "; ".join(done) or None