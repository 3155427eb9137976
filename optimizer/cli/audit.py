"""`ratchet audit`: every integrity check of a workspace, printed, as JSON, or as a document an auditor can file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from holdout.checks import CheckStatus
from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail, out


@app.command(epilog="Example: ratchet audit ws --json   |   ratchet audit ws --replay")
def audit(
    workspace: Path = typer.Argument(..., help="The workspace to audit."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only."),
    replay: bool = typer.Option(False, "--replay", help="Also re-execute the baseline and every kept policy at "
                                "its commit in the sandbox and hold their decisions, metrics and gate inputs to "
                                "the ledger (minutes: one fit and decide per policy)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the audit as a self-contained HTML "
                                        "document: every check, what it compared, the result, the config changes "
                                        "and promotions with their approvers, the command that reproduces each."),
    only: Optional[list[str]] = typer.Option(None, "--check", help="Show only this check (repeatable); the exit "
                                             "code is then that of the checks shown."),
) -> None:
    """Re-derive every hash (holdout files, content, HMAC, ledger chain, MLflow seal, scorer sources, splits,
    config, cached decisions and states, experiment records, shadow trials' rows and files), list every config change with its approver, and
    replay every holdout answer, held to the gate settings in ratchet.yaml.

    Exit 0 when intact, 1 on any integrity failure, 2 when the folder is not a workspace, 4 when the only
    failures are checks that could not be made because MLflow is unreachable (an outage, not tampering)."""
    from holdout.audit import AuditReport
    from holdout.audit import audit as run_audit
    from holdout.checks import Check
    from optimizer.lifecycle.initialize import source_root
    from optimizer.workspace.config import load_config

    if not (workspace / "holdout").is_dir() and not (workspace / "ledger.duckdb").exists():
        fail(RatchetError(f"{workspace}: not a ratchet workspace (no holdout/ or ledger.duckdb)."))
    try:
        settings: dict | str = load_config(workspace / "ratchet.yaml").gate.model_dump()
    except RatchetError as exc:
        settings = str(exc)
    report = run_audit(workspace, source_root=source_root(), gate_settings=settings)
    shadow = _shadow_check(workspace)
    report = AuditReport(report.workspace, (*report.checks, shadow, *([_looks_check(workspace)] if shadow.passed
                                                                      else [])))
    if replay:
        from optimizer.audit.replay import replay as run_replay

        with err.status("replaying") as status:
            again = run_replay(workspace, progress=lambda msg: status.update(msg))
        report = AuditReport(report.workspace, (*report.checks, *(Check(c.name, c.passed, c.detail) for c in again)))
    if only:
        unknown = sorted(set(only) - {c.name for c in report.checks})
        if unknown:
            fail(RatchetError(f"--check {unknown[0]}: no such check in this audit; checks: "
                               f"{', '.join(dict.fromkeys(c.name for c in report.checks))}."))
        report = AuditReport(report.workspace, tuple(c for c in report.checks if c.name in only))
    if html is not None:
        from optimizer.report.audit_doc import write_document

        write_document(report, workspace, html)
        err.print(f"audit document: {html}", markup=False)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        # skip: not made here (its detail says why); fails nothing
        marks = {CheckStatus.PASS: "[green]ok  [/green]", CheckStatus.FAIL: "[red]FAIL[/red]",
                 CheckStatus.NOT_VERIFIED: "[red]FAIL[/red]", CheckStatus.NOT_CHECKED: "[yellow]skip[/yellow]"}
        for c in report.checks:
            mark = marks[c.status]
            out.print(f"{mark} {c.name:<20} ", end="")
            out.print(c.detail, markup=False)
        out.print({"intact": "audit: intact", "failed": "audit: INTEGRITY FAILURE",
                   "unverified": f"audit: NOT VERIFIED: {len(report.unverified)} check(s) could not be made (MLflow "
                                 "unreachable or unreadable); every other check is intact. Run it again once MLflow "
                                 "answers."}[report.status], markup=False)
    raise typer.Exit({"intact": 0, "failed": 1, "unverified": 4}[report.status])


def _shadow_check(workspace: Path):
    """Every shadow trial's rows in shadow.duckdb and its files against the hashes the ledger bound them to."""
    from holdout.checks import Check, unverified
    from holdout.ledger import Ledger
    from optimizer.release.shadow.integrity import audit_trials

    try:
        passed, detail = audit_trials(workspace, Ledger(workspace / "ledger.duckdb").entries())
    except RatchetError as exc:  # shadow.duckdb busy (a server writing): not checked, which is no pass
        return unverified("shadow_trials", str(exc))
    except Exception as exc:  # noqa: BLE001 - a damaged store fails the check, in one line
        return Check("shadow_trials", False, f"{workspace / 'shadow.duckdb'}: unreadable ({type(exc).__name__}: "
                     f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})")
    return Check("shadow_trials", passed, detail)


def _looks_check(workspace: Path):
    """Every look at every trial recomputed from the store as it stood then, with the settings it recorded."""
    from holdout import queries
    from holdout.checks import Check
    from holdout.ledger import Kind, Ledger
    from optimizer.records.context import load_context
    from optimizer.release.shadow.report import replay_looks

    entries = Ledger(workspace / "ledger.duckdb").entries()
    trials = queries.trial_ids(entries)
    if not trials:
        return Check("shadow_looks", True, "no shadow trial")
    after = queries.looks_redone_after(entries)
    try:
        ctx = load_context(workspace, repair=False)  # an audit reads; a read-only copy is audited too
        found = [p for t in trials for p in replay_looks(ctx, t, entries, after=after)]
    except Exception as exc:  # noqa: BLE001 - whatever stops the replay (a damaged split too) fails it, in one line
        return Check("shadow_looks", False, f"not replayed: {type(exc).__name__}: {str(exc).strip()[:300]}")
    looks = sum(e.kind == Kind.SHADOW_RESULT for e in entries)
    skipped = f"; looks before upgrade entry {after} (changes accepted) not replayed" if after else ""
    return Check("shadow_looks", not found, "; ".join(found) if found else
                 f"{looks} look(s) at {len(trials)} trial(s) replayed: each verdict and bound as recorded{skipped}")
