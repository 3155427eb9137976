"""`ratchet report` (the run as one HTML page) and `ratchet history` (the experiments as a terminal table)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console, JustifyMethod

from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail, out
from optimizer.records.experiment_record import ExperimentStatus

VERDICTS = tuple(ExperimentStatus)  # kept, would_keep, reverted, crashed
AUDIT_EXIT = {"intact": 0, "failed": 1, "unverified": 4}  # as `ratchet audit` exits: the report says the same


@app.command(epilog="Example: ratchet report ws --out overnight.html --open")
def report(
    workspace: Path = typer.Argument(..., help="The workspace to report on."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Where to write the HTML (default: "
                                            "reports/run-report.html in the workspace); the plots go beside it "
                                            "as PNG files."),
    open_it: bool = typer.Option(False, "--open", help="Open the page in the default browser afterwards."),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not log the report to the workspace's MLflow "
                                   "experiment."),
) -> None:
    """One self-contained HTML page of the run: every experiment's dev value by outcome with the running best and
    the holdout gate's Ladder-rounded answers, guardrails with their limits, dev segments of the champion vs the
    baseline, rejections by guard, the seal and the gate budget, the audit status, kept changes with their diffs,
    shadow trials and promotions. Also logged to MLflow as a `report` run. The exit code is the audit's: 0 intact, 1
    failed, 4 not verified (MLflow unreachable); a plot that cannot be drawn says why in its place, and the rest of
    the page is written."""
    from optimizer.report.run import write_report
    from optimizer.workspace.layout import Workspace

    try:
        Workspace.open(workspace)
        with err.status("gathering") as status:
            files = write_report(workspace, out_file, log=not no_mlflow, progress=lambda msg: status.update(msg))
    except RatchetError as exc:
        fail(exc)
    out.print(f"report: {files.html} (plots: {', '.join(p.name for p in files.images.values()) or 'none'})",
              markup=False)
    for problem in files.missing.values():
        err.print(f"warning: {problem}", markup=False)
    if files.mlflow_run:
        out.print(f"logged to MLflow run {files.mlflow_run}", markup=False)
    if open_it:
        import webbrowser

        webbrowser.open(files.html.resolve().as_uri())
    raise typer.Exit(AUDIT_EXIT.get(files.audit_status, 1))


@app.command(epilog="Example: ratchet history ws --verdict reverted --guard significance --last 20")
def history(
    workspace: Path = typer.Argument(..., help="The workspace whose experiments to list."),
    verdict: Optional[str] = typer.Option(None, help=f"Only experiments with this status: {', '.join(VERDICTS)}."),
    guard: Optional[str] = typer.Option(None, help="Only experiments this guard refused."),
    last: Optional[int] = typer.Option(None, min=1, help="Only the last N experiments (after the filters)."),
) -> None:
    """The experiments as a table: id, status, dev value of the primary metric, the gate's Ladder-rounded answer,
    the first refusing guard's reason in one line, the proposer and the hypothesis, each on one line cut to fit the
    terminal. Read-only (works while a run goes on); `ratchet show DIR EXP` tells one experiment in full."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from domains import get_domain
    from holdout.ledger import Ledger
    from optimizer.report.explain import reason
    from optimizer.report.facts import at_gate, gate_answer, records
    from optimizer.workspace.config import load_config
    from optimizer.workspace.layout import Workspace

    try:
        ws = Workspace.open(workspace)
        if verdict is not None and verdict not in VERDICTS:
            raise RatchetError(f"--verdict {verdict!r}: not a status; use one of {', '.join(VERDICTS)}.")
        primary = get_domain(load_config(ws.config).domain).primary
        recs = records(Ledger(ws.ledger).entries())
    except RatchetError as exc:
        fail(exc)
    known = {r.name for rec in recs for r in rec.verdict.results}
    if guard is not None and recs and guard not in known:
        fail(RatchetError(f"--guard {guard!r}: no such guard in this workspace's records; guards: "
                           f"{', '.join(sorted(known))}."))
    shown = [r for r in recs if (verdict is None or r.status == verdict)
             and (guard is None or guard in r.verdict.failed_guards)]
    shown = shown[-last:] if last else shown
    # Every cell on one line, cut with an ellipsis, so the table fits the terminal (100 columns) however long a
    # hypothesis or a reason is; the id carries the number. Cells are Text: [brackets] are not read as markup.
    table = Table(title=f"{len(shown)} of {len(recs)} experiments (dev {primary}; gate: the holdout's Ladder-rounded "
                        "answer)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    why = {r.experiment: reason(r) for r in shown}
    hypothesis = {r.experiment: " ".join(r.hypothesis.split())[:300] or "-" for r in shown}
    fixed = {"id": 8, "status": max([len(str(r.status)) for r in shown] + [6]), primary: 8, "gate": 7,
             "proposer": min(max([len(r.proposer) for r in shown] + [8]), 9)}
    # What the other columns leave (2 characters between columns, 1 at the end) goes to the reason first (it is
    # what a person acts on), then to the hypothesis (at least 10).
    # The terminal's width as COLUMNS or the terminal says it now (a Console may hold the width it was made with).
    width = shutil.get_terminal_size((out.width, 24)).columns
    free = max(width - sum(fixed.values()) - 2 * 6 - 1, 24)
    reason_width = min(max([len(w) for w in why.values()] + [10]), free - 10)
    widths = {**fixed, "refused because": reason_width,
              "hypothesis": min(free - reason_width, max([len(h) for h in hypothesis.values()] + [10]))}
    justify: JustifyMethod
    for name, justify in (("id", "left"), ("status", "left"), (primary, "right"), ("gate", "right"),
                          ("refused because", "left"), ("proposer", "left"), ("hypothesis", "left")):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", width=widths[name])
    colour = {ExperimentStatus.KEPT: "green", ExperimentStatus.WOULD_KEEP: "green", ExperimentStatus.REVERTED: "red",
              ExperimentStatus.CRASHED: "magenta"}
    for r in shown:
        value, answer = r.dev_metrics.get(primary), gate_answer(r.gate)
        table.add_row(r.experiment, Text(str(r.status), style="white" if at_gate(r) else colour[r.status]),
                      "-" if value is None else f"{value:.4f}", "-" if answer is None else f"{answer:+.4f}",
                      Text(why[r.experiment]), Text(r.proposer), Text(hypothesis[r.experiment]))
    Console(width=width, highlight=False).print(table)  # at that width, whatever width `out` was made with
