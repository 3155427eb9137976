"""`ratchet demo`: the main job end to end on built-in data, in a few minutes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from optimizer.errors import RatchetError

DEMO_START = {"THRESHOLD": 0.6, "N_ESTIMATORS": 60}
SHOWN = ("net_savings", "false_decline_rate", "alert_rate", "fraud_recall", "precision", "roc_auc", "pr_auc")


def starting_policy() -> str:
    from domains import get_domain
    from optimizer.proposers._tunables import rewrite

    return rewrite(get_domain("fraud").baseline_policy.read_text(), DEMO_START)


def _ladder_step(ctx: Any, champion: Any, baseline: Any) -> float:
    """Parameter-free Ladder step: std of paired per-row differences / sqrt(n) on dev."""
    params = ctx.config.scoring.model_dump()
    a = ctx.domain.score(ctx.dev, champion.decisions("dev"), params).contributions
    b = ctx.domain.score(ctx.dev, baseline.decisions("dev"), params).contributions
    return float(np.std(a - b) / np.sqrt(len(a))) or float(np.std(b) / np.sqrt(len(b)))


def run_demo(workspace: Path, *, experiments: int, rows: int, out: Console, err: Console,
             display: Callable[[int, str], Any]) -> int:
    from holdout.audit import audit
    from holdout.gate import ladder_round
    from optimizer.context import load_context
    from optimizer.initialize import init_workspace, source_root
    from optimizer.loop import run_loop
    from optimizer.tracking import tracking_uri

    if (workspace / "ratchet.yaml").is_file():
        err.print(f"reusing the existing demo workspace {workspace} (delete it for a fresh start)", markup=False)
    elif workspace.exists() and any(workspace.iterdir()):
        raise RatchetError(f"{workspace}: exists and is not a ratchet workspace. Pass another --workspace.")
    else:
        start = workspace.parent / f".{workspace.name}-start-policy.py"
        start.write_text(starting_policy())
        err.print(f"starting from the baseline policy with {DEMO_START} (under-tuned on purpose, so the loop has "
                  "a real gain to find)", markup=False)
        try:
            with err.status("initialising") as status:
                result = init_workspace("fraud", workspace, overrides={"data.rows": rows}, policy_file=start,
                                        progress=lambda msg: status.update(msg))
        finally:
            start.unlink(missing_ok=True)
        out.print(f"sealed holdout: {result.rows['holdout']:,} rows, manifest sha256 {result.manifest_sha256[:12]}; "
                  f"train {result.rows['train']:,}, dev {result.rows['dev']:,}", markup=False)
    view = display(experiments, "net_savings")
    with view.progress:
        summary = run_loop(workspace, experiments=experiments, on_event=view)
    ctx = load_context(workspace)
    base, champ = ctx.baseline(), ctx.champion()
    table = Table(title=f"fraud demo: {len(summary.records)} experiments, {summary.kept} kept (dev metrics)")
    table.add_column("metric")
    table.add_column("baseline", justify="right")
    table.add_column(f"champion ({champ.experiment})", justify="right")
    for key in SHOWN:
        if key in base.dev_metrics:
            table.add_row(key, f"{base.dev_metrics[key]:.4f}", f"{champ.dev_metrics.get(key, float('nan')):.4f}")
    step = _ladder_step(ctx, champ, base)
    table.add_row("holdout-gated gain", "0", f"{ladder_round(champ.reported, step):+.4f} (step {step:.4f})")
    gates = ctx.gates()
    budget = gates[-1].data["budget_left"] if gates else ctx.config.gate.budget
    table.add_row("holdout gate budget left", str(ctx.config.gate.budget), str(budget))
    out.print(table)
    report = audit(workspace, source_root=source_root())
    failed = [c for c in report.checks if not c.passed]
    out.print(f"audit: {'intact' if report.ok else 'INTEGRITY FAILURE'} ({len(report.checks)} checks"
              + (f"; failed: {', '.join(c.name for c in failed)}" if failed else "") + ")", markup=False)
    uri = tracking_uri()
    out.print(f"MLflow records: {uri}\nopen the UI with: make serve   (then http://127.0.0.1:5000)", markup=False)
    return 0 if report.ok else 1
