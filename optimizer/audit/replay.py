"""`ratchet audit --replay` and `ratchet upgrade`: re-execute the baseline, every kept policy and the reference at
their recorded commits under the installed code, and hold what they decide and score to the ledger.

Per policy: its source at the commit hashes to the recorded policy sha256; fit and decide run in a fresh
sandbox exactly as in the experiment; its decisions hash and its dev metrics agree, to float tolerance, with what
the ledger last recorded for it (holdout.upgrades.expected: its own entry, then any upgrade that replayed it); for
a kept policy under the current seal, the gate's inputs (dev and holdout gain over the reference) are recomputed
from the replayed decisions. A policy whose decisions move is reported as not replaying, with how far they moved
and what that did to its metric.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from holdout import queries, upgrades
from holdout.gate import gain
from holdout.hashing import sha256_bytes
from holdout.ledger import Entry, Kind
from optimizer import __version__

if TYPE_CHECKING:
    from optimizer.records.context import Context


@dataclass(frozen=True)
class ReplayCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Replayed:
    """One policy replayed: its figures now and what the ledger said it must reproduce."""

    policy: str  # baseline, exp-0003, reference
    commit: str
    kept_under: str  # the ratchet version of the span it was recorded in
    figures: dict[str, Any] = field(default_factory=dict)  # decisions_sha256, dev_metrics, holdout_metrics, seal
    recorded: dict[str, Any] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)  # the decisions
    constants: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_payload(self) -> dict[str, Any]:
        return {"policy": self.policy, "commit": self.commit, "kept_under": self.kept_under, **self.figures,
                "recorded": self.recorded}


def _moved(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"{len(a)} decisions replayed where {len(b)} were recorded"
    if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
        diff = np.abs(a.astype(float) - b.astype(float))
        return f"{int((diff > 0).sum())} of {len(a)} decisions moved (largest change {float(diff.max()):.4g})"
    return f"{int((a != b).sum())} of {len(a)} decisions changed"


def replay(path: Path, *, progress: Callable[[str], None] = lambda _: None) -> list[ReplayCheck]:
    from optimizer.base.errors import RatchetError
    from optimizer.records.context import load_context

    try:
        ctx = load_context(path, repair=False)
    except RatchetError as exc:
        return [ReplayCheck("replay", False, f"not replayed: the workspace does not verify: {exc}")]
    return replay_all(ctx, progress=progress)[0]


def replay_all(ctx: Context, *, progress: Callable[[str], None] = lambda _: None
               ) -> tuple[list[ReplayCheck], list[Replayed]]:
    """Every check, and each policy's figures under the installed code."""
    from optimizer.loop.stages import evaluate, scores
    from optimizer.records.policy_state import PolicyState, decisions_sha256
    from optimizer.sandbox import Sandbox

    if ctx.config.task_agent.enabled:
        return [ReplayCheck("replay", False, "not replayed: the policy asks a language model (task agent), whose "
                            "answers a replay cannot reproduce")], []
    entries = ctx.ledger.entries()
    baseline = queries.baseline(entries)
    if baseline is None:
        return [ReplayCheck("replay", True, "nothing to replay: no experiment has run")], []
    kept = queries.kept(entries)
    reference = PolicyState.load(ctx.reference_dir)
    spans = upgrades.spans(ctx.ws.root, entries, ctx.manifest)
    checks: list[ReplayCheck] = []
    done: list[Replayed] = []
    replayed: dict[str, tuple[dict, dict]] = {}
    started = time.perf_counter()
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        todo: list[tuple[str, str, Entry | None, str | None]] = [
            ("baseline", baseline.data["commit"], baseline, None)]
        todo += [(e.data["experiment"], e.data["commit"], e, e.data["policy_sha256"]) for e in kept]
        if reference is not None and reference.commit not in {c for _, c, _, _ in todo}:
            todo.append(("reference", reference.commit, None, None))
        for i, (name, commit, entry, policy_sha) in enumerate(todo, start=1):
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
            assert evaluation.decisions is not None, "a passed evaluation holds its decisions"
            values, constants = dict(evaluation.decisions), dict(evaluation.constants)
            replayed[commit] = (values, constants)
            dev, hold = scores(ctx, values, constants)
            span = upgrades.span_of(spans, entry.seq) if entry is not None else None
            one = Replayed(name, commit, span.version if span else "?",
                           {"decisions_sha256": decisions_sha256(values), "dev_metrics": dict(dev.metrics),
                            "holdout_metrics": dict(hold.metrics), "seal": ctx.manifest_sha256},
                           upgrades.expected(entries, commit), values, dict(constants))
            done.append(one)
            problems = upgrades.differences(one.figures, one.recorded)
            cached = PolicyState.load(ctx.baseline_dir if name == "baseline" else ctx.champion_dir)
            moved = one.figures["decisions_sha256"]["dev"] != one.recorded.get("decisions_sha256", {}).get("dev")
            if problems and moved and cached is not None and cached.commit == commit:
                problems.append(_moved(values["dev"], cached.dev) + " against its cached dev decisions")
            under = f"kept under ratchet {one.kept_under}, replayed under {__version__}"
            checks.append(ReplayCheck("replay", not problems, f"{name} at {commit[:12]} ({under}): " + (
                "; ".join(problems) + " (the policy does not replay: nondeterministic, its record was edited, or "
                "the installed code decides or scores it differently)" if problems else
                "decisions and dev metrics reproduced exactly" if one.recorded else "replayed (nothing recorded "
                "to hold it to)")))
        checks += _gates(ctx, entries, kept, replayed, reference, baseline)
    checks.append(ReplayCheck("replay_time", True, f"{len(replayed)} policies replayed in "
                              f"{time.perf_counter() - started:.1f} s under ratchet {__version__}"))
    return checks, done


def _gates(ctx: Context, entries: list, kept: list, replayed: dict, reference: Any, baseline: Any) -> list[ReplayCheck]:
    """Each kept policy's gate inputs recomputed from the replayed decisions."""
    from optimizer.loop.stages import scores

    checks = []
    accepted = [e for e in entries if e.kind == Kind.UPGRADE and e.data.get("changes")]
    higher = ctx.domain.higher_is_better
    ref_commit = reference.commit if reference is not None else baseline.data["commit"]
    before = baseline.data["commit"]  # the champion each keep replaced (a lord gate tests the gain over it)
    for e in kept:
        gate = e.data.get("gate") or {}
        replaced, before = before, e.data["commit"]
        later = next((u for u in accepted if u.seq > e.seq), None)
        if later is not None:
            checks.append(ReplayCheck("replay_gate", True, f"{e.data['experiment']}: its gate's gains were "
                                      f"recorded before upgrade entry {later.seq} (approved by "
                                      f"{later.data.get('approved_by')}) accepted changed figures; not recomputed"))
            continue
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
            gains = {"gain": gain(cand[1].value, champ[1].value, higher_is_better=higher)}
        else:
            ref = scores(ctx, *replayed[ref_commit])
            gains = {"dev_gain": gain(cand[0].value, ref[0].value, higher_is_better=higher),
                     "holdout_gain": gain(cand[1].value, ref[1].value, higher_is_better=higher)}
        wrong = [f"{k} {v:+.6g} != recorded {gate[k]:+.6g}" for k, v in gains.items()
                 if not math.isclose(v, gate[k], rel_tol=upgrades.REL_TOL, abs_tol=1e-12)]
        checks.append(ReplayCheck("replay_gate", not wrong, f"{e.data['experiment']}: " + (
            "; ".join(wrong) if wrong else "the gate's gains reproduced from replayed decisions")))
    return checks
