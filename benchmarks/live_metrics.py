"""Coverage of a shadow trial's live metrics (`optimizer/release/shadow/live.py`): how often the bootstrap interval
on the review's share of a trial's events holds the metric over all of the trial's events, on generated trials (the fraud
generator's world continued, as `ratchet events` draws it) and on trials resampled from the public card-fraud
export's real rows (skipped offline).

Each trial: a fixed decision rule decides every event; a review labels `--review-rate` of the blocked events at
random; the sample is those plus the same share of the events let through (what the report does). The interval is
`live.bootstrap` at 95 %. Printed per metric: coverage of the trial's all-events value (the figure the README
claims), coverage of the population's value, the mean interval width, and how many trials had no interval.

  .venv/bin/python benchmarks/live_metrics.py [--trials 200] [--review-rate 0.2] [--data generated|export|both]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domains import Decisions, get_domain  # noqa: E402
from optimizer.release.shadow.live import bootstrap  # noqa: E402

METRICS = ("net_savings", "fraud_recall", "false_decline_rate", "alert_rate", "precision")
THRESHOLD = 0.3


def generated_trials(trials: int, seed: int = 5, size: int = 60_000, days: float = 30):
    """Trials of `days` days continuing one generated world; the rule blocks amounts over 120."""
    from domains.fraud import data

    world = data.generate(seed, size)
    start = world["ts"].max().floor("D") + pd.Timedelta(days=1)
    population = data.continue_population(seed, size, start=start, days=365, live_seed=10_000)
    for t in range(trials):
        yield data.continue_population(seed, size, start=start, days=days, live_seed=t), population


def export_trials(trials: int, events: int = 30_000):
    """Trials of `events` rows drawn with replacement from the export; the rule blocks V14 below -5."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import public_fraud

    try:
        path = public_fraud.fetch()
    except Exception as exc:  # offline: say so and skip
        print(f"export: skipped ({type(exc).__name__}: {exc})")
        return
    rows = get_domain("fraud").load(path, public_fraud.MAPPING)
    rng = np.random.default_rng(7)
    for _ in range(trials):
        yield rows.iloc[np.sort(rng.integers(0, len(rows), events))].reset_index(drop=True), rows


def scores(rows: pd.DataFrame) -> np.ndarray:
    if "V14" in rows.columns:
        return np.clip((-rows["V14"].to_numpy() - 2.0) / 10.0, 0.0, 1.0)
    return np.clip(rows["amount"].to_numpy() / 400.0, 0.0, 1.0)


def run(name: str, trials, review_rate: float, params: dict) -> None:
    domain = get_domain("fraud")
    hits = {m: [0, 0, 0.0, 0] for m in METRICS}  # covers trial, covers population, width sum, no interval
    truth_population = None
    n, started = 0, time.perf_counter()
    for t, (events, population) in enumerate(trials):
        if truth_population is None:
            decided = Decisions(scores(population), {"THRESHOLD": THRESHOLD})
            truth_population = domain.score(population, decided, params, detail=False).metrics
        decisions = Decisions(scores(events), {"THRESHOLD": THRESHOLD})
        truth = domain.score(events, decisions, params, detail=False).metrics
        rng = np.random.default_rng([t, 0x5A])
        blocked = decisions.values >= THRESHOLD
        chosen = np.where(blocked, rng.random(len(events)) < review_rate, rng.random(len(events)) < review_rate)
        sample = Decisions(decisions.values[chosen], decisions.constants)
        found = bootstrap(domain, events[chosen].reset_index(drop=True), sample, params, confidence=0.95, seed=t)
        for m in METRICS:
            low, high = found[m]["low"], found[m]["high"]
            if low is None:
                hits[m][3] += 1
                continue
            hits[m][0] += low <= truth[m] <= high
            hits[m][1] += low <= truth_population[m] <= high
            hits[m][2] += high - low
        n += 1
    if not n:
        return
    print(f"{name}: {n} trials, review rate {review_rate:g}, {time.perf_counter() - started:.0f} s")
    print("| metric | covers the trial's value | covers the population's | mean width | no interval |")
    print("| --- | --- | --- | --- | --- |")
    for m, (trial, pop, width, none) in hits.items():
        some = max(n - none, 1)
        print(f"| {m} | {trial / some:.1%} | {pop / some:.1%} | {width / some:.4g} | {none} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--review-rate", type=float, default=0.2)
    parser.add_argument("--data", choices=("generated", "export", "both"), default="both")
    args = parser.parse_args()
    params = get_domain("fraud").scoring().model_dump()
    if args.data in ("generated", "both"):
        run("generated", generated_trials(args.trials), args.review_rate, params)
    if args.data in ("export", "both"):
        run("export", export_trials(args.trials), args.review_rate, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
