"""How large a gain can be kept now: the bar a candidate must clear on dev and on the holdout, in the data's units.

A person running the loop should see its power before waiting a night for it: the dev screen's critical value,
the holdout stream's next level (it rises after each keep and decays between them), how many rows and positives
decide, and one standard error of a typical change (the spread of the champion's own per-row contributions on
dev, until holdout tests have measured real candidates' standard errors). Nothing here reveals a holdout value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from optimizer.records.context import Context


@dataclass(frozen=True)
class Bar:
    dev_z: float  # the dev screen's critical value
    hold_z: float | None  # the next holdout test's critical value (None: the gate is not a test stream)
    level: float | None
    test: int  # the next holdout test's number under this seal
    passes: int  # holdout tests passed so far under this seal
    tests_left: int
    dev_rows: int
    dev_positives: int | None
    hold_rows: int
    se_dev: float | None  # one standard error of a typical change's mean gain, on dev and on the holdout
    se_hold: float | None

    @property
    def gain(self) -> float | None:
        """The gain (per row) that clears both bars about half the time: the smallest one worth proposing."""
        if self.se_dev is None or self.se_hold is None:
            return None
        return max(self.dev_z * self.se_dev, (self.hold_z or 0.0) * self.se_hold)

    def line(self) -> str:
        positives = f", {self.dev_positives:,} positives" if self.dev_positives is not None else ""
        hold = (f" and {self.hold_z:.2f} on the holdout ({self.hold_rows:,} rows; test {self.test} of the stream, "
                f"level {self.level:.2g}, {self.passes} passed, {self.tests_left} tests left)"
                if self.hold_z is not None else "")
        said = (f"power: a gain must clear {self.dev_z:.2f} standard errors on dev ({self.dev_rows:,} rows{positives})"
                f"{hold}")
        if self.gain is not None:
            said += f"; for a typical change that is about {self.gain:+.4g} per row"
        return said

    def short(self) -> str:
        """For the run's progress line."""
        return f"keepable >= {self.gain:+.3g}" if self.gain is not None else f"holdout z >= {self.hold_z or 0:.2f}"


def _positives(frame: Any, label: str) -> int | None:
    values = frame[label]
    if values.dtype == bool or set(np.unique(values.to_numpy())) <= {0, 1}:
        return int(values.sum())
    return None


def bar(ctx: Context, entries: list | None = None, champion: Any = None) -> Bar:
    """The bar for the next candidate. `champion`: the policy it will be compared with (its dev contributions
    give the typical standard error until holdout tests have recorded real ones)."""
    from guards.significance import adjusted_alpha
    from holdout import queries
    from holdout.fdr import critical_z, lord_level
    from optimizer.loop.stages.gate import lord_stream

    d, g = ctx.config.decision, ctx.config.gate
    entries = ctx.ledger.entries() if entries is None else entries  # one read serves every figure below
    looks = 1 + sum(1 for e in entries if e.kind == "experiment")
    dev_z = critical_z(adjusted_alpha(d.confidence, looks, d.looks))
    test, passes, left = lord_stream(ctx, entries)
    level = hold_z = None
    if g.kind == "lord":
        level = lord_level(test, passes, alpha=g.fdr)
        hold_z = critical_z(level)
    n_dev, n_hold = len(ctx.dev), len(ctx.holdout)
    recorded = [g.se for g in queries.gates(entries) if g.kind == "lord" and g.se is not None and g.se > 0]
    se_dev = se_hold = None
    if recorded:  # real candidates' holdout standard errors, scaled to dev's rows
        se_hold = float(np.median(recorded))
        se_dev = se_hold * math.sqrt(n_hold / n_dev)
    elif champion is not None:
        from optimizer.loop.stages.scoring import state_scores

        dev, _ = state_scores(ctx, champion, "champion")
        sd = float(np.std(dev.contributions, ddof=1))
        se_dev, se_hold = sd / math.sqrt(n_dev), sd / math.sqrt(n_hold)
    positives = ctx.memo("dev_positives", None, lambda: _positives(ctx.dev, ctx.domain.columns.label))
    return Bar(dev_z, hold_z, level, test, len(passes), left, n_dev, positives, n_hold, se_dev, se_hold)
