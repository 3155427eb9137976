"""`ratchet init`, `run`, `try`, `reseal`, `config` and `demo`: making a workspace and running its loop."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from domains import DEFAULT_DOMAIN, DOMAINS
from guards import GuardName
from holdout.ledger import Kind
from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, fail, out
from optimizer.cli.progress import LoopDisplay, err


@app.command(epilog="Example: ratchet init fraud --workspace ws --seed 7 --rows 100000\n\n"
                     "Example: ratchet init routing -w ws --variant llm --rows 3000\n\n"
                     "Example: ratchet init pricing -w ws --data offers.csv --map time=ts --map price=price_paid "
                     "--map propensity=p --map outcome=bought --map cost=cost --map reference=list_price")
def init(
    domain: str = typer.Argument(..., help=f"Business domain: {', '.join(DOMAINS)}."),
    workspace: Path = typer.Option(..., "--workspace", "-w", help="Folder to create (must not exist or be empty)."),
    seed: Optional[int] = typer.Option(None, help="Seed for generated data, splits and canaries."),
    rows: Optional[int] = typer.Option(None, help="Approximate size of generated data."),
    data: Optional[Path] = typer.Option(None, help="Import a CSV or Parquet file instead of generating data."),
    label: Optional[str] = typer.Option(None, help="With --data: the label column (same as --map label=COLUMN)."),
    time: Optional[str] = typer.Option(None, help="With --data: the time column, datetime or numbers (same as --map "
                                       "time=COLUMN)."),
    amount: Optional[str] = typer.Option(None, help="With --data: the amount column (same as --map amount=COLUMN)."),
    id: Optional[str] = typer.Option(None, "--id", help="With --data: a unique row id column, default the row number "
                                     "(same as --map id=COLUMN)."),
    entity: Optional[str] = typer.Option(None, help="With --data: the customer/card column (same as --map "
                                         "entity=COLUMN)."),
    terminal: Optional[str] = typer.Option(None, help="With --data: the terminal/merchant column (same as --map "
                                           "terminal=COLUMN)."),
    time_unit: Optional[str] = typer.Option(None, "--time-unit", help="With --data: the unit of a numeric time "
                                            "column: s, ms, us or ns (default: detected from the values, and "
                                            "printed)."),
    epoch: Optional[str] = typer.Option(None, help="With --data: the date a numeric time column counts from, "
                                        "e.g. 2024-01-01 (default: the Unix epoch, or detected)."),
    time_format: Optional[str] = typer.Option(None, "--time-format", help="With --data: how a text time column "
                                              "is written, in strptime codes, e.g. '%d/%m/%Y %H:%M', or ISO8601 "
                                              "(default: the one format that reads the whole column, printed; a "
                                              "column that reads both day first and month first is refused)."),
    map_: Optional[list[str]] = typer.Option(None, "--map", help="With --data: KEY=COLUMN, repeatable; maps a "
                                             "field of the domain onto your column. Every domain takes time, id and "
                                             "entity; its other keys are listed in the README, and an unknown key "
                                             "is refused with the domain's keys named."),
    policy: Optional[Path] = typer.Option(None, help="Start from this policy.py instead of the domain's baseline."),
    variant: Optional[str] = typer.Option(None, help="Start from a shipped policy variant: llm (routing: Claude "
                                          "routes each ticket through the parent's model broker; needs "
                                          "ANTHROPIC_API_KEY for init, run and try; enables task_agent)."),
    config: Optional[Path] = typer.Option(None, help="Configuration YAML (default: configs/<domain>.yaml)."),
) -> None:
    """Create a workspace: data, contract check, time split, sealed holdout, ledger and MLflow seal run."""
    from optimizer.lifecycle.initialize import init_workspace

    overrides: dict = {}
    if seed is not None:
        overrides.update({"seed": seed, "data.seed": seed})
    if rows is not None:
        overrides["data.rows"] = rows
    aliases = {"label": label, "time": time, "amount": amount, "id": id, "entity": entity, "terminal": terminal}
    mapped = {k: v for k, v in aliases.items() if v}
    try:
        for item in map_ or []:
            key, sep, column = item.partition("=")
            if not sep or not key.strip() or not column.strip():
                raise RatchetError(f"--map {item!r}: expected KEY=COLUMN, e.g. --map propensity=p_logged.")
            mapped[key.strip()] = column.strip()
        if data is not None:
            from domains import domain_class

            missing = [k for k in domain_class(domain).import_keys.required if k not in mapped]
            if missing:
                flags = ", ".join(f"--{k}" if k in aliases else f"--map {k}=COLUMN" for k in missing)
                raise RatchetError(f"--data {data}: also pass {flags} to map your columns.")
            if not data.is_file():
                raise RatchetError(f"--data {data}: file not found.")
            overrides.update({"data.source": "file", "data.file": str(data.resolve()), "data.mapping": mapped})
            if time_unit is not None:
                overrides["data.time_unit"] = time_unit
            if epoch is not None:
                overrides["data.epoch"] = epoch
            if time_format is not None:
                overrides["data.time_format"] = time_format
        elif mapped or time_unit is not None or epoch is not None or time_format is not None:
            raise RatchetError("--label/--time/--amount/--id/--entity/--terminal/--map/--time-unit/--epoch/"
                               "--time-format only apply with --data FILE.")
        with err.status("initialising") as status:
            result = init_workspace(domain, workspace, config_file=config, overrides=overrides, policy_file=policy,
                                    variant=variant, progress=lambda msg: status.update(msg))
    except RatchetError as exc:
        fail(exc)
    for note in result.notes:
        out.print(f"read: {note}", markup=False)
    if result.gap:
        out.print(result.gap, markup=False)
    rows_txt = ", ".join(f"{k} {v:,}" for k, v in result.rows.items())
    out.print(f"workspace {result.workspace.root}: {rows_txt} rows; holdout sealed "
              f"(manifest sha256 {result.manifest_sha256[:12]}); MLflow run {result.mlflow_run_id}")
    from optimizer.loop.power import bar
    from optimizer.records.context import load_context

    out.print(bar(load_context(result.workspace.root, repair=False)).line() + " (`ratchet run` says it in the "
              "data's units once the baseline is scored)", markup=False)
    alarms = [c for c, v in result.drift["columns"].items() if v["verdict"] == "alarm"]
    if alarms:
        out.print(f"drift alarm (train vs holdout PSI > alarm band): {', '.join(alarms)}; see reports/drift.json")
    out.print(f"Next: `ratchet run {workspace}` (the search; Ctrl-C stops it cleanly), or `ratchet try {workspace} "
              f"CANDIDATE.py` for one policy of your own; {workspace / 'program.md'} directs the search", markup=False)


@app.command(epilog="Example: ratchet run ws --experiments 20 --budget 60")
def run(
    workspace: Path = typer.Argument(..., help="The workspace (from `ratchet init`)."),
    experiments: int = typer.Option(20, min=0, help="How many experiments to run (0: evaluate the baseline only)."),
    budget: Optional[float] = typer.Option(None, min=0.001, help="Wall-clock seconds per sandbox phase (default: config)."),
    total: Optional[float] = typer.Option(None, "--time", min=0.001, help="Stop starting new experiments after this many seconds."),
    proposer: Optional[str] = typer.Option(None, help="Where candidates come from: anthropic (the meta-agent), "
                                                     "optuna or patches. Default: anthropic when ANTHROPIC_API_KEY "
                                                     "is set, else optuna."),
    patches: Optional[Path] = typer.Option(None, help="With --proposer patches: a folder of candidate policy files."),
    parallel: int = typer.Option(1, min=1, help="Candidates evaluated at once per round (judged in proposal order)."),
    executor: str = typer.Option("local", help="Where evaluations run: local (sandboxes here) or dask (a cluster)."),
    scheduler: Optional[str] = typer.Option(None, help="With --executor dask: the scheduler's address (tcp://host:"
                                                       "8786); default: a local cluster of --parallel workers."),
) -> None:
    """Run the loop: each candidate is sandboxed, scored on dev, guarded, gated on the holdout, kept or reverted.

    With --parallel K each round proposes K candidates and evaluates them at once; the verdicts are the same as
    one at a time in proposal order. Ctrl-C stops after cleaning up the running experiments; run again to resume."""
    from optimizer.loop.run import run_loop

    try:
        from domains import get_domain
        from optimizer.workspace.config import load_config
        from optimizer.workspace.layout import Workspace

        primary = get_domain(load_config(Workspace.open(workspace).config).domain).primary
        display = LoopDisplay(experiments, primary)
        with display.progress:
            summary = run_loop(workspace, experiments=experiments, budget=budget, total_time=total,
                               proposer=proposer, patches=patches, parallel=parallel, executor=executor,
                               scheduler=scheduler, on_event=display)
    except RatchetError as exc:
        fail(exc)
    if display.bar is not None and display.bar.hold_z is not None:
        b = display.bar
        out.print(f"holdout gate: {b.test - 1} tests under this seal, {b.passes} passed, {b.tests_left} left",
                  markup=False)
    out.print(f"{len(summary.records)} experiments, {summary.kept} kept; stopped: {summary.stop_reason}", markup=False)
    if summary.untracked:
        err.print(f"MLflow missed {', '.join(summary.untracked)} (in the ledger and experiments/); run `ratchet sync "
                  f"{workspace}` once it answers again.", markup=False)
    kept = [r for r in summary.records if r.kept]
    last = kept[-1] if kept else (summary.records[-1] if summary.records else None)
    shown = f"`ratchet show {workspace} {last.experiment}` (the last {'kept' if kept else 'refused'}) / " if last else ""
    out.print(f"Next: {shown}`ratchet report {workspace}`", markup=False)
    if summary.interrupted:
        raise typer.Exit(130)


@app.command(name="try", epilog="Example: ratchet try ws my_policy.py --json")
def try_(
    workspace: Path = typer.Argument(..., help="The workspace."),
    candidate: Path = typer.Argument(..., help="A whole candidate policy.py."),
    as_json: bool = typer.Option(False, "--json", help="Print only the verdict as JSON on stdout."),
    keep: bool = typer.Option(False, "--keep", help="Commit the candidate as the new champion when it passes."),
    budget: Optional[float] = typer.Option(None, min=0.001, help="Wall-clock seconds per sandbox phase (default: config)."),
    hypothesis: Optional[str] = typer.Option(None, help="What the change should do (recorded). Default: a "
                                             "`# hypothesis:` line in the file, else drawn from the change against "
                                             "the champion, e.g. 'THRESHOLD 0.3 -> 0.35' or '+12 -3 lines in "
                                             "decide()'."),
) -> None:
    """Push one candidate through exactly the loop's pipeline.

    Exit 0 if it would be kept (kept with --keep), 1 if rejected, 2 for usage or integrity errors."""
    from optimizer.loop.experiment import run_experiment
    from optimizer.loop.run import ensure_baseline
    from optimizer.loop.session import open_session
    from optimizer.proposers._patches import read_candidate
    from optimizer.report.change import describe

    try:
        source = read_candidate(candidate)
        with open_session(workspace, budget=budget) as session, session.sandbox() as sandbox:
            ctx, tracker = session.ctx, session.tracker
            ensure_baseline(ctx, sandbox, tracker)
            said = hypothesis or next((ln.split(":", 1)[1].strip() for ln in source.splitlines()
                                       if ln.strip().lower().startswith("# hypothesis:")), "")
            said = " ".join(said.split()) or describe(ctx.ws.champion_source(), source)  # not the docstring
            record = run_experiment(ctx, sandbox, source, proposer="person", hypothesis=said, keep=keep,
                                    tracker=tracker)
    except RatchetError as exc:
        fail(exc)
    if tracker.missed:
        err.print(f"MLflow at {tracker.uri}: {tracker.down}; {record.experiment} is in the ledger and experiments/ "
                  f"only: run `ratchet sync {workspace}` once it answers again.", markup=False)
    if as_json:
        sys.stdout.write(json.dumps(record.verdict_json(), default=str) + "\n")
    else:
        for r in record.verdict.results:
            mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
            out.print(f"{mark} {r.name:<14} ", end="")
            out.print(r.detail, markup=False)
        out.print(f"{record.experiment}: {record.status}", markup=False)
    (err if as_json else out).print(f"Next: `ratchet show {workspace} {record.experiment}`", markup=False)
    integrity = record.verdict.result(GuardName.INTEGRITY)
    if integrity is not None and not integrity.passed:
        err.print(f"error: integrity: {integrity.detail}", markup=False)
        raise typer.Exit(2)
    raise typer.Exit(0 if record.verdict.kept else 1)


@app.command(epilog="Example: ratchet reseal ws --seed 11   |   ratchet reseal ws --data new_month.csv")
def reseal(
    workspace: Path = typer.Argument(..., help="The workspace whose holdout gate budget is spent."),
    seed: Optional[int] = typer.Option(None, help="Generated data: seal the holdout period of a new seed."),
    data: Optional[Path] = typer.Option(None, help="A file with newer rows (same column mapping as init)."),
) -> None:
    """Retire the holdout and seal a fresh one (refused if any row or id was used before); resets the gate budget."""
    from optimizer.lifecycle.reseal import reseal as do_reseal

    try:
        with err.status("resealing") as status:
            result = do_reseal(workspace, seed=seed, data=data, progress=lambda msg: status.update(msg))
    except RatchetError as exc:
        fail(exc)
    out.print(f"new holdout sealed: {result.rows:,} rows, manifest sha256 {result.manifest_sha256[:12]}; "
              f"old holdout retired to {result.retired}", markup=False)


@app.command(epilog="Example: ratchet config ws set guardrails.alert_rate.limit=0.02 --approved-by 'A. Reviewer' "
                     "--reason 'review team doubled'\n\nExample: ratchet config ws show   |   ratchet config ws show "
                     "--changes")
def config(
    workspace: Path = typer.Argument(..., help="The workspace."),
    action: str = typer.Argument(..., help="set (change settings) or show (the workspace's config, as YAML)."),
    assignments: Optional[list[str]] = typer.Argument(None, help="With set: KEY=VALUE pairs (VALUE read as YAML)."),
    approved_by: str = typer.Option("", "--approved-by", help="With set: who approved the change (recorded)."),
    reason: str = typer.Option("", help="With set: why (recorded)."),
    changes_only: bool = typer.Option(False, "--changes", help="With show: the recorded changes since the seal "
                                      "(time, keys, old and new values, approver, reason) instead of the config."),
) -> None:
    """Change ratchet.yaml as a recorded event: validated, committed, and written to the ledger with the old and
    new values, the approver and the reason. A config edited any other way is refused by try, run and audit.
    `show` prints the workspace's whole config (every setting, defaults included) as YAML; `show --changes` the
    recorded changes."""
    from holdout.audit import describe_change
    from holdout.ledger import Ledger

    try:
        if action == "show":
            if assignments:
                raise RatchetError(f"config show: takes no KEY=VALUE ({assignments[0]}); to change a setting: "
                                   f"ratchet config {workspace} set KEY=VALUE --approved-by NAME --reason TEXT.")
            from optimizer.workspace.layout import Workspace

            ws = Workspace.open(workspace)
            if not changes_only:
                from optimizer.workspace.config import dump_config, load_config

                sys.stdout.write(dump_config(load_config(ws.config)))
                return
            recorded = Ledger(ws.ledger).entries(Kind.CONFIG)
            for e in recorded:
                out.print(f"{e.time} {describe_change(e)}", markup=False)
            if not recorded:
                out.print("no config change since the seal")
            return
        if changes_only:
            raise RatchetError(f"--changes: only with show (ratchet config {workspace} show --changes).")
        if action != "set":
            from optimizer.workspace.config import closest

            meant = closest(action, ("set", "show"))
            raise RatchetError(f"config {action}: expected set or show" + (f"; did you mean {meant!r}?" if meant
                                                                            else "."))
        from optimizer.lifecycle.config_events import change_config, parse_assignments
        from optimizer.workspace.approvers import approver

        approved_by = approver(approved_by, "the config change")  # as the ledger records it
        changes = change_config(workspace, parse_assignments(assignments or []), approved_by=approved_by,
                                reason=reason)
    except RatchetError as exc:
        fail(exc)
    for key, v in changes.items():
        out.print(f"{key}: {v['old']!r} -> {v['new']!r}", markup=False)
    out.print(f"recorded in the ledger, approved by {approved_by}", markup=False)


@app.command(epilog="Example: ratchet demo --domain pricing --workspace pricing-demo")
def demo(
    domain: str = typer.Option(DEFAULT_DOMAIN, help=f"Business domain: {', '.join(DOMAINS)}."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w",
                                             help="Where the demo workspace lives (default: the domain's, "
                                                  "demo-workspace for fraud, else <domain>-demo)."),
    experiments: int = typer.Option(20, min=1, help="How many experiments the demo runs."),
    rows: Optional[int] = typer.Option(None, help="Approximate size of the generated data (default: the domain's "
                                                  "demo size)."),
) -> None:
    """Init a workspace on generated data, run a short loop, show baseline vs best and the audit."""
    from domains import domain_class
    from optimizer.cli.demo import run_demo

    try:
        if domain not in DOMAINS:
            raise RatchetError(f"--domain {domain!r}: unknown domain; available: {', '.join(DOMAINS)}.")
        workspace = workspace or Path(domain_class(domain).demo.workspace or f"{domain}-demo")
        code = run_demo(workspace, experiments=experiments, rows=rows, out=out, err=err, display=LoopDisplay,
                        domain=domain)
    except RatchetError as exc:
        fail(exc)
    raise typer.Exit(code)
