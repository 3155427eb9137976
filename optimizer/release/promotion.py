"""Promotion and rollback: the registry's `champion` alias moves only with a passed shadow trial and a named
approver, and the ledger records every move before the registry makes it.

The ledger's promotions and rollbacks form a stack of versions: a promotion pushes one, a rollback pops it;
`champion` is the top and `previous` the one below. The baseline acts before any promotion, so it is the bottom:
the first promotion names it as `previous`, and a rollback can return to it. A move the ledger holds but the registry does not (a stop
between the two writes) is completed by the next `ratchet promote` or `ratchet rollback`; any other disagreement
is refused, and `ratchet audit` reports it. The passed trial a promotion rests on is verified against the ledger
first (optimizer.release.shadow.integrity): an edited store or constants file refuses the promotion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from holdout import queries
from holdout.entries import ModelVersion, Promotion, Rollback, ShadowResult, of, view
from holdout.ledger import Entry, Kind, Ledger, verify_chain
from holdout.records import CHAMPION, PREVIOUS, Tag
from optimizer.base.errors import IntegrityError, RatchetError
from optimizer.records.refs import PolicyRef, resolve
from optimizer.release.shadow.integrity import verify_trial
from optimizer.workspace import approvers
from optimizer.workspace.runner import exclusive

MOVES = queries.MOVES


class PromotionRefused(RatchetError):
    """The evidence does not allow the move (no passed trial, nothing to roll back to): checked, and refused."""


@exclusive
def promote(path: Path, ref: str, *, approved_by: str, reason: str = "") -> Entry:
    """Point `champion` at REF's registered version (`previous` at the one it replaces), once REF's latest shadow
    trial passed; returns the ledger's promotion entry."""
    from optimizer.records.context import load_context

    approver, reason = _approver(approved_by, f"promoting {ref}"), approvers.reason(reason, required=False)
    ctx = load_context(path)
    entries = ctx.ledger.entries()
    policy = resolve(ctx, ref, entries)
    trial = passed_trial(entries, policy)
    if queries.trial(entries, trial) is not None:
        verify_trial(ctx, trial, entries)  # the passed trial's rows and files are still the ones the ledger bound
        from optimizer.release.shadow.report import replay_looks

        forged = replay_looks(ctx, trial, entries, last_only=True)  # and its passing look is what they give
        if forged:
            raise IntegrityError(f"{trial}: its last look does not replay ({forged[0]}); run `ratchet audit "
                                 f"{ctx.ws.root}` (after an upgrade that changed looks, `ratchet shadow report "
                                 f"{ctx.ws.root} {trial}` looks again under the installed code).")
    model = registered_version(entries, policy)
    client, uri = _client(ctx.ledger)
    moves = queries.moves(entries)
    done = _settle(client, uri, model.name, moves, path)
    stack = version_stack(moves)
    if done is not None and done.kind == Kind.PROMOTION and stack[-1:] == [model.version]:
        return done  # this very promotion, interrupted before the registry moved, now complete
    if stack[-1:] == [model.version]:
        raise PromotionRefused(f"{ref}: version {model.version} of {model.name} is already the champion; "
                               "nothing to promote.")
    _check_version(client, uri, model, path)
    # Before any promotion the baseline acts (optimizer.records.refs.acting): the first promotion replaces it, so a
    # rollback can return to it.
    below = stack[-1] if stack else _baseline_version(entries, model.version)
    return _move(client, uri, ctx.ledger, Promotion(
        name=model.name, version=model.version, previous_version=below, experiment=policy.experiment,
        commit=policy.commit, policy_sha256=policy.policy_sha256, trial=trial, approved_by=approver, reason=reason))


