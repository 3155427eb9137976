"""`ratchet events` and `ratchet shadow start|outcomes|report`: shadow trials on live (or generated) events."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail, out


def _next(step: str, as_json: bool = False) -> None:
    """A command's last line, its next step: on stderr under --json (stdout stays pure JSON), else on stdout."""
    (err if as_json else out).print(f"Next: {step}", markup=False, soft_wrap=True)


def _ref(policy: dict | None) -> str:
    """How a trial's policy is named on a command line: its experiment, else its commit."""
    policy = policy or {}
    return policy.get("experiment") or (policy.get("commit") or "")[:12] or "REF"


shadow = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                     help="Shadow trials: a kept challenger decides live events beside the acting champion; only the "
                          "champion's decisions act. start -> outcomes (as they arrive) -> report.")
app.add_typer(shadow, name="shadow")


@app.command(epilog="Example: ratchet events ws --days 14 --events-out ev.parquet --outcomes-out out.parquet")
def events(
    workspace: Path = typer.Argument(..., help="The workspace whose domain generates the events."),
    days: float = typer.Option(..., help="How many days of events, starting right after the sealed holdout."),
    seed: Optional[int] = typer.Option(None, help="Seed of the generator (default: the workspace's seed + 1000)."),
    events_out: Path = typer.Option(..., "--events-out", help="Where the events go (.parquet or .csv): what a policy "
                                    "may see, no label, no outcome-only column."),
    outcomes_out: Path = typer.Option(..., "--outcomes-out", help="Where their outcomes go (.parquet or .csv): "
                                      "event_id, label, known_at, reviewed, extra (outcome-only columns as JSON)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="On a workspace initialised from your --data: generate "
                                   "the built-in domain's events anyway (a demo; they are not your data). Without it "
                                   "such a workspace is refused: send your own events."),
) -> None:
    """Generate live events that follow the sealed holdout in time, and their outcomes with the time each becomes
    known (fraud: chargebacks 30 to 90 days later; a legitimate payment is known good after 90 days; a blocked one
    is labelled only when `reviewed`). A workspace imported from your file is refused unless --synthetic."""
    from optimizer.records.context import load_context
    from optimizer.release.shadow.events import generate_events, write_frame

    try:
        ctx = load_context(workspace)
        made = generate_events(ctx, days=days, seed=ctx.config.seed + 1000 if seed is None else seed,
                               synthetic=synthetic)
        write_frame(made.events, events_out)
        write_frame(made.outcomes, outcomes_out)
    except RatchetError as exc:
        fail(exc)
    out.print(f"{len(made.events):,} events from {made.start} to {made.end} -> {events_out}; outcomes -> "
              f"{outcomes_out}", markup=False)


