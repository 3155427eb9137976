"""`ratchet demo`: the main job end to end on built-in data, in a few minutes."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console
from rich.table import Table

from optimizer.base.errors import RatchetError

if TYPE_CHECKING:
    from optimizer.records.context import Context


def starting_policy(domain: str) -> str:
    """The domain's baseline policy with the demo's starting tunables (under-tuned, so the loop has a gain to find)."""
    from domains import get_domain
    from optimizer.base.tunables import rewrite

    adapter = get_domain(domain)
    return rewrite(adapter.baseline_policy.read_text(), adapter.demo.start)


def _ladder_step(ctx: Context, champion: Any, baseline: Any) -> float:
    """The reported gain's Ladder step: the gate's step, in standard errors of the champion's holdout gain."""
    from holdout.gate import gain_se
    from optimizer.loop.stages import state_scores

    (a_dev, a_hold), (b_dev, b_hold) = (state_scores(ctx, champion, "report_champion"),
                                        state_scores(ctx, baseline, "report_baseline"))
    return ctx.config.gate.step_se * gain_se(a_dev.contributions, b_dev.contributions, a_hold.contributions,
                                             b_hold.contributions)


@dataclass(frozen=True)
class DemoRun:
    """What the demo's summary says about the run besides the two policies."""

    experiments: int  # this run's
    kept: int  # this run's
    candidates: int  # every experiment under the seal: what the champion was picked among
    asked: int  # holdout answers under the seal
    budget_left: int  # holdout tests (lord) or budget (thresholdout) left
    last: str | None = None  # the run's last experiment (shown when nothing was kept)
    step: float | None = None  # thresholdout: the Ladder step of the reported gain


def _value(v: float) -> str:
    """A metric value for a sentence: 4 decimals, or 3 significant digits below 0.01 (0.000412, not 0.0004)."""
    return f"{v:.4f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3g}"


def _ratio(new: float, old: float) -> str:
    if old == 0:
        return "from 0"
    r = new / old
    return f"x {r:.0f}" if abs(r) >= 10 else f"x {r:.1f}" if abs(r) >= 1 else f"x {r:.2f}"


def guardrail_limit(spec: Any) -> str:
    """A guardrail's limits in words: "at most 0.01 above the baseline, and per kept step at most 100 % worse than
    the champion before it"."""
    higher = spec.higher_is_better
    parts = []
    if spec.limit is not None:
        parts.append(f"{'at least' if higher else 'at most'} {spec.limit:g}")
    if getattr(spec, "tolerance", None) is not None:
        parts.append(f"at most {spec.tolerance:g} {'below' if higher else 'above'} the baseline")
    if getattr(spec, "margin", None) is not None:
        parts.append(f"and per kept step at most {spec.margin * 100:g} % worse than the champion before it")
    return ", ".join(parts) or "none"


def worse(info: Any, base: float, champ: float) -> bool:
    """Whether `champ` is worse than `base` for a metric with a direction, at the precision the demo shows."""
    if info is None or info.higher_is_better is None or not (base == base and champ == champ):
        return False
    if _value(base) == _value(champ):
        return False
    return champ < base if info.higher_is_better else champ > base


def demo_summary(domain: str, base: Any, champ: Any, config: Any, report: Any, run: DemoRun, *,
                 workspace: str = "DIR") -> list:
    """The demo's summary: the table of dev metrics (each with its unit and direction), then lines: the holdout's
    gated gain in one sentence, every shown metric that got worse (with its guardrail, if any), the audit and the
    next commands. Table first, then strings."""
    from domains import get_domain
    from optimizer.report.metrics import describe
    from optimizer.workspace.config import merged_guardrails

    adapter = get_domain(domain)
    primary = describe(domain, adapter.primary)
    table = Table(title=f"{domain} demo: {run.experiments} experiments, {run.kept} kept (dev metrics)")
    table.add_column("metric", min_width=22, no_wrap=True)
    table.add_column("unit, direction (what it is)", ratio=1)
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column(f"champion ({champ.experiment})", justify="right", no_wrap=True)
    trade: list[str] = []
    limits = {s.metric: s for s in merged_guardrails(adapter.guardrails, config.guardrails, domain)}
    for key in adapter.demo.shown:
        if key not in base.dev_metrics:
            continue
        info = describe(domain, key)
        b, c = base.dev_metrics[key], champ.dev_metrics.get(key, float("nan"))
        table.add_row(key, f"{info.label}\n[dim]{info.meaning}[/dim]" if info else "", f"{b:.4f}", f"{c:.4f}")
        if worse(info, b, c):
            spec = limits.get(key)
            why = f"guardrail limit: {guardrail_limit(spec)}" if spec else "no guardrail"
            trade.append(f"trade-off: {key} {_value(b)} -> {_value(c)} ({_ratio(c, b)}, worse; {why})")
    lines: list = [table, gain_sentence(domain, adapter.primary, primary, champ, base, config, run)]
    lines += trade or ["no shown metric got worse from the baseline to the champion"]
    lines.append(audit_line(report))
    lines.append(next_line(workspace, champ, base, run, shadow=adapter.shadow.measurable))
    return lines


