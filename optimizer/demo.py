"""`ratchet demo`: the main job end to end on built-in data, in a few minutes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from optimizer.errors import RatchetError

def starting_policy(domain: str) -> str:
    """The domain's baseline policy with the demo's starting tunables (under-tuned, so the loop has a gain to find)."""
    from domains import get_domain
    from optimizer.tunables import rewrite

    adapter = get_domain(domain)
    return rewrite(adapter.baseline_policy.read_text(), adapter.demo.start)


def _ladder_step(ctx: Any, champion: Any, baseline: Any) -> float:
    """The reported gain's Ladder step: the gate's step, in standard errors of the champion's holdout gain."""
    from holdout.gate import gain_se
    from optimizer.stages import state_scores

    (a_dev, a_hold), (b_dev, b_hold) = (state_scores(ctx, champion, "report_champion"),
                                        state_scores(ctx, baseline, "report_baseline"))
    return ctx.config.gate.step_se * gain_se(a_dev.contributions, b_dev.contributions, a_hold.contributions,
                                             b_hold.contributions)


def run_demo(workspace: Path, *, experiments: int, rows: int | None, out: Console, err: Console,
             display: Callable[[int, str], Any], domain: str) -> int:
    from holdout.audit import audit
    from holdout.gate import ladder_round
    from optimizer.context import load_context
    from optimizer.initialize import init_workspace, source_root
    from optimizer.loop import run_loop
    from domains import get_domain
    from optimizer.tracking import tracking_uri

    demo = get_domain(domain).demo

    if (workspace / "ratchet.yaml").is_file():
        err.print(f"reusing the existing demo workspace {workspace} (delete it for a fresh start)", markup=False)
    elif workspace.exists() and any(workspace.iterdir()):
        raise RatchetError(f"{workspace}: exists and is not a ratchet workspace. Pass another --workspace.")
    else:
        start = workspace.parent / f".{workspace.name}-start-policy.py"
        start.write_text(starting_policy(domain))
        err.print(f"starting from the {domain} baseline policy with {dict(demo.start)} (under-tuned on purpose, so "
                  "the loop has a real gain to find)", markup=False)
        try:
            with err.status("initialising") as status:
                result = init_workspace(domain, workspace, overrides={"data.rows": rows or demo.rows},
                                        policy_file=start,
                                        progress=lambda msg: status.update(msg))
        finally:
            start.unlink(missing_ok=True)
        out.print(f"sealed holdout: {result.rows['holdout']:,} rows, manifest sha256 {result.manifest_sha256[:12]}; "
                  f"train {result.rows['train']:,}, dev {result.rows['dev']:,}", markup=False)
    ctx = load_context(workspace)
    view = display(experiments, ctx.domain.primary)
    with view.progress:
        summary = run_loop(workspace, experiments=experiments, on_event=view)
    ctx = load_context(workspace)
    base, champ = ctx.baseline(), ctx.champion()
    table = Table(title=f"{ctx.domain.name} demo: {len(summary.records)} experiments, {summary.kept} kept "
                        "(dev metrics)")
    table.add_column("metric")
    table.add_column("baseline", justify="right")
    table.add_column(f"champion ({champ.experiment})", justify="right")
    for key in demo.shown:
        if key in base.dev_metrics:
            table.add_row(key, f"{base.dev_metrics[key]:.4f}", f"{champ.dev_metrics.get(key, float('nan')):.4f}")
    if ctx.config.gate.kind == "lord":
        table.add_row("holdout gain (selection-corrected)", "0", f"{champ.reported:+.4f} (90 % interval "
                      f"{champ.reported_lower:+.4f} to {champ.reported_upper:+.4f})")
    else:
        step = _ladder_step(ctx, champ, base)
        table.add_row("holdout-gated gain", "0", f"{ladder_round(champ.reported, step):+.4f} (step {step:.4f})")
    gates = ctx.gates()
    budget = gates[-1].data["budget_left"] if gates else ctx.config.gate.budget
    table.add_row("holdout gate tests left" if ctx.config.gate.kind == "lord" else "holdout gate budget left",
                  str(ctx.config.gate.budget), str(budget))
    out.print(table)
    report = audit(workspace, source_root=source_root(), gate_settings=ctx.config.gate.model_dump())
    failed = [c for c in report.checks if not c.passed]
    out.print(f"audit: {'intact' if report.ok else 'INTEGRITY FAILURE'} ({len(report.checks)} checks"
              + (f"; failed: {', '.join(c.name for c in failed)}" if failed else "") + ")", markup=False)
    uri = tracking_uri()
    out.print(f"MLflow records: {uri}\nopen the UI with: make serve   (then http://127.0.0.1:5000)", markup=False)
    return 0 if report.ok else 1
