"""How close do the off-policy estimates come to the truth? The generator knows its hidden demand
model, so every policy's true expected profit on the scored rows is known exactly.

For each seed: generate logs, split by time, fit the scorer's outcome model on train, and estimate
several fixed policies on the dev rows with DR, SNIPS and IPS; report the error against the truth
and whether the DR 95 % interval covers it.

    .venv/bin/python benchmarks/pricing_ope.py [--seeds 20] [--rows 100000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def policies(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    ref = rows["ref_price"].to_numpy(dtype=float)
    caps = rows["segment"].astype(str).map({"bargain": 1.0, "regular": 1.1, "premium": 1.2}).to_numpy(dtype=float)
    return {
        "reference price": np.round(ref, 2),
        "10% above": np.round(ref * 1.1, 2),
        "by segment": np.round(ref * caps, 2),
        "20% below": np.round(ref * 0.8, 2),
        "40% above (thin logs)": np.round(ref * 1.4, 2),
    }


def main() -> None:
    from domains import Decisions, get_domain
    from domains.pricing import data
    from domains.pricing.adapter import PricingScoring
    from holdout.split import split_by_time

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    params = PricingScoring().model_dump()
    rows_out, t0 = [], time.perf_counter()
    for seed in range(args.seeds):
        parts = split_by_time(data.generate(seed, args.rows), time="ts", train=0.6, dev=0.2, gap_days=1.0)
        scorer = get_domain("pricing").prepared(parts.train, params)
        for name, prices in policies(parts.dev).items():
            m = scorer.score(parts.dev, Decisions(prices), params).metrics
            truth = float(data.true_profit(parts.dev, prices).mean())
            rows_out.append({"policy": name, "seed": seed, "truth": truth, "dr_error": m["profit_dr"] - truth,
                             "snips_error": m["profit_snips"] - truth, "ips_error": m["profit_ips"] - truth,
                             "ci_width": m["profit_ci_high"] - m["profit_ci_low"],
                             "covered": m["profit_ci_low"] <= truth <= m["profit_ci_high"],
                             "ess_share": m["ess_share"]})
    table = pd.DataFrame(rows_out)
    summary = table.groupby("policy", sort=False).agg(
        truth=("truth", "mean"), dr_bias=("dr_error", "mean"), dr_rmse=("dr_error", lambda e: np.sqrt((e ** 2).mean())),
        snips_rmse=("snips_error", lambda e: np.sqrt((e ** 2).mean())),
        ips_rmse=("ips_error", lambda e: np.sqrt((e ** 2).mean())),
        ci_width=("ci_width", "mean"), coverage=("covered", "mean"), ess_share=("ess_share", "mean"))
    print(f"{args.seeds} seeds, {args.rows:,} logged offers each (scored on the dev period), "
          f"{time.perf_counter() - t0:.1f} s")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
