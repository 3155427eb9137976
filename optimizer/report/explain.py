"""One experiment as a person reads it (`ratchet show`), and the one-line reason `ratchet history` prints.

Read-only: the ledger's experiment entry (the truth), else the record folder's record.json, and the folder's diff.
Nothing here reveals more of the holdout than the verdict did: a refused gate test shows only the gain it needed,
never the holdout gain or p-value the ledger keeps for the audit.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from guards import GuardName
from holdout import queries
from optimizer.base.errors import RatchetError
from optimizer.records.experiment_record import ExperimentStatus

STATUS_WORDS = {
    ExperimentStatus.KEPT: "kept: every guard passed and the holdout confirmed the gain; committed as the champion",
    ExperimentStatus.WOULD_KEEP: "would be kept: every guard passed and the holdout confirmed the gain (judged by "
                                 "`ratchet try` without --keep: nothing was committed)",
    ExperimentStatus.CRASHED: "crashed: it could not be evaluated",
}


def _num(v: Any) -> str:
    """A figure as printed everywhere here (and matched by tests): signed, 6 significant digits."""
    return f"{float(v):+.6g}"


def experiment_id(text: str) -> str | None:
    """`exp-0003`, `3` and `0003` name the same experiment; None when `text` names none."""
    m = re.fullmatch(r"\s*(?:exp-?)?0*(\d+)\s*", str(text), flags=re.IGNORECASE)
    return queries.experiment_id(int(m.group(1))) if m and int(m.group(1)) > 0 else None


def nearest(wanted: str, ids: Sequence[str], n: int = 3) -> list[str]:
    """The ids closest to `wanted`: by number when it names one, else by spelling."""
    exp = experiment_id(wanted)
    if exp is not None and ids:
        k = int(exp[4:])
        return sorted(sorted(ids, key=lambda i: (abs(int(i[4:]) - k), i))[:n])
    return difflib.get_close_matches(str(wanted), list(ids), n=n, cutoff=0.0)


# --- each guard in words ---------------------------------------------------------------------------------------

def significance_figures(f: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dev test's figures a person acts on. Its lower bound is the gain minus a half-width (the row noise and
    the refit noise at the look's confidence), and it passes when that bound clears the minimum effect: so with
    the same noise the smallest gain that would have passed is the minimum effect plus that half-width."""
    if "mean_diff" not in f or "lower" not in f:
        return None
    gain, lower, clear = float(f["mean_diff"]), float(f["lower"]), float(f.get("min_effect", 0.0))
    return {"gain": gain, "lower": lower, "upper": float(f.get("upper", gain)), "must_clear": clear,
            "needed_gain": clear + (gain - lower), "confidence": float(f.get("confidence_used", 0.0)),
            "look": int(f.get("looks", 1)), "rule": str(f.get("alpha_spending", "")), "rows": int(f.get("n", 0)),
            "p_value": f.get("p_value"), "refit_sd": float(f.get("model_sd", 0.0))}


def _significance_words(s: Mapping[str, Any], metric: str) -> str:
    conf = f"{100 * s['confidence']:.4g} %"
    look = "the dev screen" if s["rule"] == "screen" else f"look {s['look']} ({s['rule']} adjustment)"
    p = f", p {float(s['p_value']):.2g}" if s.get("p_value") is not None else ""
    return (f"{metric} gain {_num(s['gain'])} per row on {s['rows']:,} paired dev rows (one-sided {conf} bounds "
            f"{_num(s['lower'])} to {_num(s['upper'])}{p}); its lower bound had to clear {_num(s['must_clear'])} "
            f"at {look}; the smallest gain that would have passed: {_num(s['needed_gain'])}")


def _guardrails(f: Mapping[str, Any], detail: str) -> list[dict[str, Any]]:
    failing = set(re.findall(r"guardrail (\S+) \(", detail))
    out = []
    for key in f:
        if key.endswith(".candidate"):
            m = key[: -len(".candidate")]
            row = {"metric": m, "failed": m in failing}
            row.update({k: f[f"{m}.{k}"] for k in ("kind", "candidate", "champion", "baseline", "limit", "tolerance",
                                                   "margin", "step_allowance", "worse_vs_baseline",
                                                   "worse_vs_champion") if f"{m}.{k}" in f})
            out.append(row)
    return out


