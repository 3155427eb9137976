"""Peeking at a shadow trial: the false-pass rate when the report is read after every outcome batch, and the power.

A trial's per-event paired differences (challenger - champion net savings) are resampled from real per-row
differences of two fitted policies on the public card-fraud export (benchmarks/power.py's templates: XGBoost over
logistic regression on the export's last 40 % by time; heavy-tailed, a handful of frauds worth hundreds each, most
rows exactly 0). Outcomes arrive in `--batches` equal batches of settled events and the report is read after each,
promoting at the first look that passes (a verdict needs `--min-labeled` settled events and `--min-changed` of them
with a nonzero difference, as `shadow.min_labeled` and `shadow.min_changed` require). Scenarios, each over
`--trials` simulated trials of `--events` events:

  A/A     the real difference with each row's sign drawn at random (fixed per population), shifted on its changed
          rows so the population mean is exactly 0: as good as the champion, at the "not worse" boundary
  worse   the same, with mean -0.5 standard errors of the full trial: slightly worse
  gain    the real XGBoost-over-logistic-regression difference (mean about +0.10 per event): a real improvement

Procedures, on the same resampled trials:

  sequence  the report's anytime-valid confidence sequence (guards.anytime; normal mixture tuned for the trial's
            size): passes when its lower bound reaches -margin, fails (and stops) when its upper bound falls below
  fixed     the fixed-sample one-sided normal bound the report used before, read at every look
  once      the fixed-sample bound read once, at the last look (what its level promises)

Printed per scenario and procedure: the pass rate (A/A and worse: a false pass; gain: power) with its 95 %
binomial interval, the mean number of events in at the pass, and the share still undecided at the end.

    .venv/bin/python benchmarks/shadow_peeking.py [--trials 2000] [--events 100000] [--batches 20]
                                                  [--min-changed 10] [--data export|generated]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guards.anytime import radius, tuned_rho  # noqa: E402

CHUNK = 50  # trials resampled at once (memory: CHUNK x events floats)


def scenarios(t: dict, events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-row population differences for each scenario (see the module's docstring)."""
    from power import shifted

    good = np.asarray(t["good"], dtype=float)
    flipped = good * rng.choice([-1.0, 1.0], size=good.size)
    aa = shifted(flipped, 0.0)
    se = aa.std() / math.sqrt(events)
    return {"A/A": aa, "worse": shifted(flipped, -0.5 * se), "gain": good}


def run(d: np.ndarray, *, trials: int, events: int, batches: int, min_labeled: int, min_changed: int, alpha: float,
        margin: float, seed: int) -> dict[str, dict]:
    """Simulate `trials` trials of population differences `d`; each procedure's passes and when."""
    rng = np.random.default_rng(seed)
    looks = np.linspace(events / batches, events, batches).astype(int)
    looks = looks[looks >= min_labeled]
    rho, z = tuned_rho(events, alpha), stats.norm.ppf(1 - alpha)
    out = {p: {"passed": 0, "events_at_pass": [], "undecided": 0} for p in ("sequence", "fixed", "once")}
    done = 0
    while done < trials:
        n_chunk = min(CHUNK, trials - done)
        x = d[rng.integers(0, d.size, size=(n_chunk, events))]
        s, q = np.cumsum(x, axis=1)[:, looks - 1], np.cumsum(x * x, axis=1)[:, looks - 1]
        changed = np.cumsum(x != 0, axis=1)[:, looks - 1]
        n = looks.astype(float)
        mean = s / n
        sd = np.sqrt(np.maximum(q - n * mean * mean, 0.0) / (n - 1))
        cs = np.array([[radius(int(k), float(v), alpha, rho) for k, v in zip(looks, row)] for row in sd])
        fixed = z * sd / np.sqrt(n)
        for i in range(n_chunk):
            ready = changed[i] >= min_changed
            passes = ready & (mean[i] - cs[i] >= -margin)
            fails = ready & (mean[i] + cs[i] < -margin)
            first_pass = int(np.argmax(passes)) if passes.any() else None
            first_fail = int(np.argmax(fails)) if fails.any() else None
            if first_pass is not None and (first_fail is None or first_pass < first_fail):
                out["sequence"]["passed"] += 1
                out["sequence"]["events_at_pass"].append(int(looks[first_pass]))
            elif first_fail is None:
                out["sequence"]["undecided"] += 1
            peek = mean[i] - fixed[i] >= -margin
            if peek.any():
                out["fixed"]["passed"] += 1
                out["fixed"]["events_at_pass"].append(int(looks[int(np.argmax(peek))]))
            if peek[-1]:
                out["once"]["passed"] += 1
                out["once"]["events_at_pass"].append(int(looks[-1]))
        done += n_chunk
    return {p: _summary(v, trials) for p, v in out.items()}


def _summary(v: dict, trials: int) -> dict:
    k = v["passed"]
    ci = stats.binomtest(k, trials).proportion_ci(0.95)
    return {"pass_rate": k / trials, "ci95": [ci.low, ci.high], "mean_events_at_pass":
            float(np.mean(v["events_at_pass"])) if v["events_at_pass"] else None,
            "undecided": v["undecided"] / trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--min-labeled", type=int, default=1000)
    ap.add_argument("--min-changed", type=int, default=10)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--margin", type=float, default=0.0)
    ap.add_argument("--data", choices=("export", "generated"), default="export")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import power

    t0 = time.perf_counter()
    t = power.templates(args.data)
    alpha = 1 - args.confidence
    results = {}
    for i, (name, d) in enumerate(scenarios(t, args.events, np.random.default_rng(args.seed)).items()):
        results[name] = {"population_mean": float(d.mean()), "changed_rows": int((d != 0).sum()),
                         **run(d, trials=args.trials, events=args.events, batches=args.batches,
                               min_labeled=args.min_labeled, min_changed=args.min_changed, alpha=alpha,
                               margin=args.margin, seed=args.seed + i)}
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus; data: {args.data} "
          f"({t['rows']:,} rows); {args.trials} trials x {args.events:,} events, {args.batches} looks, "
          f"confidence {args.confidence}, margin {args.margin}")
    print(f"{'scenario':8} {'mean/event':>11} {'procedure':9} {'pass rate':>9} {'95% interval':>17} "
          f"{'events at pass':>14} {'undecided':>9}")
    for name, r in results.items():
        for p in ("sequence", "fixed", "once"):
            v = r[p]
            at = f"{v['mean_events_at_pass']:,.0f}" if v["mean_events_at_pass"] is not None else "-"
            interval = f"[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
            print(f"{name:8} {r['population_mean']:+11.5f} {p:9} {v['pass_rate']:9.3f} {interval:>17} {at:>14} "
                  f"{v['undecided']:9.3f}")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")
    print(json.dumps({"args": vars(args), "results": results}, default=str))


if __name__ == "__main__":
    main()
