"""Experiments per hour: one at a time, `--parallel 2` (two local sandboxes) and Dask with 2 workers, at candidate
sizes that use about 5 s and about 60 s of their budget.

Candidates are the shipped fraud baseline with a different THRESHOLD each (so every one is evaluated and scored in
full) and N_ESTIMATORS sized so that one fit takes about the target (calibrated here, in-process, on the same
rows). Each mode runs the same candidates on its own copy of one sealed workspace (refits off, so a keep does not
add its refits to one mode only); the rate counts from the baseline's evaluation to the last record.

    .venv/bin/python benchmarks/throughput.py [--targets 5,60] [--experiments 6] [--rows 60000]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the calibration fit runs here: as in the sandbox, no spinning

MODES = {"sequential": {}, "parallel 2": {"parallel": 2}, "dask 2 workers": {"parallel": 2, "executor": "dask"}}


def trees_for(seconds: float, baseline: str, ws: Path) -> int:
    """N_ESTIMATORS for a fit of about `seconds` on this workspace's train rows: the marginal cost of a tree, timed
    between 100 and 400 trees (later trees are cheaper than the first ones, so one short fit overestimates it)."""
    import pandas as pd

    from domains import get_domain
    from optimizer.base.tunables import rewrite

    train = get_domain("fraud").policy_view(pd.read_parquet(ws / "data" / "train.parquet"), with_label=True)
    took = {}
    for trees in (100, 400):
        policy = types.ModuleType("calibration")
        exec(compile(rewrite(baseline, {"N_ESTIMATORS": trees}), "calibration", "exec"), policy.__dict__)  # trusted
        t0 = time.perf_counter()
        policy.fit(train)
        took[trees] = time.perf_counter() - t0
    per_tree = max((took[400] - took[100]) / 300, 1e-4)
    return max(10, int((seconds - took[100]) / per_tree) + 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="5,60", help="seconds a candidate's fit should take, comma-separated")
    ap.add_argument("--experiments", type=int, default=6, help="experiments per mode and target")
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    args = ap.parse_args()

    from domains import get_domain
    from optimizer.base.tunables import rewrite
    from optimizer.lifecycle.initialize import init_workspace
    from optimizer.loop.run import BaselineReady, Recorded, run_loop

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"rows {args.rows:,}; {args.experiments} experiments per mode", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        sealed = init_workspace("fraud", tmp / "sealed", overrides={"data.rows": args.rows,
                                                                    "decision.refits": 0}).workspace.root
        baseline = get_domain("fraud").baseline_policy.read_text()
        for target in (float(t) for t in args.targets.split(",")):
            trees = trees_for(target, baseline, sealed)
            patches = tmp / f"patches-{target:g}"
            patches.mkdir()
            for i in range(args.experiments):
                src = rewrite(baseline, {"THRESHOLD": round(0.2 + 0.02 * i, 2)})  # trees: past the tunable range
                src = src.replace("N_ESTIMATORS = 300 ", f"N_ESTIMATORS = {trees} ")
                (patches / f"c{i:03d}.py").write_text(f'"""Threshold variant {i}."""\n' + src.split('"""', 2)[2])
            rates = {}
            for mode in args.modes.split(","):
                ws = tmp / f"ws-{target:g}-{mode.replace(' ', '-')}"
                shutil.copytree(sealed, ws)
                stamps: list[float] = []

                def on_event(event, stamps=stamps) -> None:
                    if isinstance(event, (BaselineReady, Recorded)):
                        stamps.append(time.perf_counter())

                summary = run_loop(ws, experiments=args.experiments, budget=max(10.0, 3 * target), proposer="patches",
                                   patches=patches, on_event=on_event, **MODES[mode])
                seconds = stamps[-1] - stamps[0]
                fits = sorted(float(r.fit.get("fit_seconds") or 0) for r in summary.records)
                rates[mode] = 3600 * len(summary.records) / seconds
                print(f"target {target:g} s ({trees} trees, median fit {fits[len(fits) // 2]:.1f} s in the sandbox) | "
                      f"{mode:<15} | {len(summary.records)} experiments in {seconds:.1f} s | "
                      f"{rates[mode]:.0f} experiments/hour | x{rates[mode] / rates.get('sequential', rates[mode]):.2f}"
                      f" vs sequential | statuses {sorted({str(r.status) for r in summary.records})}", flush=True)


if __name__ == "__main__":
    main()