@exclusive
def rollback(path: Path, *, approved_by: str, reason: str = "") -> Entry:
    """Move `champion` back to `previous` (and `previous` to the version below it, if any); returns the ledger's
    rollback entry."""
    from optimizer.workspace.layout import Workspace

    approver, reason = _approver(approved_by, "the rollback"), approvers.reason(reason, required=False)
    ledger = Ledger(Workspace.open(path).ledger)
    entries = ledger.entries()
    broken = verify_chain(entries)
    if broken:
        raise IntegrityError(f"{ledger.path}: {broken[0]}; run `ratchet audit {path}`.")
    moves = queries.moves(entries)
    if not moves:
        raise PromotionRefused(f"{path}: nothing has been promoted, so there is nothing to roll back; promote a "
                               "policy with a passed shadow trial first (`ratchet promote`).")
    client, uri = _client(ledger)
    name = _moved(moves[-1]).name
    if name is None:
        raise IntegrityError(f"{ledger.path}: {moves[-1].kind} entry {moves[-1].seq} names no model; run `ratchet "
                             f"audit {path}`.")
    _settle(client, uri, name, moves, path)
    stack = version_stack(moves)
    if len(stack) < 2:
        raise PromotionRefused(f"{name}: the champion, version {stack[-1] if stack else '-'}, has no previous "
                               "version to roll back to; promote the policy you want instead (`ratchet promote`).")
    back = next(m for m in reversed(queries.models(entries)) if m.version == stack[-2])
    return _move(client, uri, ledger, Rollback(
        name=name, version=stack[-2], previous_version=stack[-3] if len(stack) > 2 else None,
        rolled_back_version=stack[-1], experiment=back.experiment, commit=back.commit,
        policy_sha256=back.policy_sha256, approved_by=approver, reason=reason))


def passed_trial(entries: list, policy: PolicyRef) -> str:
    """The trial id of REF's latest shadow trial when it passed; refused otherwise, saying what to do."""
    results = [r for r in of(entries, ShadowResult) if (r.challenger or {}).get("commit") == policy.commit]
    what = f"{policy.ref} (commit {policy.commit[:12]})"
    if not results:
        raise PromotionRefused(f"{what}: no shadow trial of it in the ledger; promotion needs a passed shadow trial "
                               f"with it as the challenger: `ratchet shadow start DIR --challenger {policy.ref} "
                               "--events FILE`, then `ratchet shadow report DIR TRIAL` once its outcomes are in.")
    last = results[-1]
    if last.status != "passed":
        raise PromotionRefused(f"{what}: its latest shadow trial {last.trial} is {last.status}, not "
                               "passed; promotion needs a passed shadow trial: add outcomes and report it again "
                               "(`ratchet shadow outcomes`, `ratchet shadow report`), or start a new one.")
    return str(last.trial)


def registered_version(entries: list, policy: PolicyRef) -> ModelVersion:
    """The ledger's record of REF's registered model version; refused when it has none."""
    found = [m for m in queries.models(entries) if m.commit == policy.commit]
    if not found:
        raise PromotionRefused(f"{policy.ref} (commit {policy.commit[:12]}): no registered model version in the "
                               "ledger; a policy is registered when it is kept (or, the baseline, when it is first "
                               "evaluated) with MLflow reachable. Keep it with `ratchet try DIR FILE --keep`.")
    if found[-1].policy_sha256 != policy.policy_sha256:
        raise IntegrityError(f"{policy.ref}: model version {found[-1].version} was registered for another "
                             "policy.py (sha256 differs); run `ratchet audit`.")
    return found[-1]


def version_stack(moves: list) -> list[int]:
    """The champion history the ledger's moves leave: the version the first promotion replaced (the baseline's),
    then each promotion pushes its version and each rollback pops."""
    first = view(moves[0], Promotion).previous_version if moves and moves[0].kind == Kind.PROMOTION else None
    stack: list[int] = [int(first)] if first is not None else []
    for e in moves:
        if e.kind == Kind.PROMOTION:
            version = view(e, Promotion).version
            if version is None:
                raise IntegrityError(f"ledger entry {e.seq}: a promotion that names no version; run `ratchet audit`.")
            stack.append(int(version))
        elif stack:
            stack.pop()
    return stack


def _baseline_version(entries: list, promoted: int) -> int | None:
    """The baseline's registered version, which acts until the first promotion (None when it is the one promoted)."""
    found = next((int(m.version) for m in queries.models(entries) if m.experiment == "baseline"), None)
    return None if found == promoted else found


def expected_aliases(moves: list) -> dict[str, int | None]:
    """Where the last move put the aliases (nothing promoted: neither is set)."""
    champion, previous = queries.aliases_set(moves)
    return {CHAMPION: champion, PREVIOUS: previous}


def _approver(approved_by: str, what: str) -> str:
    """The name recorded in the ledger and on the model version: one with a visible character
    (optimizer.workspace.approvers)."""
    return approvers.approver(approved_by, what)


