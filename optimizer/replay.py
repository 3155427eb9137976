"""`ratchet audit --replay`: re-execute the baseline and every kept policy at its recorded commit and hold
what they decide and score to the ledger.

Per policy: its source at the commit hashes to the recorded policy sha256; fit and decide run in a fresh
sandbox exactly as in the experiment; the dev and holdout decisions hash to what the ledger recorded; the
dev metrics agree to float tolerance; for a kept policy under the current seal, the gate's inputs (dev and
holdout gain over the reference) are recomputed from the replayed decisions. A policy whose decisions
move is reported as not replaying, with how far they moved and what that did to its metric.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from holdout.hashing import sha256_bytes
from holdout.ledger import Kind

REL_TOL = 1e-9


@dataclass(frozen=True)
class ReplayCheck:
    name: str
    passed: bool
    detail: str


def _moved(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"{len(a)} decisions replayed where {len(b)} were recorded"
    if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
        diff = np.abs(a.astype(float) - b.astype(float))
        return f"{int((diff > 0).sum())} of {len(a)} decisions moved (largest change {float(diff.max()):.4g})"
    return f"{int((a != b).sum())} of {len(a)} decisions changed"


def replay(path: Path, *, progress: Callable[[str], None] = lambda _: None) -> list[ReplayCheck]:
    from optimizer.context import PolicyState, decisions_sha256, load_context
    from optimizer.errors import RatchetError
    from optimizer.stages import evaluate, scores
    from optimizer.sandbox import Sandbox

    try:
        ctx = load_context(path, repair=False)
    except RatchetError as exc:
        return [ReplayCheck("replay", False, f"not replayed: the workspace does not verify: {exc}")]
    if ctx.config.task_agent.enabled:
        return [ReplayCheck("replay", False, "not replayed: the policy asks a language model (task agent), whose "
                            "answers a replay cannot reproduce")]
    entries = ctx.ledger.entries()
    baseline = next((e for e in entries if e.kind == Kind.BASELINE), None)
    if baseline is None:
        return [ReplayCheck("replay", True, "nothing to replay: no experiment has run")]
    kept = [e for e in entries if e.kind == Kind.EXPERIMENT and e.data.get("kept")]
    resealed = any(e.kind == Kind.RESEAL for e in entries)
    reference = PolicyState.load(ctx.reference_dir)
    checks: list[ReplayCheck] = []
    replayed: dict[str, tuple[dict, dict]] = {}
    started = time.perf_counter()
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        todo = [("baseline", baseline.data["commit"], baseline.data, None)]
        todo += [(e.data["experiment"], e.data["commit"], e.data, e.data["policy_sha256"]) for e in kept]
        if reference is not None and reference.commit not in {c for _, c, _, _ in todo}:
            todo.append(("reference", reference.commit, {}, None))
        for i, (name, commit, record, policy_sha) in enumerate(todo, start=1):
            progress(f"replaying {name} ({i}/{len(todo)}) at {commit[:12]}")
            source = ctx.ws.git("show", f"{commit}:policy.py")
            if policy_sha and sha256_bytes(source.encode()) != policy_sha:
                checks.append(ReplayCheck("replay", False, f"{name}: policy.py at commit {commit[:12]} is not the "
                                          "policy the ledger recorded (sha256 differs): the history was rewritten"))
                continue
            evaluation = evaluate(ctx, sandbox, source)
            if not evaluation.passed:
                failed = evaluation.results[-1]
                checks.append(ReplayCheck("replay", False, f"{name}: does not replay, guard '{failed.name}' fails "
                                          f"now: {failed.detail}"))
                continue
            values, constants = evaluation.decisions, evaluation.constants
            replayed[commit] = (values, constants)
            if not record:
                continue
            problems = []
            recorded = record.get("decisions_sha256") or {}
            now = decisions_sha256(values)
            cached = PolicyState.load(ctx.baseline_dir if name == "baseline" else ctx.champion_dir)
            current = (record.get("gate") or {}).get("seal") == ctx.manifest_sha256 if name != "baseline" else not resealed
            for rows in ("dev", "holdout") if current else ("dev",):  # holdout decisions of a retired seal differ
                if rows in recorded and recorded[rows] != now[rows]:
                    how = ""
                    if cached is not None and cached.commit == commit and rows == "dev":
                        how = f" ({_moved(values[rows], cached.dev)})"
                    problems.append(f"{rows} decisions hash {now[rows][:12]} != recorded {recorded[rows][:12]}{how}")
            dev, _ = scores(ctx, values, constants)
            for metric, want in (record.get("dev_metrics") or {}).items():
                got = float(dev.metrics.get(metric, math.nan))
                if not math.isclose(got, float(want), rel_tol=REL_TOL, abs_tol=1e-12):
                    problems.append(f"dev {metric} {got:.6g} != recorded {float(want):.6g}")
            checks.append(ReplayCheck("replay", not problems, f"{name} at {commit[:12]}: " + (
                "; ".join(problems) + " (the policy does not replay: nondeterministic, or its record was edited)"
                if problems else "decisions and dev metrics reproduced exactly")))
        sign = 1.0 if ctx.domain.higher_is_better else -1.0
        ref_commit = reference.commit if reference is not None else baseline.data["commit"]
        before = baseline.data["commit"]  # the champion each keep replaced (a lord gate tests the gain over it)
        for e in kept:
            gate = e.data.get("gate") or {}
            replaced, before = before, e.data["commit"]
            if gate.get("seal") != ctx.manifest_sha256:
                checks.append(ReplayCheck("replay_gate", True, f"{e.data['experiment']}: gate asked under a retired "
                                          "holdout; its decisions were replayed on dev only"))
                continue
            if e.data["commit"] not in replayed or ref_commit not in replayed:
                continue
            cand = scores(ctx, *replayed[e.data["commit"]])
            if gate.get("kind") == "lord":
                if replaced not in replayed:
                    continue
                champ = scores(ctx, *replayed[replaced])
                gains = {"gain": sign * (cand[1].value - champ[1].value)}
            else:
                ref = scores(ctx, *replayed[ref_commit])
                gains = {"dev_gain": sign * (cand[0].value - ref[0].value),
                         "holdout_gain": sign * (cand[1].value - ref[1].value)}
            wrong = [f"{k} {v:+.6g} != recorded {gate[k]:+.6g}" for k, v in gains.items()
                     if not math.isclose(v, gate[k], rel_tol=REL_TOL, abs_tol=1e-12)]
            checks.append(ReplayCheck("replay_gate", not wrong, f"{e.data['experiment']}: " + (
                "; ".join(wrong) if wrong else "the gate's gains reproduced from replayed decisions")))
    checks.append(ReplayCheck("replay_time", True, f"{len(replayed)} policies replayed in "
                              f"{time.perf_counter() - started:.1f} s"))
    return checks
