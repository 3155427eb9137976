"""After a stop: what it left the workspace in, and the one repair for each case.

A stop can cut a keep between any two of its steps (records/keep.py lists them) or a run between a holdout query,
its ledger entry and its record folder. `reconcile` runs wherever a writer loads the workspace (load_context) and
where a run is interrupted: `diagnose` reads git, the state folders and the ledger and names the case (a frozen
record, read only), `repair` runs that case's one repair. A rollback and a query left without its experiment are
recorded as crashed ExperimentRecords, with the ledger payload such records have always had.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, NoReturn

from guards import GuardName, GuardResult, Verdict
from holdout.hashing import sha256_bytes
from holdout.ledger import Entry, Kind
from optimizer.records.experiment_record import ExperimentRecord, ExperimentStatus
from optimizer.records.keep import INTENT, complete, state_dirs, write_record
from optimizer.records.policy_state import PolicyState

if TYPE_CHECKING:
    from optimizer.records.context import Context
    from optimizer.workspace.layout import Workspace


@dataclass(frozen=True)
class Clean:
    """Git, champion state, ledger and record folders tell one story: nothing to repair."""


@dataclass(frozen=True)
class NoBaseline:
    """A first run stopped after writing the baseline state but before recording it: nothing was judged yet."""


@dataclass(frozen=True)
class CleanupLeft:
    """A keep completed; only its cleanup was left (champion.next/, or champion.prev/ beside champion/)."""


@dataclass(frozen=True)
class UnrecordedGate:
    """The run stopped after a holdout query and before its experiment reached the ledger (no keep began)."""

    gate: Entry


@dataclass(frozen=True)
class MissingFolder:
    """The run stopped after the last experiment's ledger entry and before its record folder was written.
    `intent`: its keep's intent when it was kept (the intent holds the source), else None (the working copy does)."""

    entry: Entry
    intent: Entry | None


@dataclass(frozen=True)
class CutKeep:
    """A keep's intent without its completion: the keep stopped somewhere between its steps."""

    intent: Mapping[str, Any]  # the keep_intent entry's data: the record, the source, the parent commit
    head: str
    mid_swap: bool  # champion/ was renamed to champion.prev/ and champion.next/ not yet renamed into its place

    @property
    def experiment(self) -> str:
        return str(self.intent["experiment"])

    @property
    def parent(self) -> str:
        return str(self.intent["parent_commit"])


@dataclass(frozen=True)
class RollForward(CutKeep):
    """The new champion state was in place with HEAD on the candidate's commit: only the completion is missing."""


@dataclass(frozen=True)
class RollBack(CutKeep):
    """Stopped before the new champion state was in place. `moved`: HEAD is on the candidate's commit;
    `new_state`: champion/ holds the candidate's state (the swap ran, but not with HEAD on its commit)."""

    moved: bool
    new_state: bool


@dataclass(frozen=True)
class HistoryChanged(CutKeep):
    """HEAD is neither the cut keep's parent nor its commit: the git history was changed by hand."""


Stop = Clean | NoBaseline | CleanupLeft | UnrecordedGate | MissingFolder | RollForward | RollBack | HistoryChanged


def reconcile(ctx: Context, reason: str = "") -> str | None:
    """Bring git, champion state and ledger back to one story after a stop; what was done, or None.

    `reason`: why the keep stopped, when the caller knows (a failed git commit); recorded with the rollback."""
    return repair(ctx, diagnose(ctx), reason)


def diagnose(ctx: Context) -> Stop:
    """What state a stop left the workspace in. Reads only: `repair` is what changes anything."""
    entries = ctx.ledger.entries()
    if not any(e.kind == Kind.BASELINE for e in entries):
        return NoBaseline()
    done = {e.data.get("experiment") for e in entries if e.kind == Kind.EXPERIMENT}
    pending = [e for e in entries if e.kind == INTENT and e.data["experiment"] not in done]
    if pending:
        return _cut_keep(ctx, pending[-1].data)
    gate = _unrecorded_gate(entries, done)
    if gate is not None:
        return UnrecordedGate(gate)
    last = next((e for e in reversed(entries) if e.kind == Kind.EXPERIMENT), None)
    if last is not None and not (ctx.ws.experiments / last.data["experiment"]).exists():
        intent = next((e for e in reversed(entries) if e.kind == INTENT
                       and e.data["experiment"] == last.data["experiment"]), None)
        return MissingFolder(last, intent)
    champion, nxt, prev = state_dirs(ctx)
    if nxt.exists() or (champion.is_dir() and prev.exists()):
        return CleanupLeft()
    return Clean()