def gain_sentence(domain: str, metric: str, info: Any, champ: Any, base: Any, config: Any, run: DemoRun) -> str:
    """The holdout's answer on the champion in one sentence, with its numbers."""
    asked = f"the holdout was asked {run.asked} time{'s' if run.asked != 1 else ''}"
    left = (f"{run.budget_left} test{'s are' if run.budget_left != 1 else ' is'} left" if config.gate.kind == "lord"
            else f"{run.budget_left} of the gate's budget {config.gate.budget} is left")
    if champ.experiment == base.experiment:
        return (f"No candidate passed every guard and the holdout: the champion is still the baseline; {asked} "
                f"(a refusal reveals only that the candidate fell short), {left}.")
    what = f"{metric} ({info.label}{'' if info.higher_is_better is not False else ': a gain is a drop'})" \
        if info else metric
    gain = champ.reported
    if config.gate.kind == "lord":
        return (f"The holdout confirms the champion gains {gain:+.4f} in {what} over the baseline (90 % interval "
                f"{champ.reported_lower:+.4f} to {champ.reported_upper:+.4f}), corrected for having been picked among "
                f"{run.candidates} candidates; {asked}, {left}.")
    from holdout.gate import ladder_round

    step = run.step or 0.0
    return (f"The holdout-gated gain of the champion over the baseline is {ladder_round(gain, step):+.4f} in "
            f"{what}, rounded down to the gate's step {step:.4f} "
            f"so repeated looks reveal little; {asked}, {left}.")


def audit_line(report: Any) -> str:
    failed = [c for c in report.checks if not c.passed]
    skipped = report.not_checked
    return (f"audit: {'intact' if report.ok else 'INTEGRITY FAILURE'} ({len(report.checks)} checks"
            + (f", {len(skipped)} not checked: {', '.join(c.name for c in skipped)}" if skipped else "")
            + (f"; failed: {', '.join(c.name for c in failed)}" if failed else "") + ")")


def next_line(workspace: str, champ: Any, base: Any, run: DemoRun, *, shadow: bool = True) -> str:
    """The commands to run next: why the champion was kept, the run as a page, and (where the domain's shadow trial
    can measure its primary metric) a trial on live events."""
    ws = shlex.quote(workspace)
    if champ.experiment != base.experiment:
        trial = (f", `ratchet shadow start {ws} --challenger {champ.experiment} --events FILE` (try it on live events; "
                 f"`ratchet events {ws} --days 30 --events-out FILE --outcomes-out OUTCOMES` makes some)"
                 if shadow else "")
        return (f"Next: `ratchet show {ws} {champ.experiment}` (why it was kept), `ratchet report {ws}` (the run as a "
                f"page){trial}")
    show = f"`ratchet show {ws} {run.last}` (why it was not kept), " if run.last else ""
    return (f"Next: {show}`ratchet report {ws}` (the run as a page), `ratchet run {ws} --experiments 20` "
            "(search on)")


def run_demo(workspace: Path, *, experiments: int, rows: int | None, out: Console, err: Console,
             display: Callable[[int, str], Any], domain: str) -> int:
    from domains import get_domain
    from holdout import queries
    from holdout.audit import audit
    from optimizer.lifecycle.initialize import init_workspace, source_root
    from optimizer.loop.run import run_loop
    from optimizer.records.context import load_context
    from optimizer.tracking.runs import tracking_uri

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
    gates = ctx.gates()
    entries = ctx.ledger.entries()
    sealed = max((i for i, e in enumerate(entries) if e.kind in ("seal", "reseal")), default=0)
    step = None if ctx.config.gate.kind == "lord" else _ladder_step(ctx, champ, base)
    report = audit(workspace, source_root=source_root(), gate_settings=ctx.config.gate.model_dump())
    facts = DemoRun(experiments=len(summary.records), kept=summary.kept,
                    candidates=sum(e.kind == "experiment" for e in entries[sealed:]), asked=len(gates),
                    budget_left=queries.budget_left(entries, ctx.config.gate.budget),
                    last=summary.records[-1].experiment if summary.records else None, step=step)
    for shown in demo_summary(ctx.domain.name, base, champ, ctx.config, report, facts, workspace=str(workspace)):
        if isinstance(shown, str):
            out.print(shown, markup=False)
        else:
            out.print(shown)
    uri = tracking_uri()
    out.print(f"MLflow records: {uri}\nopen the UI with: make serve   (then http://127.0.0.1:5000)", markup=False)
    return 0 if report.ok else 1
