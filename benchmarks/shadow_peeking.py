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

and, with selective labels (`--review-rate`, 0.2: where the champion blocked and the challenger would not, the
label is seen only when a review, drawn at that rate, looked):

  ipw       the sequence on the inverse-review-weighted differences (`shadow.review_rate` set), once
            `--review-floor` (default `--min-changed`) of the blocked disagreements were reviewed (worst/best
            filling before that)
  worst     the sequence with each unreviewed such event filled worst (passes) and best (fails) for the challenger

Printed per scenario and procedure: the pass rate (A/A and worse: a false pass; gain: power) with its 95 %
binomial interval, the mean number of events in at the pass, and the share still undecided at the end.

    .venv/bin/python benchmarks/shadow_peeking.py [--trials 2000] [--events 100000] [--batches 20]
                                                  [--min-changed 10] [--review-rate 0.2]
                                                  [--review-floor N] [--data export|generated]
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

CHUNK = 25  # trials resampled at once (memory: a few CHUNK x events arrays)
DECLINE_COST = 5.0  # the fraud domain's default: what a declined legitimate payment costs (the templates' cost)


def scenarios(t: dict, events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-row population differences for each scenario (see the module's docstring)."""
    from power import shifted

    good = np.asarray(t["good"], dtype=float)
    flipped = good * rng.choice([-1.0, 1.0], size=good.size)
    aa = shifted(flipped, 0.0)
    se = aa.std() / math.sqrt(events)
    return {"A/A": aa, "worse": shifted(flipped, -0.5 * se), "gain": good}


def _at_looks(x: np.ndarray, looks: np.ndarray, alpha: float, rho: float) -> tuple[np.ndarray, ...]:
    """Per trial (rows of x) and look: the mean, the sequence's radius, the fixed bound's z-free half-width
    (sd / sqrt(n)) and how many events differ."""
    n = looks.astype(float)
    mean = np.cumsum(x, axis=1)[:, looks - 1] / n
    q = np.cumsum(x * x, axis=1)[:, looks - 1]
    sd = np.sqrt(np.maximum(q - n * mean * mean, 0.0) / (n - 1))
    cs = np.array([[radius(int(k), float(v), alpha, rho) for k, v in zip(looks, row)] for row in sd])
    return mean, cs, sd / np.sqrt(n), np.cumsum(x != 0, axis=1)[:, looks - 1]


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _sequential(tally: dict, passes: np.ndarray, fails: np.ndarray, looks: np.ndarray) -> None:
    """Stop at the first look that decides: a pass before any fail counts as a pass."""
    p, f = _first(passes), _first(fails)
    if p is not None and (f is None or p < f):
        tally["passed"] += 1
        tally["events_at_pass"].append(int(looks[p]))
    elif f is None:
        tally["undecided"] += 1


def run(d: np.ndarray, t: dict, *, trials: int, events: int, batches: int, min_labeled: int, min_changed: int,
        alpha: float, margin: float, review_rate: float, review_floor: int, seed: int) -> dict[str, dict]:
    """Simulate `trials` trials of population differences `d`; each procedure's passes and when."""
    rng = np.random.default_rng(seed)
    looks = np.linspace(events / batches, events, batches).astype(int)
    looks = looks[looks >= min_labeled]
    rho, z = tuned_rho(events, alpha), stats.norm.ppf(1 - alpha)
    names = ("sequence", "fixed", "once") + (("ipw", "worst") if review_rate else ())
    out = {p: {"passed": 0, "events_at_pass": [], "undecided": 0} for p in names}
    label, amount = np.asarray(t["label"]) == 1, np.asarray(t["amount"], dtype=float)
    # Where the champion blocked and the challenger let through: a fraud costs the challenger its amount, a
    # legitimate payment saves it the decline cost; the label is seen only if a review looked (selective labels).
    champion_blocked = (label & (d < 0)) | (~label & (d > 0))
    done = 0
    while done < trials:
        n_chunk = min(CHUNK, trials - done)
        idx = rng.integers(0, d.size, size=(n_chunk, events))
        x = d[idx]
        mean, cs, se, changed = _at_looks(x, looks, alpha, rho)
        if review_rate:
            hidden = champion_blocked[idx] & (rng.random(idx.shape) >= review_rate)
            ipw = np.where(champion_blocked[idx], np.where(hidden, 0.0, x / review_rate), x)
            m_ipw, cs_ipw, _, ch_ipw = _at_looks(ipw, looks, alpha, rho)
            seen_blocks = np.cumsum(champion_blocked[idx] & ~hidden, axis=1)[:, looks - 1]
            all_blocks = np.cumsum(champion_blocked[idx], axis=1)[:, looks - 1]
            m_lo, cs_lo, _, ch_lo = _at_looks(np.where(hidden, -amount[idx], x), looks, alpha, rho)
            m_hi, cs_hi, _, _ = _at_looks(np.where(hidden, DECLINE_COST, x), looks, alpha, rho)
        for i in range(n_chunk):
            ready = changed[i] >= min_changed
            _sequential(out["sequence"], ready & (mean[i] - cs[i] >= -margin), ready & (mean[i] + cs[i] < -margin),
                        looks)
            peek = mean[i] - z * se[i] >= -margin
            if peek.any():
                out["fixed"]["passed"] += 1
                out["fixed"]["events_at_pass"].append(int(looks[int(np.argmax(peek))]))
            if peek[-1]:
                out["once"]["passed"] += 1
                out["once"]["events_at_pass"].append(int(looks[-1]))
            if review_rate:
                # The report weights by the review rate once min_changed blocked disagreements were reviewed (or
                # there are none); before that it fills them worst and best case, as without a rate.
                weigh = (seen_blocks[i] >= review_floor) | (all_blocks[i] == 0)
                ready = np.where(weigh, ch_ipw[i], ch_lo[i]) >= min_changed
                low, high = np.where(weigh, m_ipw[i] - cs_ipw[i], m_lo[i] - cs_lo[i]), np.where(
                    weigh, m_ipw[i] + cs_ipw[i], m_hi[i] + cs_hi[i])
                _sequential(out["ipw"], ready & (low >= -margin), ready & (high < -margin), looks)
                ready = ch_lo[i] >= min_changed
                _sequential(out["worst"], ready & (m_lo[i] - cs_lo[i] >= -margin),
                            ready & (m_hi[i] + cs_hi[i] < -margin), looks)
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
    ap.add_argument("--review-rate", type=float, default=0.2)
    ap.add_argument("--review-floor", type=int, default=None, help="reviewed blocked disagreements before ipw "
                    "weighs (default: --min-changed, as the report; 0: weigh from the first look)")
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
                         **run(d, t, trials=args.trials, events=args.events, batches=args.batches,
                               min_labeled=args.min_labeled, min_changed=args.min_changed, alpha=alpha,
                               margin=args.margin, review_rate=args.review_rate,
                               review_floor=args.min_changed if args.review_floor is None else args.review_floor,
                               seed=args.seed + i)}
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus; data: {args.data} "
          f"({t['rows']:,} rows); {args.trials} trials x {args.events:,} events, {args.batches} looks, "
          f"confidence {args.confidence}, margin {args.margin}")
    print(f"{'scenario':8} {'mean/event':>11} {'procedure':9} {'pass rate':>9} {'95% interval':>17} "
          f"{'events at pass':>14} {'undecided':>9}")
    for name, r in results.items():
        for p in (k for k in r if isinstance(r[k], dict)):
            v = r[p]
            at = f"{v['mean_events_at_pass']:,.0f}" if v["mean_events_at_pass"] is not None else "-"
            interval = f"[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
            print(f"{name:8} {r['population_mean']:+11.5f} {p:9} {v['pass_rate']:9.3f} {interval:>17} {at:>14} "
                  f"{v['undecided']:9.3f}")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")
    print(json.dumps({"args": vars(args), "results": results}, default=str))


if __name__ == "__main__":
    main()
