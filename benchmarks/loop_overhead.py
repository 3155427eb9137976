"""The loop's own cost per experiment: the marginal cost of a trivial policy, and whether it stays flat.

Everything the loop adds around a candidate's own fit and decide: process and data hand-offs, integrity checks,
scoring dev and holdout, every guard, the gate, git, the ledger and MLflow. With the trivial policy (fit returns
nothing, decide scales the amount) the candidate's own time is near zero, so an experiment's wall time is the
overhead; the candidate time the sandbox measured is still subtracted. The workspace starts from the trivial
policy too, and candidates differ in THRESHOLD, so some are kept (refits, gate, keep transaction) and most are
reverted. Flat: the reverted experiments' overhead in the first and last tenth of the run, and its slope.

    .venv/bin/python benchmarks/loop_overhead.py [--experiments 60] [--rows 300000] [--runs 1]
    .venv/bin/python benchmarks/loop_overhead.py --candidate baseline --experiments 20   # the shipped XGBoost policy

`--profile FILE` writes a cProfile of the loop (the last run) for `python -m pstats FILE`.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

TRIVIAL = '''"""Trivial {i}: block by amount alone."""
import numpy as np

THRESHOLD = {threshold}


def fit(train):
    return None


def decide(model, rows):
    return np.clip(rows["amount"].to_numpy(dtype=np.float64) / 1000.0, 0.0, 1.0)
'''


def candidates(kind: str, count: int, n_estimators: int) -> list[str]:
    if kind == "trivial":  # thresholds 0.87, 0.84, ... 0.15: every amount above 220 is fraud, so some gains are real
        return [TRIVIAL.format(i=i, threshold=round(0.87 - 0.03 * (i % 25), 2)) for i in range(count)]
    from domains import get_domain
    from optimizer.base.tunables import rewrite

    baseline = get_domain("fraud").baseline_policy.read_text()
    out = []
    for i in range(count):
        src = rewrite(baseline, {"THRESHOLD": round(0.2 + 0.02 * (i % 40), 2), "N_ESTIMATORS": n_estimators})
        out.append(f'"""Threshold variant {i}."""\n' + src.split('"""', 2)[2])
    return out


def one_run(args, tmp: Path, profile: cProfile.Profile | None) -> dict:
    from optimizer.lifecycle.initialize import init_workspace
    from optimizer.loop.run import BaselineReady, Recorded, run_loop

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    start = None
    if args.candidate == "trivial":
        start = tmp / "start.py"
        start.write_text(TRIVIAL.format(i="start", threshold=0.9))
    init_workspace("fraud", tmp / "ws", overrides={"data.rows": args.rows}, policy_file=start)
    patches = tmp / "patches"
    patches.mkdir()
    for i, source in enumerate(candidates(args.candidate, args.experiments, args.n_estimators)):
        (patches / f"c{i:04d}.py").write_text(source)
    stamps: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, (BaselineReady, Recorded)):  # consecutive stamps bracket one whole experiment
            stamps.append(time.perf_counter())

    if profile:
        profile.enable()
    summary = run_loop(tmp / "ws", experiments=args.experiments, budget=args.budget, proposer="patches",
                       patches=patches, on_event=on_event)
    if profile:
        profile.disable()
    rows = []
    for r, wall in zip(summary.records, (b - a for a, b in zip(stamps, stamps[1:]))):
        inside = float(r.fit.get("fit_seconds") or 0) + float(r.fit.get("decide_seconds") or 0)
        sandbox = r.seconds.get("fit", 0) + r.seconds.get("decide", 0)
        rows.append({"status": str(r.status), "refused_by": ",".join(r.verdict.failed_guards), "wall": wall, "overhead": wall - inside, "inside": inside,
                     "sandbox": sandbox - inside, "record": wall - r.seconds.get("total", wall),
                     "refit": r.seconds.get("refit", 0)})
    return {"rows": rows, "kept": summary.kept}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=60)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=1, help="whole runs (fresh workspace each); figures are medians")
    ap.add_argument("--candidate", choices=("trivial", "baseline"), default="trivial")
    ap.add_argument("--budget", type=float, default=10.0, help="sandbox budget per phase (seconds)")
    ap.add_argument("--n-estimators", type=int, default=150, help="--candidate baseline: model size")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the last run's loop here")
    args = ap.parse_args()

    results = []
    for run in range(args.runs):
        profile = cProfile.Profile() if args.profile and run == args.runs - 1 else None
        with tempfile.TemporaryDirectory() as tmp:
            results.append(one_run(args, Path(tmp), profile))
        if profile:
            profile.dump_stats(str(args.profile))

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} s" if values else "-"

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"candidate: {args.candidate}; rows: {args.rows:,}; {args.experiments} experiments x {args.runs} run(s)")
    every = [row for res in results for row in res["rows"]]
    reverted = [row for row in every if row["status"] != "kept"]
    kept = [row for row in every if row["status"] == "kept"]
    refused = ", ".join(f"{guard} {n}" for guard, n in Counter(r["refused_by"] for r in reverted).most_common())
    print(f"experiments: {len(every)} ({len(kept)} kept, {len(reverted)} reverted or crashed; refused by: {refused})")
    print(f"overhead per experiment, all: median {med([r['overhead'] for r in every])}")
    print(f"  reverted: median {med([r['overhead'] for r in reverted])}  (target <= 0.15 s at 300k rows)")
    print(f"  kept:     median {med([r['overhead'] for r in kept])} (refits {med([r['refit'] for r in kept])} of it)")
    for part in ("sandbox", "record"):
        label = {"sandbox": "fit + decide hand-off", "record": "record (ledger, files, MLflow)"}[part]
        print(f"  {label:<32} median {med([r[part] for r in reverted])}")
    rest = [r["overhead"] - r["sandbox"] - r["record"] for r in reverted]
    print(f"  {'prefixes, scoring, guards, gate':<32} median {med(rest)}")
    if args.candidate == "baseline":
        share = [r["inside"] / r["wall"] for r in every]
        print(f"candidate's own fit + decide: median {med([r['inside'] for r in every])}; share of wall time inside "
              f"candidate code: median {statistics.median(share):.1%}")
    # Flat: the first and last tenth of each run's reverted experiments, and a least-squares slope.
    tenth = max(1, args.experiments // 10)
    first, last, slopes = [], [], []
    for res in results:
        series = [(i, r["overhead"]) for i, r in enumerate(res["rows"]) if r["status"] != "kept"]
        first += [o for _, o in series[:tenth]]
        last += [o for _, o in series[-tenth:]]
        if len(series) > 2:
            slopes.append(statistics.linear_regression([i for i, _ in series], [o for _, o in series]).slope)
    print(f"flat: first {tenth} reverted {med(first)}, last {tenth} reverted {med(last)}; slope "
          f"{1000 * statistics.median(slopes):+.3f} ms per experiment" if slopes else "flat: too few experiments")


if __name__ == "__main__":
    main()
