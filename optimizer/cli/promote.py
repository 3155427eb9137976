"""`ratchet promote` and `ratchet rollback`: move the registry's champion alias, by a named approver, on the record.

Exit 0 moved, 1 refused (no passed shadow trial, nothing to roll back to), 2 usage or integrity error.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from holdout.entries import Promotion, Rollback, view
from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail, out


def _refuse(exc: RatchetError) -> None:
    """A refusal is a verdict (exit 1); anything else is a usage or integrity error (`fail`'s exit 2)."""
    from optimizer.release.promotion import PromotionRefused

    if isinstance(exc, PromotionRefused):
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1)
    fail(exc)


@app.command(epilog="Example: ratchet promote ws exp-0003 --approved-by 'A. Reviewer' --reason 'trial-0002 passed, "
                     "net savings +4 %'")
def promote(
    workspace: Path = typer.Argument(..., help="The workspace."),
    ref: str = typer.Argument(..., help="The policy to promote: a kept experiment (exp-0003), champion, baseline "
                              "or a commit of the workspace."),
    approved_by: str = typer.Option("", "--approved-by", help="Who approves the promotion (recorded in the ledger "
                                    "and on the model version; required)."),
    reason: str = typer.Option("", help="Why (recorded in the ledger and on the model version)."),
    as_json: bool = typer.Option(False, "--json", help="Print the ledger's promotion entry as JSON only."),
) -> None:
    """Point the registry's `champion` alias at REF's model version and `previous` at the one it replaces.

    Refused (exit 1) unless REF's latest shadow trial passed and REF has a registered model version."""
    from optimizer.release.promotion import promote as do_promote

    try:
        entry = do_promote(workspace, ref, approved_by=approved_by, reason=reason)
    except RatchetError as exc:
        _refuse(exc)
    if as_json:
        out.print_json(json.dumps({"seq": entry.seq, **entry.data}))
        return
    d = view(entry, Promotion)
    previous = f"version {d.previous_version}" if d.previous_version is not None else "none"
    out.print(f"{d.name}: champion -> version {d.version} ({d.experiment or str(d.commit)[:12]}, trial "
              f"{d.trial}); previous -> {previous}; approved by {d.approved_by}; ledger entry {entry.seq}",
              markup=False)


@app.command(epilog="Example: ratchet rollback ws --approved-by 'A. Reviewer' --reason 'false declines up in "
                     "production'")
def rollback(
    workspace: Path = typer.Argument(..., help="The workspace."),
    approved_by: str = typer.Option("", "--approved-by", help="Who approves the rollback (recorded in the ledger; "
                                    "required)."),
    reason: str = typer.Option("", help="Why (recorded in the ledger)."),
) -> None:
    """Move the registry's `champion` alias back to `previous` (and `previous` to the version before it, if any).

    Refused (exit 1) when nothing was promoted before the current champion."""
    from optimizer.release.promotion import rollback as do_rollback

    try:
        entry = do_rollback(workspace, approved_by=approved_by, reason=reason)
    except RatchetError as exc:
        _refuse(exc)
    d = view(entry, Rollback)
    previous = f"version {d.previous_version}" if d.previous_version is not None else "none"
    out.print(f"{d.name}: champion -> version {d.version} ({d.experiment or str(d.commit)[:12]}), rolled "
              f"back from version {d.rolled_back_version}; previous -> {previous}; approved by "
              f"{d.approved_by}; ledger entry {entry.seq}", markup=False)