@shadow.command("start", epilog="Example: ratchet shadow start ws --challenger exp-0003 --events ev.parquet --json")
def start(
    workspace: Path = typer.Argument(..., help="The workspace."),
    challenger: str = typer.Option(..., help="The policy to try: a judged one, i.e. a kept experiment (exp-0003, "
                                   "or its commit), champion or baseline; a commit never kept is refused."),
    events_file: Path = typer.Option(..., "--events", help="New events to decide (.parquet or .csv), checked against "
                                     "the workspace's data contract; bad rows are quarantined with their reason. A "
                                     "file with any event the workspace has seen (id or values of train, dev or a "
                                     "holdout) or timed before its sealed data ends is refused."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result as JSON on stdout."),
) -> None:
    """Start a trial: both policies decide the valid events in the sandbox, in time order; every decision of both is
    stored in shadow.duckdb with its latency (only the champion's act), and the trial goes to the ledger with the
    hashes of its rows and files (`shadow report`, `promote` and `audit` verify them)."""
    from optimizer.release.shadow.trial import start_trial

    try:
        with err.status("starting the trial") as status:
            started = start_trial(workspace, challenger=challenger, events_file=events_file,
                                  progress=lambda msg: status.update(msg))
    except RatchetError as exc:
        fail(exc)
    ws = shlex.quote(str(workspace))
    step = (f"`ratchet shadow outcomes {ws} {started.trial} --outcomes FILE` as outcomes arrive, then "
            f"`ratchet shadow report {ws} {started.trial}`")
    if as_json:
        sys.stdout.write(json.dumps(started.to_json()) + "\n")
        _next(step, as_json=True)
        return
    out.print(f"{started.trial}: {started.events:,} events decided by the champion "
              f"({started.champion['experiment'] or started.champion['commit'][:12]}) and the challenger "
              f"({started.challenger['experiment'] or started.challenger['commit'][:12]}); "
              f"{started.quarantined:,} quarantined", markup=False)
    for reason, rows in started.reasons.items():
        out.print(f"  quarantined {rows:,}: {reason}", markup=False)
    _next(step)


@shadow.command("outcomes", epilog="Example: ratchet shadow outcomes ws trial-0001 --outcomes out-week1.parquet")
def outcomes(
    workspace: Path = typer.Argument(..., help="The workspace."),
    trial: str = typer.Argument(..., help="The trial (trial-0001)."),
    outcomes_file: Path = typer.Option(..., "--outcomes", help="Outcomes that arrived (.parquet or .csv): event_id, "
                                       "label (the domain's values), known_at (ISO 8601 or epoch seconds), reviewed "
                                       "(true/false), extra; repeat the command as more arrive."),
) -> None:
    """Join outcomes as they arrive: only the trial's events. A batch with any bad row is refused whole, naming the
    row and column. An outcome sent again is ignored; a different one for the same event is a correction (the
    latest counts). The batch and the hash of its rows go to the ledger."""
    from optimizer.release.shadow.outcomes import add_outcomes

    try:
        joined = add_outcomes(workspace, trial, outcomes_file)
    except RatchetError as exc:
        fail(exc)
    out.print(f"{trial}: batch {joined['batch']}: {joined['joined']:,} outcomes joined, {joined['corrections']:,} "
              f"corrections, {joined['ignored']:,} ignored (not this trial's events, or the same as already joined)",
              markup=False)
    _next(f"`ratchet shadow report {shlex.quote(str(workspace))} {trial}`")


@shadow.command("report", epilog="Example: ratchet shadow report ws trial-0001 --json")
def report(
    workspace: Path = typer.Argument(..., help="The workspace."),
    trial: str = typer.Argument(..., help="The trial (trial-0001)."),
    as_json: bool = typer.Option(False, "--json", help="Print only the report as JSON on stdout."),
    accept_drift: Optional[str] = typer.Option(None, "--accept-drift", help="Acknowledge a drift alarm of the "
                                               "events, with the reason (recorded)."),
) -> None:
    """Compare the challenger with the champion on the settled events: the paired difference of the primary metric
    with an anytime-valid confidence sequence (read it as often as you like), labels as they arrive (selective:
    weighted by shadow.review_rate, or worst case), an interim view from the disagreements, the verdict over a range
    of the decline cost, agreement, alerts per day against capacity, guardrails, segments, drift against the sealed
    holdout, per-event latency, quarantine. Each look is a ledger entry and a step of the trial's MLflow run.

    Exit 0 passed, 1 failed, 3 pending (not decided yet), 2 for usage or integrity errors."""
    from optimizer.release.shadow.report import build_report

    try:
        result = build_report(workspace, trial, accept_drift=accept_drift)
    except RatchetError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), default=str) + "\n")
    else:
        f = result.figures
        out.print(f"{trial}: {result.status.upper()} ({f['settled']:,} of {f['events']:,} events settled, "
                  f"{f['labeled']:,} labelled; agreement {f['agreement']['share']:.1%})", markup=False)
        if "primary" in f:
            p = f["primary"]
            out.print(f"  {p['metric']}: challenger - champion {p['gain']:+.4f} on {p['n']:,} settled events, "
                      f"anytime {p['confidence']:.0%} bounds {p['lower_bound']:+.4f} to {p['upper_bound']:+.4f} "
                      f"(valid at every look; labels: {p['labels']})", markup=False)
        if result.status == "pending" and "gain_bounds" in f["interim"]:
            lo, hi = f["interim"]["gain_bounds"]
            out.print(f"  interim, not evidence: {f['interim']['disagreements']:,} disagreements; the mean gain over "
                      f"these events lies between {lo:+.4f} and {hi:+.4f} whatever the unknown labels", markup=False)
        if f.get("cost_range"):
            c = f["cost_range"]
            lo, hi, name = c["points"][0]["factor"], c["points"][-1]["factor"], c["parameter"]
            said = (f"  the challenger stays not worse for {name} from {c['not_worse_from']:g} to "
                    f"{c['not_worse_to']:g} times the configured {c['configured']:g}" if c["not_worse_from"] is not None
                    else f"  the challenger is not shown not worse for any {name} from {lo:g} to {hi:g} times the "
                         f"configured {c['configured']:g}")
            out.print(said, markup=False)
        _live(f.get("live_metrics"))
        for role, lat in f["latency_ms"].items():
            out.print(f"  {role} latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms", markup=False)
        for reason in result.reasons:
            out.print(f"  - {reason}", markup=False)
    _next(report_next(str(workspace), trial, result.status, result.figures), as_json)
    raise typer.Exit(result.exit_code)


def _live(live: dict | None) -> None:
    """Each policy's metrics on the live events (the unbiased sample, with its interval) beside its dev figure."""
    if not live:
        return
    if not live.get("sample"):
        out.print(f"  live metrics {live['note']}", markup=False)
        return
    out.print(f"  live metrics on {live['events']:,} events ({live['sample']}), {live['confidence']:.0%} bootstrap "
              "interval, beside each policy's dev figure:", markup=False)
    number = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    for name in live.get("champion", {}):
        said = []
        for role in ("champion", "challenger"):
            m = live.get(role, {}).get(name)
            if m is not None:
                interval = f" ({number(m['low'])} to {number(m['high'])})" if m["low"] is not None else ""
                said.append(f"{role} {number(m['value'])}{interval}, dev {number(m['dev'])}")
        out.print(f"    {name}: " + "; ".join(said), markup=False)


def report_next(workspace: str, trial: str, status: str, figures: dict) -> str:
    """What to do after `shadow report`, by its verdict."""
    ws = shlex.quote(workspace)
    if status == "passed":
        return (f"`ratchet promote {ws} {_ref(figures.get('challenger'))} --approved-by NAME` (a named person makes "
                "it the acting policy)")
    if status == "pending":
        return (f"join more outcomes and look again: `ratchet shadow outcomes {ws} {trial} --outcomes FILE`, then "
                f"`ratchet shadow report {ws} {trial}` (the bounds are valid at every look)")
    return (f"the challenger is not promoted; the reasons above say why, and `ratchet run {ws}` searches on for "
            "another challenger to try")
