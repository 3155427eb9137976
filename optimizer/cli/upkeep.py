"""Upkeep commands: `ratchet repair` (an interrupted keep), `ratchet sync` (what MLflow missed), `ratchet doctor`
(the sandbox's layers, and what killed runs left)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail, out


@app.command(epilog="Example: ratchet repair ws")
def repair(workspace: Path = typer.Argument(..., help="The workspace.")) -> None:
    """Complete or roll back a keep that a stop interrupted, and enter the registered model versions whose ledger
    entry a stop or a removal lost (every run and try does this first), then verify."""
    from optimizer.records.context import load_context
    from optimizer.tracking.runs import open_tracker
    from optimizer.workspace.layout import Workspace
    from optimizer.workspace.runner import runner_lock

    try:
        with runner_lock(Workspace.open(workspace).root):
            ctx = load_context(workspace)  # repairs under the runner lock
            try:
                open_tracker(ctx)  # enters what the registry holds and the ledger lost
            except RatchetError as exc:  # MLflow down: the keep's own files are repaired; say what was not
                err.print(f"model entries not checked: {exc}", markup=False)
    except RatchetError as exc:
        fail(exc)
    out.print(ctx.repaired or "nothing to repair: git, champion state, ledger and registry agree", markup=False)


@app.command(epilog="Example: ratchet sync ws")
def sync(workspace: Path = typer.Argument(..., help="The workspace.")) -> None:
    """Write into MLflow the experiments (and the baseline) the ledger holds and MLflow missed: after an outage or
    a kill mid-run. The ledger is the truth; fitted models are not rebuilt."""
    from optimizer.tracking.sync import sync as do_sync

    try:
        done = do_sync(workspace)
    except RatchetError as exc:
        fail(exc)
    written = ", ".join(done.experiments) or "none"
    out.print(f"MLflow had {done.present} experiment run(s); written now: {written}"
              + ("; and the baseline run" if done.baseline else ""), markup=False)


@app.command(epilog="Example: ratchet doctor   |   ratchet doctor --clean")
def doctor(
    clean: bool = typer.Option(False, "--clean", help="Remove the sandbox folders killed runs left in the temp dir "
                               "(train rows with labels, models, holdout rows mid-decide) and say how many."),
    everything: bool = typer.Option(False, "--all", help="With --clean: also folders without an owner record "
                                    "(left by an older version); stop every ratchet process first."),
) -> None:
    """Say which sandbox isolation layers are active on this machine, and why; --clean removes what killed runs left."""
    from optimizer.sandbox import describe_isolation
    from optimizer.sandbox._leftovers import clean as clean_leftovers

    if clean:
        removed, freed = clean_leftovers(everything)
        out.print(f"removed {removed} left-over sandbox folder(s), {freed / 1e6:.1f} MB", markup=False)
        return
    info = describe_isolation()
    out.print_json(json.dumps(info, default=str))


@app.command(epilog="Example: ratchet upgrade ws --approved-by 'A. Reviewer' --reason 'ratchet 0.2.0 release'")
def upgrade(
    workspace: Path = typer.Argument(..., help="The workspace sealed or last upgraded under another ratchet."),
    approved_by: str = typer.Option(..., "--approved-by", help="Who approves putting the installed code in force."),
    reason: str = typer.Option("", "--reason", help="Why (recorded with the upgrade)."),
    accept_changes: bool = typer.Option(False, "--accept-changes", help="Go on when the installed code decides or "
                                        "scores the kept policies differently: the new figures become the reference "
                                        "for later verdicts, each change recorded."),
) -> None:
    """Put the installed ratchet's scorer in force on a workspace sealed under another: replays the baseline, every
    kept policy and the reference under the installed code (minutes: one fit and decide each), compares decisions,
    dev metrics and gate gains with the ledger, and records an `upgrade` entry with both versions, the changed
    modules, the figures, the approver and the reason.

    Exit 0 when recorded (or nothing to upgrade), 1 when the replay differs and --accept-changes was not given
    (nothing is changed), 2 when the workspace does not verify."""
    from optimizer.lifecycle.upgrade import ChangesFound
    from optimizer.lifecycle.upgrade import upgrade as do_upgrade

    try:
        with err.status("upgrading") as status:
            result = do_upgrade(workspace, approved_by=approved_by, reason=reason, accept_changes=accept_changes,
                                progress=lambda msg: status.update(msg))
    except ChangesFound as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1)
    except RatchetError as exc:
        fail(exc)
    if result.seq is None:
        out.print(f"nothing to upgrade: {workspace} is judged by the scorer of ratchet {result.to_version} "
                  "already installed", markup=False)
        return
    err.print(f"scorer: {result.modules}", markup=False)
    how = ("decisions, dev metrics and gate gains identical" if result.identical else
           f"changes accepted ({len(result.changes)}): " + "; ".join(result.changes[:3]))
    out.print(f"upgrade recorded (ledger entry {result.seq}): ratchet {result.from_version} -> {result.to_version}, "
              f"{result.replayed} policies replayed, {how}. Next: `ratchet run {workspace}`", markup=False)


@app.command(epilog="Example: ratchet sample fraud transactions.csv --rows 40000")
def sample(
    domain: str = typer.Argument(..., help="The domain whose data to write: fraud, pricing or routing."),
    file: Path = typer.Argument(..., help="Where to write: .csv or .parquet."),
    rows: int = typer.Option(40_000, "--rows", min=1_000, max=5_000_000, help="About how many rows."),
    seed: int = typer.Option(1, "--seed", help="Generator seed."),
) -> None:
    """Write generated rows in the shape `ratchet init DOMAIN --data FILE` reads (decision-time columns and the label,
    no generator internals): a stand-in for your own file in a first try. Prints the init command that reads it."""
    from domains import DOMAINS, get_domain
    from optimizer.workspace.user_columns import key_columns

    if domain not in DOMAINS:
        fail(RatchetError(f"{domain}: unknown domain; one of {', '.join(DOMAINS)}."))
    if file.suffix.lower() not in (".csv", ".parquet"):
        fail(RatchetError(f"{file}: write .csv or .parquet (named by the extension)."))
    d = get_domain(domain)
    keys = key_columns(d)
    internal = [c for c in d.columns.outcome_only if c not in keys.values()]  # the generator's, not an importer's
    frame = d.generate(seed, rows).drop(columns=internal, errors="ignore")
    file.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(file, index=False) if file.suffix.lower() == ".csv" else frame.to_parquet(file, index=False)
    maps = " ".join(f"--map {k}={c}" for k, c in keys.items() if c in frame.columns)
    err.print(f"{file}: {len(frame):,} {domain} rows, columns {', '.join(map(str, frame.columns))}", markup=False)
    out.print(f"Next: ratchet init {domain} --workspace ws --data {file} {maps}", markup=False)
