"""The report's plots, drawn with matplotlib (Agg, no display) from optimizer.report.facts; each is PNG bytes of a
fixed size in pixels (SIZE), so a page and its test know what to expect.

Text from records (hypotheses, experiment, guard, metric and segment names) is drawn as text: every `$` is escaped,
so matplotlib never reads it as mathtext (a hypothesis with `$\\sigmoid(x)$` in it raised while drawing), and
LaTeX is off whatever an operator's matplotlibrc says. `draw` runs one plot and turns a failure into a one-line
reason for its place on the page: one plot that cannot be drawn never costs the others, or the report.
"""
from __future__ import annotations

import functools
import io
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from optimizer.records.experiment_record import ExperimentStatus

DPI = 100
SIZE = {"trajectory": (1100, 620), "guardrails": (1100, 360), "segments": (1100, 420), "rejections": (1100, 320)}
STYLE = {  # how an experiment is marked -> (marker, colour, label); the words are its status
    ExperimentStatus.KEPT: ("*", "#1b7f3b", "kept"),
    ExperimentStatus.REVERTED: ("x", "#c0392b", "reverted by a dev guard"),
    "gate": ("o", "#7f8c8d", "reverted at the holdout gate"),
    ExperimentStatus.CRASHED: ("v", "#8e44ad", "crashed"),
}


def mark(point: Any) -> str:
    """The STYLE of a trajectory point: a would-be keep (`ratchet try`) is drawn as kept."""
    if point.outcome in (ExperimentStatus.KEPT, ExperimentStatus.WOULD_KEEP):
        return ExperimentStatus.KEPT
    return "gate" if point.at_gate else point.outcome


@dataclass(frozen=True)
class Drawn:
    """One plot: its PNG bytes, or (png None) why it could not be drawn, in one line."""

    name: str
    png: bytes | None
    problem: str = ""


def draw(name: str, plot: Callable[..., bytes], *args: Any, **kwargs: Any) -> Drawn:
    """`plot(*args, **kwargs)`; a failure is the plot's problem (its figure closed), not the report's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        return Drawn(name, plot(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - whatever matplotlib raised, the other plots and the page go on
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
        why = " ".join(str(exc).split())[:200] or "no message"
        return Drawn(name, None, f"the {name} plot could not be drawn ({type(exc).__name__}: {why}); its figures "
                                 "are in the table below; please report this error")


def plain(text: Any) -> str:
    """Text from a record as matplotlib draws it literally: `$` escaped, so no mathtext is ever parsed."""
    return str(text).replace("$", r"\$")


def _as_text(plot: Callable[..., bytes]) -> Callable[..., bytes]:
    """The plot drawn with LaTeX off (an operator's matplotlibrc may set text.usetex, and LaTeX reads `_`, `%`, `&`
    and `#` in names as commands): a text's setting is taken when it is made, so the whole drawing is inside."""
    @functools.wraps(plot)
    def drawn(*args: Any, **kwargs: Any) -> bytes:
        import matplotlib

        with matplotlib.rc_context({"text.usetex": False}):
            return plot(*args, **kwargs)

    return drawn


def _figure(name: str, rows: int = 1, cols: int = 1, **kw: Any):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, h = SIZE[name]
    return plt.subplots(rows, cols, figsize=(w / DPI, h / DPI), dpi=DPI, **kw)


def _done(fig, ax, empty: bool, message: str) -> bytes:
    """Say `message` on an empty plot, lay the figure out and return its PNG bytes."""
    if empty:
        ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches="tight": the size stays SIZE's
    plt.close(fig)
    return buf.getvalue()


