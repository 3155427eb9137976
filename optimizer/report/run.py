"""`ratchet report`: one self-contained HTML file of a workspace's run (plots embedded, nothing loaded from outside),
its plots also as PNG files beside it, and the whole logged to the workspace's MLflow experiment."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from optimizer.report import facts as F
from optimizer.report import plots


@dataclass(frozen=True)
class RunFacts:
    workspace: str
    domain: str
    primary: str
    higher_is_better: bool
    made_at: str
    baseline: Mapping[str, float]
    champion: Mapping[str, float]
    champion_experiment: str
    points: tuple[F.Point, ...]
    rejections: tuple[F.Rejection, ...]
    guardrails: tuple[F.GuardrailSeries, ...]
    segments: tuple[F.SegmentRow, ...]
    segments_note: str  # why there are no segment figures, when there are none
    holdout: F.Holdout
    kept: tuple[F.Kept, ...]
    events: tuple[F.Event, ...]
    audit: Any  # holdout.audit.AuditReport
    segment_min_rows: int = 200  # decision.segment_min_rows: smaller segments are left out of the segment chart


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    images: Mapping[str, Path]  # the plots drawn, as PNG files beside the page
    mlflow_run: str | None  # the MLflow run the report was logged to (None with log=False)
    audit_status: str
    missing: Mapping[str, str] = field(default_factory=dict)  # plot -> why it could not be drawn (said in its place)


def gather(root: Path, *, progress: Callable[[str], None] = lambda _: None) -> RunFacts:
    """Everything the report shows, read (never written) from the workspace at `root`."""
    from domains import get_domain
    from holdout.audit import audit
    from holdout.ledger import Ledger
    from holdout.manifest import read_manifest
    from optimizer.lifecycle.initialize import source_root
    from optimizer.records.policy_state import PolicyState
    from optimizer.workspace.config import load_config
    from optimizer.workspace.layout import Workspace

    ws = Workspace.open(root)
    config = load_config(ws.config)
    domain = get_domain(config.domain)
    entries = Ledger(ws.ledger).entries()
    recs = F.records(entries)
    base_state, champ_state = PolicyState.load(ws.root / "baseline"), PolicyState.load(ws.root / "champion")
    base = dict(base_state.dev_metrics) if base_state else {}
    champ = dict(champ_state.dev_metrics) if champ_state else base
    progress("segments of the champion and the baseline on dev")
    rows, note = _segments(root, base_state, champ_state, domain.primary)
    progress("auditing the workspace")
    report = audit(ws.root, source_root=source_root(), gate_settings=config.gate.model_dump())
    return RunFacts(
        workspace=str(ws.root), domain=domain.name, primary=domain.primary, higher_is_better=domain.higher_is_better,
        made_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), baseline=base, champion=champ,
        champion_experiment=champ_state.experiment if champ_state else "baseline",
        points=F.trajectory(recs, primary=domain.primary, baseline=base.get(domain.primary)),
        rejections=F.rejections(recs), guardrails=F.guardrails(recs, domain.guardrails, base), segments=rows,
        segments_note=note, segment_min_rows=config.decision.segment_min_rows,
        holdout=F.holdout(ws.root, read_manifest(ws.holdout_dir), entries, config.gate),
        kept=F.kept_changes(ws.root, recs), events=F.events(entries), audit=report)


def _segments(root: Path, base: Any, champ: Any, primary: str) -> tuple[tuple[F.SegmentRow, ...], str]:
    """Dev segment figures of both policies, scored as the loop scores them; none (with why) when the workspace
    cannot be loaded as verified."""
    from domains import Decisions
    from optimizer.base.errors import RatchetError
    from optimizer.records.context import load_context

    if base is None or champ is None:
        return (), "no baseline has been evaluated yet (run `ratchet run`)"
    try:
        ctx = load_context(root, repair=False)
    except RatchetError as exc:
        return (), f"not computed: {exc}"
    params = ctx.config.scoring.model_dump()
    scored = [ctx.domain.score(ctx.dev, Decisions(s.dev, s.constants), params).segments for s in (base, champ)]
    return F.segments(scored[0], scored[1], primary), ""


def images(facts: RunFacts) -> dict[str, plots.Drawn]:
    """Every plot, each drawn on its own: one that fails says why in its place and costs no other."""
    return {
        "trajectory": plots.draw("trajectory", plots.trajectory, facts.points, primary=facts.primary,
                                 baseline=facts.baseline.get(facts.primary)),
        "guardrails": plots.draw("guardrails", plots.guardrails, facts.guardrails),
        "segments": plots.draw("segments", plots.segments, facts.segments, primary=facts.primary,
                               min_rows=facts.segment_min_rows),
        "rejections": plots.draw("rejections", plots.rejections, facts.rejections),
    }


def write_report(root: Path, out: Path | None = None, *, log: bool = True,
                 progress: Callable[[str], None] = lambda _: None) -> ReportFiles:
    """Write the report (default: reports/run-report.html in the workspace) and its PNGs beside it; with `log`,
    also to a `report` run of the workspace's MLflow experiment."""
    root = Path(root)
    out = Path(out) if out is not None else root / "reports" / "run-report.html"
    facts = gather(root, progress=progress)
    progress("drawing the plots")
    files = write_facts(facts, out)
    return replace(files, mlflow_run=_log(root, out, files.images) if log else None)


def write_facts(facts: RunFacts, out: Path) -> ReportFiles:
    """The page for `facts` at `out` and each drawn plot beside it as `<stem>-<plot>.png` (a plot not drawn leaves
    no file, not even an earlier report's)."""
    from optimizer.report.html import render

    drawn = images(facts)
    page = render("run.html.j2", f=facts, size=plots.SIZE,
                  img={k: base64.b64encode(d.png).decode() for k, d in drawn.items() if d.png is not None},
                  missing={k: d.problem for k, d in drawn.items() if d.png is None})
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, plot in drawn.items():
        path = out.with_name(f"{out.stem}-{name}.png")
        if plot.png is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(plot.png)
            paths[name] = path
    out.write_text(page, encoding="utf-8")
    return ReportFiles(out, paths, None, facts.audit.status,
                       {k: d.problem for k, d in drawn.items() if d.png is None})


def _log(root: Path, html: Path, pngs: Mapping[str, Path]) -> str:
    """A `report` run in the experiment the seal names (never ending another run: a loop may be running now)."""
    from holdout import queries
    from holdout.ledger import Ledger
    from holdout.records import Tag
    from optimizer.tracking.runs import Tracker

    entries = Ledger(root / "ledger.duckdb").entries()
    tracker = Tracker(queries.tracking_experiment(entries))
    with tracker.run("report", tags={Tag.KIND: "report", Tag.SEAL: queries.seal_in_force(entries).manifest_sha256}) \
            as active:
        tracker.mlflow.log_artifact(str(html), "report")
        for path in pngs.values():
            tracker.mlflow.log_artifact(str(path), "report")
        return active.info.run_id
