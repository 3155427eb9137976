"""Does the holdout gate stop adaptive overfitting? Two loops, same data and proposer, with and
without the Thresholdout gate; then both final champions are scored on fresh data from the same
generator that was never sealed.

Optimism = the gain over the baseline the loop reports minus the gain measured on fresh data.
The ungated loop ("not_worse") reads the raw holdout gain at every look and keeps a candidate
when it is not negative; the gated loop sees the holdout only through Thresholdout and reports
the Ladder-rounded gated gain. Both use a lenient dev significance level (confidence 0.6) so the
holdout, not dev, does the selecting (no correction for many looks on dev either): the regime
where adaptive overfitting shows.

    .venv/bin/python benchmarks/holdout_overfit.py [--experiments 100] [--rows 60000] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd


def run_arm(root: Path, kind: str, args) -> dict:
    from domains import Decisions, get_domain
    from holdout.gate import ladder_round
    from holdout.split import split_by_time
    from optimizer.context import load_context
    from optimizer.demo import _ladder_step
    from optimizer.initialize import init_workspace
    from optimizer.loop import run_loop
    from optimizer.sandbox import Sandbox

    ws = root / kind
    init_workspace("fraud", ws, overrides={"data.rows": args.rows, "seed": args.seed, "data.seed": args.seed,
                                           "gate.kind": kind, "gate.budget": 10_000, "decision.confidence": 0.6,
                                           "decision.looks": "none",
                                           "decision.bootstrap": 300})
    t0 = time.perf_counter()
    summary = run_loop(ws, experiments=args.experiments, budget=60)
    loop_s = time.perf_counter() - t0
    ctx = load_context(ws)
    base, champ = ctx.baseline(), ctx.champion()
    reported = champ.reported if kind == "not_worse" else ladder_round(champ.reported, _ladder_step(ctx, champ, base))

    domain = get_domain("fraud")
    cfg = ctx.config
    fresh = split_by_time(domain.generate(args.seed + 1000, args.rows), time="ts", train=cfg.split.train,
                          dev=cfg.split.dev, gap_days=cfg.split.gap_days).holdout
    params = cfg.scoring.model_dump()
    values = {}
    with Sandbox(memory_mb=cfg.sandbox.memory_mb) as box:
        for name, commit in (("baseline", base.commit), ("champion", champ.commit)):
            source = ctx.ws.git("show", f"{commit}:policy.py")
            fitted = box.fit(source, domain.policy_view(ctx.train, with_label=True), budget_s=120)
            decided = box.decide(source, fitted.model, {"fresh": domain.policy_view(fresh, with_label=False)},
                                 budget_s=120, constants=domain.constants)
            values[name] = domain.score(fresh, Decisions(decided.decisions["fresh"], decided.constants), params).value
    fresh_gain = values["champion"] - values["baseline"]
    gates = ctx.gates()
    return {"arm": kind, "experiments": len(summary.records), "kept": summary.kept, "loop_s": loop_s,
            "holdout_looks": len(gates), "budget_spent": sum(g.data["overflow"] for g in gates),
            "reported_gain": reported, "fresh_gain": fresh_gain, "optimism": reported - fresh_gain}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=100)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        rows = [run_arm(Path(tmp), kind, args) for kind in ("not_worse", "thresholdout")]
    table = pd.DataFrame(rows).set_index("arm")
    print(f"rows {args.rows:,}, seed {args.seed}, {args.experiments} experiments per arm")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    ungated, gated = table.loc["not_worse"], table.loc["thresholdout"]
    ratio = gated.optimism / ungated.optimism if ungated.optimism > 0 else float("nan")
    print(f"gated optimism / ungated optimism: {ratio:.2f} (target <= 0.33); fresh gain gated - ungated: "
          f"{gated.fresh_gain - ungated.fresh_gain:+.4f} (target >= 0)")


if __name__ == "__main__":
    main()
