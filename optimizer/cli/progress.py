"""The loop's progress on the terminal: one line per experiment on stderr, a rich progress bar with the running
best, kept count, rate, last refusal, the gate's budget and the bar the next candidate must clear."""
from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)


class LoopDisplay:
    """A rich progress line: experiment i/N, current best, kept count, time left."""

    def __init__(self, total: int, primary: str) -> None:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.primary = primary
        self.kept = 0
        self.best: float | None = None
        self.started, self.done = time.monotonic(), 0
        self.clock = time.monotonic
        self.last_rejection = "-"  # the guard that refused the latest refused experiment
        self.budget_left: int | str = "-"  # the holdout gate's answers left, as of the last answer
        self.bar = None  # optimizer.loop.power.Bar: what the next candidate must clear
        self.progress = Progress(TextColumn("[bold]experiment"), MofNCompleteColumn(), BarColumn(),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=err,
                                 transient=False)
        self.task = self.progress.add_task("loop", total=total, status="starting")

    def __call__(self, event) -> None:
        from optimizer.loop.run import BaselineReady, Dropped, Proposed, Recorded, Started, TrackingChanged

        if isinstance(event, Started):
            err.print(f"proposer: {event.proposer} ({event.why})", markup=False)
            err.print(f"sandbox layers active: {', '.join(event.layers)}", markup=False)
        elif isinstance(event, BaselineReady):
            self.best = event.champion.dev_metrics.get(self.primary)
            self.bar = event.bar
            if event.bar is not None:
                err.print(event.bar.line(), markup=False)
            self._status("baseline evaluated")
        elif isinstance(event, Proposed):
            self._status(event.hypothesis[:60])
        elif isinstance(event, Dropped):
            err.print(f"dropped   {event.hypothesis[:70]}  [{event.why}]", markup=False)
        elif isinstance(event, TrackingChanged):
            err.print(f"MLflow at {event.uri}: {event.down}; recording to the ledger only until it answers again"
                      if event.down else f"MLflow at {event.uri} answers again: wrote the runs it missed", markup=False)
        elif isinstance(event, Recorded):
            record = event.record
            self.kept += record.kept
            self.done += 1
            self.bar = event.bar or self.bar
            if record.verdict.failed_guards:
                self.last_rejection = record.verdict.failed_guards[0]
            if record.gate and record.gate.get("budget_left") is not None:
                self.budget_left = record.gate["budget_left"]
            if record.kept:
                self.best = record.dev_metrics.get(self.primary, self.best)
            failed = record.verdict.failed_guards
            err.print(f"{record.experiment} {record.status:<9} {record.hypothesis[:70]}"
                      + (f"  [failed: {', '.join(failed)}]" if failed else ""), markup=False)
            if record.kept and self.bar is not None:
                err.print(self.bar.line(), markup=False)  # a keep moves the bar: say where it is now
            self.progress.advance(self.task)
            self._status("")

    def _status(self, note: str) -> None:
        best = f"{self.best:.4f}" if self.best is not None else "-"
        hours = (self.clock() - self.started) / 3600
        rate = f"{self.done / hours:.0f}/h" if self.done and hours > 0 else "-"
        self.progress.update(self.task, status=f"best {self.primary} {best} | kept {self.kept} | {rate} | last "
                                               f"refused by {self.last_rejection} | gate left {self.budget_left} | "
                                               f"{self.bar.short() if self.bar else ''} | {note}")