def _cut_keep(ctx: Context, intent: Mapping[str, Any]) -> RollForward | RollBack | HistoryChanged:
    """Which way a cut keep goes: forward when the candidate's state and commit are both in place, else back."""
    champion, _, prev = state_dirs(ctx)
    mid_swap = not champion.exists() and prev.is_dir()
    state = PolicyState.load(prev if mid_swap else champion)  # champion/ once the swap is finished
    head, parent = ctx.ws.head(), intent["parent_commit"]
    moved = head != parent
    if moved and (ctx.ws.git("rev-parse", f"{head}^").strip() != parent
                  or sha256_bytes(ctx.ws.git("show", f"{head}:policy.py").encode()) != intent["policy_sha256"]):
        return HistoryChanged(intent, head, mid_swap)
    ours = state if state is not None and state.experiment == intent["experiment"] else None
    if ours is not None and moved and ours.commit == head:
        return RollForward(intent, head, mid_swap)
    return RollBack(intent, head, mid_swap, moved, ours is not None)


def repair(ctx: Context, stop: Stop, reason: str = "") -> str | None:
    """The one repair for what `diagnose` found; what was done, or None."""
    match stop:
        case NoBaseline():
            forget_baseline(ctx)
        case CleanupLeft():
            finish_cleanup(ctx)
        case UnrecordedGate():
            return record_stopped(ctx, stop)
        case MissingFolder():
            return rewrite_folder(ctx, stop)
        case RollForward():
            return roll_forward(ctx, stop)
        case RollBack():
            return roll_back(ctx, stop, reason)
        case HistoryChanged():
            refuse_changed_history(ctx, stop)
    return None


def forget_baseline(ctx: Context) -> None:
    """Remove the state files of a baseline the ledger never recorded: the next run evaluates it again."""
    for folder in (ctx.baseline_dir, *state_dirs(ctx)):
        shutil.rmtree(folder, ignore_errors=True)


def finish_cleanup(ctx: Context) -> None:
    """Remove what a completed keep left: champion.next/, and champion.prev/ once champion/ is in place."""
    champion, nxt, prev = state_dirs(ctx)
    shutil.rmtree(nxt, ignore_errors=True)
    if champion.is_dir():
        shutil.rmtree(prev, ignore_errors=True)


def record_stopped(ctx: Context, stop: UnrecordedGate) -> str:
    """Record the experiment of an unrecorded holdout query as crashed: its id is used, its query stays counted."""
    finish_cleanup(ctx)
    ws = ctx.ws
    exp, parent = stop.gate.data["experiment"], ws.head()
    working = ws.policy.read_text() if ws.policy.is_file() else ""
    source = working if working != ws.champion_source() else ""
    payload = _stopped_record(stop.gate, parent, source)
    entry = ctx.ledger.append(Kind.EXPERIMENT, payload)
    ws.revert()
    _write_recovered(ws, {**payload, "ledger_seq": entry.seq}, source, parent)
    return f"{exp}: stopped after its holdout query; recorded as crashed"


def rewrite_folder(ctx: Context, stop: MissingFolder) -> str:
    """Write the last experiment's record folder from its ledger entry (and the source its intent or the working
    copy holds)."""
    finish_cleanup(ctx)
    ws, last = ctx.ws, stop.entry
    if stop.intent is not None:
        source, parent = stop.intent.data["source"], stop.intent.data["parent_commit"]
    else:  # a verdict without a keep: its candidate is still the working copy, unless someone changed it
        working = ws.policy.read_text() if ws.policy.is_file() else ""
        source = working if sha256_bytes(working.encode()) == last.data.get("policy_sha256") else ""
        parent = last.data["parent_commit"]
        ws.revert()
    _write_recovered(ws, {**last.data, "ledger_seq": last.seq}, source, parent)
    return f"{last.data['experiment']}: its record folder was rewritten from the ledger"


def roll_forward(ctx: Context, stop: RollForward) -> str:
    """Write the cut keep's completion from its intent: its commit and state were both in place."""
    _finish_swap(ctx, stop)
    entry = complete(ctx, stop.intent["record"], stop.head)
    shutil.rmtree(state_dirs(ctx)[2], ignore_errors=True)
    _write_recovered(ctx.ws, {**stop.intent["record"], "commit": stop.head, "ledger_seq": entry.seq},
                     stop.intent["source"], stop.parent)
    return f"{stop.experiment}: the interrupted keep was completed (commit {stop.head[:12]})"


