"""Can an off-policy estimate be trusted? Only where the logs tried what the candidate decides.

An off-policy estimate reweights the logged rows whose action matches the candidate's decision.
A candidate that picks actions the logging policy rarely tried is judged on a handful of heavily
weighted rows: its estimate is noise, and a loop that maximizes noise finds it. This is how a
pricing loop games an off-policy metric, so the estimate itself is refused when:

- the effective sample size (sum w)^2 / sum w^2 of the importance weights is a small share of the
  rows (Kong 1992; a few huge weights carry the estimate), or
- too many decisions sit at actions the logs offered too rarely to learn anything about them.
"""
from __future__ import annotations

from typing import Mapping

from guards._result import GuardName, GuardResult


def check_support(metrics: Mapping[str, float], *, min_ess_share: float, min_supported_share: float,
                  min_logged_share: float) -> GuardResult:
    """Fail when the estimate rests on too few effective rows or on rarely logged actions."""
    ess, supported = float(metrics["ess_share"]), float(metrics["supported_share"])
    figures = {"ess_share": ess, "supported_share": supported, "min_ess_share": min_ess_share,
               "min_supported_share": min_supported_share, "min_logged_share": min_logged_share,
               "match_share": float(metrics.get("match_share", float("nan")))}
    problems = []
    if not ess >= min_ess_share:
        problems.append(f"effective sample size is {ess:.1%} of the rows (minimum {min_ess_share:.1%}): the estimate "
                        "rests on a few heavily weighted rows")
    if not supported >= min_supported_share:
        problems.append(f"only {supported:.1%} of decisions are at actions the logs tried on at least "
                        f"{min_logged_share:.1%} of rows (minimum {min_supported_share:.1%})")
    if problems:
        return GuardResult(GuardName.SUPPORT, False, "off-policy estimate not trusted: " + "; ".join(problems) +
                           ". Decide actions the logging policy tried, or collect logs that try them.", figures)
    return GuardResult(GuardName.SUPPORT, True, f"estimate supported by the logs (effective sample {ess:.1%} of rows, "
                       f"{supported:.1%} of decisions at logged actions)", figures)
