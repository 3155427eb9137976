"""Does the holdout gate stop adaptive overfitting? The same loop, data and proposer with and
without the Thresholdout gate; then every final champion is scored on fresh data from the same
generator that was never sealed.

Optimism = the gain over the baseline a loop reports minus the gain measured on fresh data
(the mean over several fresh generations, so the fresh figure is close to the true gain).

Candidates (`--candidates`): "noise" (default) is the stream adaptive overfitting feeds on: the
baseline with another random seed (row and column subsampling change), so every candidate's true
gain is zero and every measured gain is noise; "optuna" is the offline search.

Arms (same candidates, same workspace seed):
- ungated: the plain autoresearch loop. The dev guard is lenient (confidence 0.51, no correction
  for many looks, no segment or guardrail veto), so the raw holdout gain, read at every look, does
  the selecting; a candidate is kept when its holdout gain beats the champion's. Reported = the
  champion's raw holdout gain over the baseline.
- gated: the same lenient dev guard, but the holdout is seen only through Thresholdout (threshold and
  noise in standard errors of the gain); a candidate is kept when the gate's answer beats the
  champion's by the Ladder step. Reported = the champion's answer, Ladder-rounded.
- previous: the earlier shipped configuration (Thresholdout gate, confidence 0.95 with alpha spending).
- default: ratchet's shipped configuration (a dev screen at 95 %, then LORD++ holdout tests at FDR 5 %; the
  reported gain is the selection-corrected estimate).

    .venv/bin/python benchmarks/holdout_overfit.py [--experiments 100] [--rows 30000] [--seeds 0 1 2 3 4]
        [--candidates noise|optuna] [--threshold-se T] [--sigma-se S] [--step-se K]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Only significance guards dev, and leniently: no segment or guardrail vetoes, no correction for looks.
LENIENT = {"decision.confidence": 0.51, "decision.looks": "none", "decision.segment_tolerance": 1e6,
           "guardrails": {"false_decline_rate": {"tolerance": 1.0, "margin": 100.0}, "alert_rate": {"limit": 1.0},
                          "false_decline_gap": {"limit": 1.0}}}
ARMS = {
    "ungated": {"gate.kind": "not_worse", "gate.tolerance": 0.0, **LENIENT},
    "gated": {"gate.kind": "thresholdout", **LENIENT},
    "previous": {"gate.kind": "thresholdout", "decision.looks": "spending"},
    "default": {},
}
FRESH_SEEDS = 3


def fresh_scores(ctx, commits: dict[str, str], args, seed: int) -> dict[str, float]:
    """Each policy fitted on the workspace's train, scored on the holdout period of fresh generations."""
    from domains import Decisions
    from holdout.split import split_by_time
    from optimizer.sandbox import Sandbox

    domain, cfg = ctx.domain, ctx.config
    fresh = [split_by_time(domain.generate(seed + 1000 + k, args.rows), time="ts", train=cfg.split.train,
                           dev=cfg.split.dev, gap_days=cfg.split.gap_days).holdout for k in range(FRESH_SEEDS)]
    params = cfg.scoring.model_dump()
    out = {}
    with Sandbox(memory_mb=cfg.sandbox.memory_mb) as box:
        for name, commit in commits.items():
            source = ctx.ws.git("show", f"{commit}:policy.py")
            fitted = box.fit(source, domain.policy_view(ctx.train, with_label=True), budget_s=300)
            views = {f"f{k}": domain.policy_view(f, with_label=False) for k, f in enumerate(fresh)}
            decided = box.decide(source, fitted.model, views, budget_s=300, constants=domain.constants)
            values = [domain.score(f, Decisions(decided.decisions[f"f{k}"], decided.constants), params).value
                      for k, f in enumerate(fresh)]
            out[name] = sum(values) / len(values)
    return out


def noise_candidates(folder: Path, n: int, seed: int) -> Path:
    """`n` copies of the baseline that differ only in the model's random seed."""
    from domains import get_domain

    base = get_domain("fraud").baseline_policy.read_text()
    assert "\nSEED = 0\n" in base
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        model_seed = 1000 * seed + i + 1
        source = base.replace("\nSEED = 0\n", f"\nSEED = {model_seed}\n", 1)
        (folder / f"{i:04d}.py").write_text(f"# model seed {model_seed}\n" + source)
    return folder


