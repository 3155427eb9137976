"""Guardrail metrics: a gain on the primary metric may not be paid for elsewhere.

Up to three limits per metric (see GuardrailSpec): `margin` against the current champion stops one
large step back; `floor` against the ORIGINAL baseline stops a ratchet of many small steps back,
each within the margin, from adding up; `limit` is an absolute business rule (a fairness ratio, a
conversion floor) that holds whatever the baseline did.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from domains.contract import GuardrailSpec
from guards._result import GuardResult


def _worse_by(value: float, reference: float, higher_is_better: bool) -> float:
    """How much worse `value` is than `reference` (negative when it is better)."""
    return reference - value if higher_is_better else value - reference


def _exceeds(worse: float, limit: float) -> bool:
    # Exactly at the limit is allowed; float noise in the last digits must not turn it into a failure.
    return worse > limit and not math.isclose(worse, limit, rel_tol=1e-9, abs_tol=1e-12)


def check_guardrails(candidate: Mapping[str, float], champion: Mapping[str, float], baseline: Mapping[str, float],
                     specs: Sequence[GuardrailSpec]) -> GuardResult:
    """Fail when any guardrail is worse than the baseline by > floor or than the champion by > margin."""
    problems: list[str] = []
    figures: dict[str, float | int | str] = {"guardrails": len(specs)}
    for spec in specs:
        m = spec.metric
        missing = [who for who, src in (("candidate", candidate), ("champion", champion), ("baseline", baseline))
                   if m not in src]
        if missing:
            problems.append(f"guardrail {m}: no value for the {' and '.join(missing)}")
            continue
        cand, champ, base = float(candidate[m]), float(champion[m]), float(baseline[m])
        if not all(math.isfinite(v) for v in (cand, champ, base)):
            problems.append(f"guardrail {m}: non-finite value (candidate {cand}, champion {champ}, baseline {base})")
            continue
        vs_base = _worse_by(cand, base, spec.higher_is_better)
        vs_champ = _worse_by(cand, champ, spec.higher_is_better)
        figures.update({f"{m}.candidate": cand, f"{m}.champion": champ, f"{m}.baseline": base,
                        f"{m}.worse_vs_baseline": vs_base, f"{m}.worse_vs_champion": vs_champ})
        figures.update({f"{m}.{k}": float(v) for k, v in (("floor", spec.floor), ("margin", spec.margin),
                                                          ("limit", spec.limit)) if v is not None})
        direction = "higher" if spec.higher_is_better else "lower"
        if spec.limit is not None and _exceeds(_worse_by(cand, spec.limit, spec.higher_is_better), 0.0):
            bound = "at least" if spec.higher_is_better else "at most"
            problems.append(f"guardrail {m}: candidate {cand:.6g} breaks the limit (must be {bound} {spec.limit:g})")
        if spec.floor is not None and _exceeds(vs_base, spec.floor):
            problems.append(f"guardrail {m} ({direction} is better): candidate {cand:.6g} is {vs_base:.6g} worse than "
                            f"the original baseline {base:.6g}, beyond the floor {spec.floor:g}")
        if spec.margin is not None and _exceeds(vs_champ, spec.margin):
            problems.append(f"guardrail {m} ({direction} is better): candidate {cand:.6g} is {vs_champ:.6g} worse "
                            f"than the champion {champ:.6g}, beyond the margin {spec.margin:g}")
    figures["failures"] = len(problems)
    if problems:
        return GuardResult("guardrail", False, "; ".join(problems), figures)
    names = ", ".join(s.metric for s in specs) or "none configured"
    return GuardResult("guardrail", True, f"all guardrails within their limits ({names})", figures)
