"""The loop's own cost per experiment, and the share of wall time spent inside candidate code.

Overhead = an experiment's wall time minus the time the candidate's fit and decide took inside
the sandbox: process hand-off, data hand-off, scoring, guards, git, MLflow and the ledger.
Candidates are the shipped baseline with a different THRESHOLD each (so every one is scored in
full), at the default data size.

    .venv/bin/python benchmarks/loop_overhead.py [--experiments 20] [--rows 300000] [--n-estimators 150]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--budget", type=float, default=10.0, help="sandbox budget per phase (seconds)")
    ap.add_argument("--n-estimators", type=int, default=150,
                    help="candidate model size: 150 fits in ~1.5 s here; ~800 uses most of a 10 s budget")
    args = ap.parse_args()

    from domains import get_domain
    from optimizer.initialize import init_workspace
    from optimizer.loop import BaselineReady, Recorded, run_loop
    from optimizer.tunables import rewrite

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        t0 = time.perf_counter()
        init_workspace("fraud", tmp / "ws", overrides={"data.rows": args.rows})
        init_s = time.perf_counter() - t0
        baseline = get_domain("fraud").baseline_policy.read_text()
        patches = tmp / "patches"
        patches.mkdir()
        for i in range(args.experiments):
            src = rewrite(baseline, {"THRESHOLD": round(0.2 + 0.02 * i, 2), "N_ESTIMATORS": args.n_estimators})
            (patches / f"c{i:03d}.py").write_text(f'"""Threshold variant {i}."""\n' + src.split('"""', 2)[2])
        stamps: list[float] = []

        def on_event(event) -> None:
            if isinstance(event, (BaselineReady, Recorded)):  # consecutive stamps bracket one whole experiment
                stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        summary = run_loop(tmp / "ws", experiments=args.experiments, budget=args.budget, proposer="patches",
                           patches=patches, on_event=on_event)
        loop_s = time.perf_counter() - t0

    overheads, shares, parts = [], [], {"fit hand-off": [], "decide hand-off": [], "score+guards+records": []}
    walls = [b - a for a, b in zip(stamps, stamps[1:])]
    for r, total in zip(summary.records, walls):
        inside = float(r.fit.get("fit_seconds") or 0) + float(r.fit.get("decide_seconds") or 0)
        overheads.append(total - inside)
        shares.append(inside / total)
        parts["fit hand-off"].append(r.seconds.get("fit", 0) - float(r.fit.get("fit_seconds") or 0))
        parts["decide hand-off"].append(r.seconds.get("decide", 0) - float(r.fit.get("decide_seconds") or 0))
        parts["score+guards+records"].append(total - r.seconds.get("fit", 0) - r.seconds.get("decide", 0))
    # (the last part also holds proposing, git, the ledger and MLflow: everything outside the sandbox)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"candidate: baseline policy, N_ESTIMATORS={args.n_estimators}, budget {args.budget:g} s per phase")
    print(f"rows: {args.rows:,}; experiments: {len(summary.records)} ({summary.kept} kept); init {init_s:.1f} s; "
          f"loop {loop_s:.1f} s")
    print(f"overhead per experiment: median {statistics.median(overheads):.3f} s, "
          f"max {max(overheads):.3f} s (target < 0.3 s)")
    for name, values in parts.items():
        print(f"  {name:<22} median {statistics.median(values):.3f} s")
    print(f"share of wall time inside candidate code: median {statistics.median(shares):.1%} (target > 95%)")


if __name__ == "__main__":
    main()