def _client(ledger: Ledger) -> tuple[Any, str]:
    """The registry beside the workspace's MLflow runs (MLFLOW_TRACKING_URI, else ./mlflow, as `ratchet run`)."""
    from optimizer.tracking.runs import Tracker

    tracker = Tracker(queries.tracking_experiment(ledger.entries()))
    return tracker.client, tracker.uri


def _aliases(client: Any, uri: str, name: str) -> dict[str, int | None]:
    """Where the registry's champion and previous aliases point now."""
    try:
        found = client.get_registered_model(name).aliases or {}
    except Exception as exc:  # noqa: BLE001 - any backend failure is one line for the user
        why = " ".join(str(exc).split())[:200]
        raise RatchetError(f"MLflow at {uri}: cannot read registered model {name} ({type(exc).__name__}: {why}). "
                           "Check MLFLOW_TRACKING_URI or that the server is up.") from None
    return {alias: int(found[alias]) if alias in found else None for alias in (CHAMPION, PREVIOUS)}


def _settle(client: Any, uri: str, name: str, moves: list, path: Path) -> Entry | None:
    """Complete the last move when the registry still shows the state before it (returns it); refuse any other
    disagreement between the registry and the ledger."""
    have, want = _aliases(client, uri, name), expected_aliases(moves)
    if have == want:
        return None
    if moves and have == expected_aliases(moves[:-1]):
        _apply(client, moves[-1])
        return moves[-1]
    wrong = "; ".join(f"alias {a} is {_v(have[a])}, the ledger says {_v(want[a])}" for a in want if have[a] != want[a])
    raise IntegrityError(f"registered model {name} at {uri}: {wrong}: an alias was moved outside ratchet. Run "
                         f"`ratchet audit {path}` and set it back to what the ledger says before moving it again.")


def _check_version(client: Any, uri: str, model: ModelVersion, path: Path) -> None:
    """The registry's version is the one the ledger registered (same policy and fitted bytes)."""
    try:
        tags = client.get_model_version(model.name, str(model.version)).tags
    except Exception as exc:  # noqa: BLE001
        raise RatchetError(f"MLflow at {uri}: cannot read version {model.version} of {model.name} "
                           f"({type(exc).__name__}); check MLFLOW_TRACKING_URI or that the server is up.") from None
    for tag, recorded in ((Tag.POLICY_SHA256, model.policy_sha256), (Tag.MODEL_SHA256, model.model_sha256)):
        if tags.get(tag) != recorded:
            raise IntegrityError(f"version {model.version} of {model.name} at {uri}: tag {tag} is "
                                 f"{str(tags.get(tag))[:12]}, the ledger registered {str(recorded)[:12]}; run "
                                 f"`ratchet audit {path}`.")


def _move(client: Any, uri: str, ledger: Ledger, move: Promotion | Rollback) -> Entry:
    """The ledger first, then the registry: a registry failure leaves a move the next call completes."""
    entry = ledger.append(move.KIND, move.to_payload())
    try:
        _apply(client, entry)
    except Exception as exc:  # noqa: BLE001
        raise RatchetError(f"the ledger records the {move.KIND} (entry {entry.seq}) but MLflow at {uri} could not "
                           f"move the aliases of {move.name} ({type(exc).__name__}); the next `ratchet promote` or "
                           "`ratchet rollback` completes it once MLflow is reachable.") from None
    return entry


def _moved(entry: Entry) -> Promotion | Rollback:
    return view(entry, Promotion) if entry.kind == Kind.PROMOTION else view(entry, Rollback)


def _apply(client: Any, entry: Entry) -> None:
    """Set the aliases a move names (removing `previous` when it names none); tag a promoted version."""
    move = _moved(entry)
    name = move.name
    for alias, version in ((PREVIOUS, move.previous_version), (CHAMPION, move.version)):
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, str(version))
    if isinstance(move, Promotion):
        for tag, value in ((Tag.APPROVED_BY, move.approved_by), (Tag.REASON, move.reason), (Tag.TRIAL, move.trial),
                           (Tag.COMMIT, move.commit)):
            client.set_model_version_tag(name, str(move.version), tag, value or "-")


def _v(version: int | None) -> str:
    return "unset" if version is None else f"version {version}"