@_as_text
def trajectory(points: Iterable[Any], *, primary: str, baseline: float | None) -> bytes:
    """Every experiment's dev value by outcome, the running best of what was kept (kept ones labelled with their
    hypothesis) and, below, the holdout gate's Ladder-rounded answers."""
    points = list(points)
    fig, (top, low) = _figure("trajectory", 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for kind, (marker, colour, label) in STYLE.items():
        mine = [p for p in points if mark(p) == kind and p.value is not None]
        if mine:
            top.scatter([p.number for p in mine], [p.value for p in mine], marker=marker, color=colour,
                        s=110 if kind == ExperimentStatus.KEPT else 36, label=f"{label} ({len(mine)})", zorder=3)
    crashed = [p for p in points if p.value is None]
    if crashed:
        top.scatter([p.number for p in crashed], [baseline or 0.0] * len(crashed), marker="v",
                    color=STYLE[ExperimentStatus.CRASHED][1], s=36,
                    label=f"crashed before scoring ({len(crashed)})", zorder=3)
    steps = [(0, baseline)] + [(p.number, p.best) for p in points]
    if baseline is not None:
        top.step([n for n, _ in steps], [b for _, b in steps], where="post", color="#1b7f3b", lw=1.6,
                 label="champion (running best of what was kept)")
    for p in points:
        if mark(p) == ExperimentStatus.KEPT and p.value is not None:
            top.annotate(plain(textwrap.shorten(p.hypothesis or p.experiment, 48)), (p.number, p.value),
                         textcoords="offset points", xytext=(6, 8), fontsize=8, color="#1b7f3b")
    top.set_ylabel(plain(f"dev {primary}"))
    top.set_title(plain(f"{len(points)} experiments: dev {primary} by outcome"))
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best")
    asked = [p for p in points if p.gate is not None]
    if asked:
        low.bar([p.number for p in asked], [p.gate for p in asked], width=0.6,
                color=["#1b7f3b" if mark(p) == ExperimentStatus.KEPT else "#7f8c8d" for p in asked])
    low.axhline(0, color="black", lw=0.8)
    low.set_ylabel("holdout gate\n(Ladder-rounded)", fontsize=8)
    low.set_xlabel("experiment")
    from matplotlib.ticker import MaxNLocator

    low.xaxis.set_major_locator(MaxNLocator(integer=True))
    low.grid(alpha=0.3)
    return _done(fig, low, not asked, "the holdout was not asked yet")


@_as_text
def guardrails(series: Iterable[Any]) -> bytes:
    from matplotlib.ticker import MaxNLocator

    series = list(series)
    fig, axes = _figure("guardrails", 1, max(len(series), 1), squeeze=False)
    for ax, s in zip(axes[0], series):
        if s.points:
            ax.plot([n for n, _ in s.points], [v for _, v in s.points], "o-", ms=3, lw=1, color="#2c3e50")
        if s.limit is not None:
            ax.axhline(s.limit, color="#c0392b", ls="--", lw=1.2, label=f"limit {s.limit:g}")
        if s.tolerance_bound is not None:
            ax.axhline(s.tolerance_bound, color="#e67e22", ls=":", lw=1.2, label="baseline + tolerance")
        if s.baseline is not None:
            ax.axhline(s.baseline, color="#7f8c8d", lw=0.8, label="baseline")
        ax.set_title(plain(f"{s.metric} ({s.kind})"), fontsize=9)
        ax.set_xlabel("experiment", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _done(fig, axes[0][0], not series, "this domain has no guardrails")


def charted(rows: Iterable[Any], min_rows: int) -> tuple[list[Any], list[Any], str]:
    """The segments the chart draws (those of at least `min_rows` rows: the segment guard judges no smaller one, and
    a six-row segment's mean would dominate the axis), those it leaves out, and the note that says so ("" if none).
    The report's table keeps them all."""
    rows = list(rows)
    drawn, small = [r for r in rows if r.rows >= min_rows], [r for r in rows if r.rows < min_rows]
    note = (f"{len(small)} segment{'s' if len(small) != 1 else ''} under {min_rows:,} rows not drawn (in the table)"
            if small else "")
    return drawn, small, note


@_as_text
def segments(rows: Iterable[Any], *, primary: str, min_rows: int = 200) -> bytes:
    rows, _, note = charted(rows, min_rows)
    fig, ax = _figure("segments")
    labels = [plain(f"{r.family}={r.segment} ({r.rows:,})") for r in rows]
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r.baseline for r in rows], height=0.4, color="#95a5a6", label="baseline")
    ax.barh([i - 0.2 for i in y], [r.champion for r in rows], height=0.4, color="#1b7f3b", label="champion")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(plain(f"dev {primary} per row"))
    ax.set_title("segments: champion vs baseline (dev)" + (f"; {note}" if note else ""))
    if rows:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _done(fig, ax, not rows, f"no segment of {min_rows:,} rows or more" if note else "no segment figures")


@_as_text
def rejections(rows: Iterable[Any]) -> bytes:
    rows = list(rows)
    fig, ax = _figure("rejections")
    ax.bar([plain(r.guard) for r in rows], [r.count for r in rows], color="#c0392b")
    ax.set_ylabel("experiments refused")
    ax.set_title("rejections by guard")
    ax.grid(alpha=0.3, axis="y")
    return _done(fig, ax, not rows, "no guard refused an experiment")
