"""`ratchet show`: one experiment as a person reads it (status, hypothesis, each guard's figures in words, the
gate's answer, what to try next, the diff). Read-only: works while a run goes on."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, fail, out


@app.command(epilog="Example: ratchet show ws exp-0003   |   ratchet show ws 3 --json")
def show(
    workspace: Path = typer.Argument(..., help="The workspace."),
    experiment: str = typer.Argument(..., help="The experiment: exp-0003, 0003 or 3."),
    as_json: bool = typer.Option(False, "--json", help="Print the same as JSON on stdout."),
) -> None:
    """One experiment: its status in words, hypothesis, proposer, each guard with its figures (significance: the
    gain, its bounds, the bound it had to clear and the smallest gain that would have passed), the holdout gate's
    answer and what it means, what to try next, and the diff against the champion it was judged against."""
    from optimizer.report.explain import load

    try:
        shown = load(workspace, experiment)
    except RatchetError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(shown.to_json(), default=str) + "\n")
        return
    out.print(shown.text(), markup=False, highlight=False)