def roll_back(ctx: Context, stop: RollBack, reason: str = "") -> str:
    """HEAD back to the parent, the old champion state back, the experiment recorded as crashed (the gate query it
    spent stays spent and counted)."""
    _finish_swap(ctx, stop)
    champion, nxt, prev = state_dirs(ctx)
    if stop.new_state:
        shutil.rmtree(champion)
        prev.rename(champion)
    shutil.rmtree(nxt, ignore_errors=True)
    if stop.moved:
        ctx.ws.git("reset", "-q", stop.parent)
    ctx.ws.revert()
    crashed = _rolled_back(stop.intent["record"], reason or "stopped before the new champion state was in place")
    entry = ctx.ledger.append(Kind.EXPERIMENT, crashed)
    _write_recovered(ctx.ws, {**crashed, "ledger_seq": entry.seq}, stop.intent["source"], stop.parent)
    return f"{stop.experiment}: the interrupted keep was rolled back to {stop.parent[:12]}"


def refuse_changed_history(ctx: Context, stop: HistoryChanged) -> NoReturn:
    """Nothing to repair automatically: a person changed the history. The swap is finished first, so the audit
    the message asks for finds champion/ in place."""
    from optimizer.base.errors import IntegrityError

    _finish_swap(ctx, stop)
    root = ctx.ws.root
    raise IntegrityError(f"{root}: git HEAD {stop.head[:12]} is neither the parent {stop.parent[:12]} of the "
                         f"interrupted keep of {stop.experiment} nor its commit: the history was changed by hand. "
                         f"Run `git -C {root} reset {stop.parent}` and then `ratchet audit {root}`.")


def _finish_swap(ctx: Context, stop: CutKeep) -> None:
    """A stop between the swap's two renames left no champion/: the old state goes back into place."""
    if stop.mid_swap:
        champion, _, prev = state_dirs(ctx)
        prev.rename(champion)


def _rolled_back(payload: Mapping[str, Any], why: str) -> dict[str, Any]:
    """The cut keep's record (its intent's payload) as crashed: no commit, and a failed `record` result saying so."""
    kept = ExperimentRecord.from_payload(payload)
    note = GuardResult(GuardName.RECORD, False, f"the keep was interrupted ({why}) and rolled back; the holdout query it "
                                        "spent stays counted")
    return replace(kept, status=ExperimentStatus.CRASHED, commit=None,
                   verdict=Verdict((*kept.verdict.results, note))).to_payload()


def _unrecorded_gate(entries: list[Entry], done: set[Any]) -> Entry | None:
    """The last holdout query when its experiment never reached the ledger (the run stopped in between), else None."""
    last = next((e for e in reversed(entries) if e.kind == Kind.GATE), None)
    exp = last.data.get("experiment") if last is not None else None
    if not exp or exp in done or any(e.kind == INTENT and e.data.get("experiment") == exp for e in entries):
        return None
    return last


def _stopped_record(gate: Entry, parent: str, source: str) -> dict[str, Any]:
    """The crashed record of an experiment known only by its holdout query (its diff goes to the record folder,
    drawn from the parent's policy)."""
    exp = gate.data["experiment"]
    detail = (f"the run stopped after this experiment's holdout query (gate query {gate.data.get('query')}) and "
              "before its verdict was recorded; recorded as crashed on the next load, the query stays counted")
    payload = ExperimentRecord(
        experiment=exp, number=int(exp.split("-")[1]), proposer="unknown", hypothesis="",
        status=ExperimentStatus.CRASHED, verdict=Verdict((GuardResult(GuardName.RECORD, False, detail),)),
        parent_commit=parent, commit=None, policy_sha256=sha256_bytes(source.encode()) if source else "", diff="",
        dev_metrics={}, gate=dict(gate.data), fit={}, seconds={}).to_payload()
    del payload["scorer"]  # no scorer judged it; such records never named one, and the ledger they are in is hashed
    return payload


def _write_recovered(ws: Workspace, record: dict[str, Any], source: str, parent: str) -> None:
    """The repaired experiment's record folder, unless it is there (its diff drawn from the parent's policy)."""
    from optimizer.base.diffs import unified_diff as diff

    if not (ws.experiments / record["experiment"]).exists():
        write_record(ws, record, source, diff(ws.git("show", f"{parent}:policy.py"), source), None)