def _guardrail_words(g: Mapping[str, Any], mark: bool = True) -> str:
    bits = [f"{g['metric']} ({g.get('kind', '?')}) {float(g['candidate']):.6g}"]
    if "limit" in g:
        bits.append(f"limit {g['limit']:g}")
    if "tolerance" in g:
        bits.append(f"at most {g['tolerance']:g} worse than the baseline's {float(g['baseline']):.6g}")
    if "step_allowance" in g:
        bits.append(f"at most {g['step_allowance']:.6g} worse than the champion's {float(g['champion']):.6g}")
    return ("BROKEN " if g["failed"] and mark else "") + ", ".join(bits)


def gate_figures(result: Any, gate: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the gate's answer may show: the guard's own figures (a refusal's holdout gain is not among them) and
    the stream's settings from the recorded answer."""
    f = dict(result.figures)
    g = gate or {}
    out: dict[str, Any] = {"kind": g.get("kind", "lord" if "test_number" in f else "thresholdout"),
                           "passed": result.passed, "budget_left": f.get("budget_left", g.get("budget_left"))}
    if g.get("exhausted") or (f.get("budget_left") == 0 and "test_number" not in f and "answer" not in f):
        return {**out, "exhausted": True}
    if out["kind"] == "lord":
        out.update({k: f[k] for k in ("test_number", "level", "critical_z", "needed_gain", "p_value", "estimate",
                                      "lower", "upper") if k in f})
        out.update({"fdr": g.get("fdr"), "earlier_passes": len(g.get("discoveries") or [])})
    else:
        out.update({k: f[k] for k in ("answer", "to_beat", "step", "overflow") if k in f})
    return out


def gate_sentence(g: Mapping[str, Any]) -> str:
    """The gate's answer and what it means, in one sentence."""
    if g.get("exhausted"):
        return "not asked: the holdout gate's budget of tests is spent (`ratchet reseal` seals a fresh holdout)"
    if g["kind"] == "lord":
        stream = (f"LORD++ test {g.get('test_number')} at level {float(g.get('level', 0)):.3g} (false-discovery "
                  f"rate {g.get('fdr')}, {g.get('earlier_passes', 0)} earlier passes)")
        if g["passed"]:
            return (f"passed {stream}: the holdout confirms the gain over the champion; corrected for having been "
                    f"selected it is {_num(g['estimate'])} per row (90 % interval {_num(g['lower'])} to "
                    f"{_num(g['upper'])}); tests left {g['budget_left']}")
        return (f"refused by {stream}: it needed about {_num(g['needed_gain'])} per row over the champion on the "
                f"holdout ({float(g['critical_z']):.2f} standard errors) and fell short, which is all a refusal "
                f"reveals; tests left {g['budget_left']}")
    how = "the holdout disagreed and answered (noisy)" if g.get("overflow") else "the holdout agreed with dev"
    verdict = "beats" if g["passed"] else "does not beat"
    return (f"thresholdout: {how}, gain {_num(g['answer'])} over the reference, which {verdict} the champion's "
            f"{_num(g['to_beat'])} plus the Ladder step {float(g.get('step', 0.0)):.4g}; budget left "
            f"{g['budget_left']}")


# --- what to try next, and the one-line reason ------------------------------------------------------------------

def _first_line(text: object, width: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def next_step(rec: Any, workspace: str) -> str:
    """One line chosen by the first failing guard."""
    first = rec.verdict.failures[0] if rec.verdict.failures else None
    if first is None:
        if rec.status == ExperimentStatus.WOULD_KEEP:
            return (f"keep it: `ratchet try {workspace} experiments/{rec.experiment}/policy.py --keep` (its policy "
                    "is in the record folder)")
        return (f"trial it on live events: `ratchet shadow start {workspace} --challenger {rec.experiment} --events "
                "FILE`, then `ratchet promote`")
    name, detail, f = first.name, first.detail, first.figures
    if name == GuardName.SIGNIFICANCE:
        s = significance_figures(f)
        if s is not None:
            return (f"the gain was {_num(s['gain'])}, it needed {_num(s['needed_gain'])}: a bigger change or more dev "
                    "rows")
    if name == GuardName.GUARDRAIL:
        broken = [g for g in _guardrails(f, detail) if g["failed"]]
        if broken:
            return (f"keep guardrail {_guardrail_words(broken[0], False)}: trade less of it for the gain "
                    f"({_first_line(detail.split('; ')[0], 200)})")
    if name == GuardName.HOLDOUT_GATE:
        if f.get("budget_left") == 0 and "needed_gain" not in f:
            return f"the gate's budget is spent: `ratchet reseal {workspace} --seed N` (or --data FILE)"
        need = f" (the holdout needed about {_num(f['needed_gain'])} per row)" if "needed_gain" in f else ""
        return f"dev gains did not transfer{need}: a change that generalises, not one tuned to dev"
    if name == GuardName.INTEGRITY:
        return f"the workspace did not verify: run `ratchet audit {workspace}` ({_first_line(detail, 200)})"
    if name == GuardName.RECORD:
        return f"the keep was interrupted and rolled back: run `ratchet repair {workspace}`, then try it again"
    if name == GuardName.CHANGE:
        return "the candidate is the champion's policy.py unchanged: change something"
    if name in (GuardName.STATIC, GuardName.SANDBOX, GuardName.OUTPUT):
        return f"fix the error: {_first_line(detail, 240)}"
    return f"{name}: {_first_line(detail, 240)}"


def reason(rec: Any) -> str:
    """The first failing guard's reason in one line (`ratchet history`); '-' for a keep."""
    if not rec.verdict.failures:
        return "-"
    first = rec.verdict.failures[0]
    f = first.figures
    if first.name == GuardName.SIGNIFICANCE:
        s = significance_figures(f)
        if s is not None:
            return f"significance: gain {s['gain']:+.2g}, needs {s['needed_gain']:+.2g}"
    if first.name == GuardName.GUARDRAIL:
        broken = [g for g in _guardrails(f, first.detail) if g["failed"]]
        if broken:
            return "guardrail: " + _guardrail_words(broken[0], False)
    if first.name == GuardName.HOLDOUT_GATE and "needed_gain" in f:
        return f"holdout_gate: needed {_num(f['needed_gain'])}/row on the holdout"
    return f"{first.name}: {_first_line(first.detail)}"


# --- the whole experiment ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Explanation:
    experiment: str
    number: int
    status: str
    status_words: str
    hypothesis: str
    proposer: str
    commit: str | None
    parent_commit: str
    dev_metrics: dict[str, float]
    guards: list[dict[str, Any]]
    gate: dict[str, Any] | None
    next: str
    diff: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        head = [f"{self.experiment} (#{self.number}): {self.status_words}",
                f"hypothesis: {self.hypothesis or '-'}", f"proposer:   {self.proposer}",
                f"commit:     {self.commit or '-'} (parent {self.parent_commit[:12]})"]
        if self.dev_metrics:
            head.append("dev:        " + ", ".join(f"{k} {v:.6g}" for k, v in self.dev_metrics.items()))
        lines = head + ["", "guards:"]
        for g in self.guards:
            lines.append(f"  {'pass' if g['passed'] else 'FAIL'} {g['guard']:<13} {g['words']}")
        if self.gate is not None:
            lines += ["", f"holdout gate: {self.gate['sentence']}"]
        lines += ["", f"what to try next: {self.next}"]
        lines += [f"note: {n}" for n in self.notes]
        lines += ["", "diff against the champion it was judged against:", self.diff.rstrip() or "(no diff recorded)"]
        return "\n".join(lines)


def _status_words(rec: Any) -> str:
    status = rec.status
    failed = rec.verdict.failed_guards
    if status in STATUS_WORDS and status != ExperimentStatus.CRASHED:
        return STATUS_WORDS[status] + (f" ({rec.commit[:12]})" if rec.commit else "")
    if status == ExperimentStatus.CRASHED:
        return f"{STATUS_WORDS[ExperimentStatus.CRASHED]} ({', '.join(failed)})"
    if failed == (GuardName.HOLDOUT_GATE,):
        return "reverted: it passed every dev guard, and the holdout gate did not confirm the gain"
    return f"reverted by {failed[0]} before the holdout was asked" + (
        f" (also failed: {', '.join(failed[1:])})" if len(failed) > 1 else "")


def explain(rec: Any, *, diff: str, workspace: str, primary: str = "the primary metric",
            notes: Sequence[str] = ()) -> Explanation:
    guards = []
    gate = None
    for r in rec.verdict.results:
        row: dict[str, Any] = {"guard": r.name, "passed": r.passed, "words": _first_line(r.detail, 10_000)}
        if r.name == GuardName.SIGNIFICANCE and (s := significance_figures(r.figures)) is not None:
            row.update(words=_significance_words(s, primary), figures=s)
        elif r.name == GuardName.GUARDRAIL and (rails := _guardrails(r.figures, r.detail)):
            row.update(words="; ".join(_guardrail_words(g) for g in rails), figures=rails)
        elif r.name == GuardName.HOLDOUT_GATE:
            gate = gate_figures(r, rec.gate)
            gate["sentence"] = gate_sentence(gate)
            short = (f"test {gate.get('test_number')}, level {float(gate.get('level', 0)):.3g}"
                     if gate["kind"] == "lord" and not gate.get("exhausted") else gate["kind"])
            row.update(words=f"{'passed' if r.passed else 'refused'} ({short}): the gate's answer is below",
                       figures={k: v for k, v in gate.items() if k != "sentence"})
        guards.append(row)
    return Explanation(rec.experiment, rec.number, str(rec.status), _status_words(rec), rec.hypothesis,
                       rec.proposer, rec.commit, rec.parent_commit, dict(rec.dev_metrics), guards, gate,
                       next_step(rec, workspace), diff, list(notes))


def load(workspace: Path, wanted: str) -> Explanation:
    """Read one experiment of `workspace` (read-only) and explain it; RatchetError names what could not be read."""
    from holdout.ledger import Ledger
    from optimizer.records.experiment_record import ExperimentRecord
    from optimizer.report.facts import records
    from optimizer.workspace.layout import Workspace

    root = Path(workspace)
    audit = f"run `ratchet audit {workspace}`"
    notes: list[str] = []
    try:
        ws = Workspace.open(root)
    except RatchetError as exc:
        raise RatchetError(f"{exc} (to check the workspace, {audit})") from exc
    folders = sorted(p.name for p in ws.experiments.glob("exp-*")) if ws.experiments.is_dir() else []
    try:
        recs = {r.experiment: r for r in records(Ledger(ws.ledger).entries())}
    except Exception as exc:  # noqa: BLE001 - an unreadable ledger is shown from the record files, and said
        recs = {}
        notes.append(f"the ledger could not be read ({_first_line(exc, 160)}): shown from experiments/; {audit}")
    exp = experiment_id(wanted)
    ids = sorted(set(recs) | set(folders))
    if exp is None or exp not in ids:
        near = nearest(wanted, ids)
        raise RatchetError(f"{wanted!r}: no such experiment in {workspace}; "
                           + (f"nearest: {', '.join(near)}" if near else "it has no experiments yet")
                           + f" (of {len(ids)})")
    folder = ws.experiments / exp
    rec = recs.get(exp)
    if rec is None:
        try:
            data = json.loads((folder / "record.json").read_text())
            rec = ExperimentRecord.from_payload(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RatchetError(f"{folder / 'record.json'}: cannot be read ({_first_line(exc, 160)}); {audit}") from exc
        if not notes:
            notes.append(f"{exp} has a record folder but no ledger entry: {audit}")
    try:
        diff = (folder / "diff.patch").read_text()
    except OSError:
        diff = ""
        notes.append(f"{folder / 'diff.patch'} cannot be read: {audit}")
    primary = "the primary metric"
    try:
        from domains import get_domain
        from optimizer.workspace.config import load_config

        primary = get_domain(load_config(ws.config).domain).primary
    except Exception:  # noqa: BLE001 - the metric's name is a label; the figures are shown without it
        notes.append(f"ratchet.yaml could not be read: {audit}")
    return explain(rec, diff=diff, workspace=str(workspace), primary=primary, notes=notes)
