"""Guardrail metrics: a gain on the primary metric may not be paid for elsewhere.

Each guardrail has a kind (see GuardrailSpec): a *capacity* limit is an absolute ceiling (the alerts a
review team can handle), so a policy that alerts more than a champion that alerted on nothing is not
refused for it; a *harm* limit compares with the ORIGINAL baseline (`tolerance`, so a ratchet of many small
steps back, each within the per-step margin, cannot add up) and with the current champion (a relative
`margin`, so one large step back is refused); a *fairness* limit bounds a gap between groups whatever the
baseline did. An absolute `limit` holds for every kind.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from domains.contract import GuardrailSpec
from guards._result import GuardName, GuardResult


def _worse_by(value: float, reference: float, higher_is_better: bool) -> float:
    """How much worse `value` is than `reference` (negative when it is better)."""
    return reference - value if higher_is_better else value - reference


def _exceeds(worse: float, limit: float) -> bool:
    # Exactly at the limit is allowed; float noise in the last digits must not turn it into a failure.
    return worse > limit and not math.isclose(worse, limit, rel_tol=1e-9, abs_tol=1e-12)


def step_allowance(spec: GuardrailSpec, champion: float) -> float | None:
    """How much worse than the champion a harm guardrail lets one step be (None: not checked)."""
    if spec.margin is None:
        return None
    return spec.margin * max(abs(champion), spec.tolerance or 0.0)


def check_guardrails(candidate: Mapping[str, float], champion: Mapping[str, float], baseline: Mapping[str, float],
                     specs: Sequence[GuardrailSpec]) -> GuardResult:
    """Fail when any guardrail breaks its limit, or (harm) is worse than the baseline by more than its tolerance
    or than the champion by more than its margin allows."""
    problems: list[str] = []
    skipped: list[str] = []
    figures: dict[str, float | int | str] = {"guardrails": len(specs)}
    for spec in specs:
        m = spec.metric
        sources = (("candidate", candidate), ("champion", champion), ("baseline", baseline))
        missing = [who for who, src in sources if m not in src]
        if missing and not spec.required and len(missing) == len(sources):
            skipped.append(m)
            continue
        if missing:
            problems.append(f"guardrail {m}: no value for the {' and '.join(missing)}")
            continue
        cand, champ, base = float(candidate[m]), float(champion[m]), float(baseline[m])
        if not all(math.isfinite(v) for v in (cand, champ, base)):
            problems.append(f"guardrail {m}: non-finite value (candidate {cand}, champion {champ}, baseline {base})")
            continue
        vs_base = _worse_by(cand, base, spec.higher_is_better)
        vs_champ = _worse_by(cand, champ, spec.higher_is_better)
        allowance = step_allowance(spec, champ)
        figures.update({f"{m}.kind": spec.kind, f"{m}.candidate": cand, f"{m}.champion": champ,
                        f"{m}.baseline": base, f"{m}.worse_vs_baseline": vs_base, f"{m}.worse_vs_champion": vs_champ})
        figures.update({f"{m}.{k}": float(v) for k, v in (("limit", spec.limit), ("tolerance", spec.tolerance),
                                                          ("margin", spec.margin), ("step_allowance", allowance))
                        if v is not None})
        label = f"guardrail {m} ({spec.kind}, {'higher' if spec.higher_is_better else 'lower'} is better)"
        if spec.limit is not None and _exceeds(_worse_by(cand, spec.limit, spec.higher_is_better), 0.0):
            bound = "at least" if spec.higher_is_better else "at most"
            problems.append(f"{label}: candidate {cand:.6g} breaks the limit (must be {bound} {spec.limit:g})")
        if spec.tolerance is not None and _exceeds(vs_base, spec.tolerance):
            problems.append(f"{label}: candidate {cand:.6g} is {vs_base:.6g} worse than the original baseline "
                            f"{base:.6g}, beyond the tolerance {spec.tolerance:g}")
        if allowance is not None and _exceeds(vs_champ, allowance):
            problems.append(f"{label}: candidate {cand:.6g} is {vs_champ:.6g} worse than the champion {champ:.6g}, "
                            f"beyond the margin {spec.margin:g} (relative: at most {allowance:.6g} in one step)")
    figures["failures"] = len(problems)
    note = f"; not measured on this data: {', '.join(skipped)}" if skipped else ""
    if problems:
        return GuardResult(GuardName.GUARDRAIL, False, "; ".join(problems) + note, figures)
    names = ", ".join(f"{s.metric} ({s.kind})" for s in specs if s.metric not in skipped) or "none configured"
    return GuardResult(GuardName.GUARDRAIL, True, f"all guardrails within their limits: {names}{note}", figures)