def run_arm(root: Path, arm: str, seed: int, args) -> dict:
    from holdout.gate import ladder_round
    from optimizer.cli.demo import _ladder_step
    from optimizer.lifecycle.initialize import init_workspace
    from optimizer.loop.run import run_loop
    from optimizer.records.context import load_context

    ws = root / f"{arm}-{seed}"
    overrides = {"data.rows": args.rows, "seed": seed, "data.seed": seed, "gate.budget": 10_000,
                 "decision.bootstrap": 300, **ARMS[arm]}
    for key in ("threshold_se", "sigma_se", "step_se"):
        if getattr(args, key) is not None and arm != "ungated":
            overrides[f"gate.{key}"] = getattr(args, key)
    init_workspace("fraud", ws, overrides=overrides)
    t0 = time.perf_counter()
    if args.candidates == "noise":
        patches = noise_candidates(root / f"candidates-{seed}", args.experiments, seed)
        summary = run_loop(ws, experiments=args.experiments, budget=300, proposer="patches", patches=patches)
    else:
        summary = run_loop(ws, experiments=args.experiments, budget=300)
    loop_s = time.perf_counter() - t0
    ctx = load_context(ws)
    base, champ = ctx.baseline(), ctx.champion()
    if ctx.config.gate.kind in ("not_worse", "lord"):
        reported = champ.reported
    else:
        reported = ladder_round(champ.reported, _ladder_step(ctx, champ, base))
    fresh = fresh_scores(ctx, {"baseline": base.commit, "champion": champ.commit}, args, seed)
    fresh_gain = fresh["champion"] - fresh["baseline"]
    gates = ctx.gates()
    tuned = ",".join(f"{k}={getattr(args, k)}" for k in ("threshold_se", "sigma_se", "step_se")
                     if getattr(args, k) is not None and arm != "ungated")
    row = {"arm": f"{arm}({tuned})" if tuned else arm, "seed": seed, "experiments": len(summary.records), "kept": summary.kept,
           "holdout_looks": len(gates), "budget_spent": sum(g.data.get("overflow", True) for g in gates),
           "median_abs_t_minus_h": float(np.median([abs(g.data["dev_gain"] - g.data["holdout_gain"]) for g in gates]))
           if gates and "dev_gain" in gates[0].data else float("nan"),
           "reported_gain": reported, "fresh_gain": fresh_gain, "optimism": reported - fresh_gain,
           "loop_s": loop_s}
    print(pd.DataFrame([row]).to_string(index=False, header=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=100)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--candidates", choices=("noise", "optuna"), default="noise")
    for key in ("threshold_se", "sigma_se", "step_se"):
        ap.add_argument(f"--{key.replace('_', '-')}", dest=key, type=float, default=None,
                        help=f"gate.{key} for the gated arms (default: the config's)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        rows = [run_arm(Path(tmp), arm, seed, args) for seed in args.seeds for arm in args.arms]
    table = pd.DataFrame(rows)
    print(f"\nrows {args.rows:,}, seeds {args.seeds}, {args.experiments} {args.candidates} candidates per arm; "
          f"fresh = mean of {FRESH_SEEDS} never-sealed generations")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    means = table.groupby("arm", sort=False)[["kept", "holdout_looks", "reported_gain", "fresh_gain",
                                                "optimism"]].mean()
    print("\nmean over seeds\n" + means.to_string(float_format=lambda v: f"{v:.4f}"))
    if {"ungated", "gated"} <= set(means.index):
        u, g = means.loc["ungated"], means.loc["gated"]
        ratio = g.optimism / u.optimism if u.optimism > 0 else float("nan")
        print(f"gated optimism / ungated optimism: {ratio:.2f} (target <= 0.33); fresh gain gated - ungated: "
              f"{g.fresh_gain - u.fresh_gain:+.4f} (target >= 0)")


if __name__ == "__main__":
    main()
