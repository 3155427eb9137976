"""Which confidence bound for the mean of paired per-row differences covers at its nominal rate on fraud data?

The significance guard (guards/significance.py) bounds the mean of d_i = candidate_i - champion_i, the per-row
difference of the fraud domain's contributions (a blocked fraud adds its amount, a blocked legitimate payment
costs decline_cost = 5). d is mostly exact zeros (rows both policies decide alike) plus a few huge values
(frauds worth hundreds), so a normal approximation and a percentile bootstrap may both miss.

Populations: real difference vectors D. Policies are fitted on the first 60 % (by time) of the public card-fraud
export (benchmarks/public_fraud.py) and of a generated 300k-row set (domains.fraud.data.generate) and scored on the
remaining 40 % (dev + holdout rows together). For each D (true mean mu = D.mean(), true SE = sd(D) / sqrt(n)),
`--reps` samples of n = the dev size are drawn with replacement from D and each method's bound is computed:

  normal      mean - z se                    t          mean - t_{n-1} se
  percentile  bootstrap quantile             boot-t     studentized bootstrap (se of each resample analytic)
  bca         percentile with bias z0 and acceleration a = sum u^3 / (6 (sum u^2)^1.5), u = x - mean
  strat       normal with the variance post-stratified by the fraud label (sum_h n_h var_h / n^2)
  guard       today's rule: min(percentile, normal)
  guard+refit the guard's bound widened by z sqrt(2) model_sd (the refit noise, measured below; export only)
  oracle-se   diagnostic, not a method: mean - z x the TRUE SE (a miss here is the skew of the mean itself,
              not a poor SE estimate)

Resampling draws how many picks land on each distinct value (guards/_bootstrap.py's grouped trick), so a
resample costs distinct values, not rows. Reported per method: one-sided 95 % lower-bound coverage (share of reps
with lower <= mu), two-sided 90 % coverage, mean width (mean - lower) in true SEs, and P(lower > 0) (power when
mu > 0, a false keep when mu <= 0). Monte Carlo error of a coverage near 95 % over R reps: sqrt(.95 .05 / R).

The refit section measures the champion's dev-score spread over refits on 90 % subsamples of train (what
optimizer/loop/stages/evaluate.py's refit_spread feeds into the guard) against the row-resampling SE of the paired
difference between two refits, and checks whether dev differences between refits carry over to the holdout.

    .venv/bin/python benchmarks/intervals.py [--reps 1000] [--boot 2000] [--refits 5] [--no-generated]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DECLINE_COST = 5.0
CONFIDENCE = 0.95
METHODS = ("normal", "t", "percentile", "boot-t", "bca", "strat", "guard", "guard+refit", "oracle-se")
OUT = Path("/tmp/intervals_out.txt")
_lines: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    _lines.append(text)


# --- policies -----------------------------------------------------------------------------------
def shipped_policy(name: str, **overrides):
    """domains/fraud/policy.py as its own module (so variants do not share globals), constants overridden."""
    spec = importlib.util.spec_from_file_location(f"intervals_policy_{name}", ROOT / "domains/fraud/policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, value in overrides.items():
        setattr(module, key, value)
    return module


def v_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("V") and c[1:].isdigit()]


def fit_xgb(X: pd.DataFrame, y: np.ndarray, seed: int):
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=100, max_depth=5, learning_rate=0.1, subsample=0.8,
                                  colsample_bytree=0.8, tree_method="hist", n_jobs=2, random_state=seed)
    return model.fit(X, y)


def fit_lr(X: pd.DataFrame, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)


def contributions(rows: pd.DataFrame, scores: np.ndarray, threshold: float) -> np.ndarray:
    from domains import Decisions, get_domain

    return get_domain("fraud").contributions(rows, Decisions(np.asarray(scores, dtype=float), {"THRESHOLD": threshold}),
                                             {"decline_cost": DECLINE_COST})


def split_by_time(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    a, b = int(0.6 * len(frame)), int(0.8 * len(frame))
    return frame.iloc[:a], frame.iloc[a:b].reset_index(drop=True), frame.iloc[b:].reset_index(drop=True)


def policy_scores(policy, train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    from domains import get_domain

    domain = get_domain("fraud")
    model = policy.fit(domain.policy_view(train, with_label=True))
    return np.asarray(policy.decide(model, domain.policy_view(rows, with_label=False)), dtype=float)


def population(name, rows, champ, cand, note, n, refit_sd=0.0):
    """A difference vector D = cand - champ over `rows` (scores, threshold pairs), with its labels."""
    d = contributions(rows, *cand) - contributions(rows, *champ)
    return {"name": name, "d": d, "label": rows["is_fraud"].to_numpy(dtype=np.int8), "n": int(n), "note": note,
            "refit_sd": float(refit_sd)}


def export_populations(refits: int, timings: dict) -> tuple[list[dict], dict]:
    import public_fraud

    from domains.fraud.data import load

    try:
        csv = public_fraud.fetch()
    except public_fraud.Unavailable as exc:
        say(f"public card-fraud export unavailable ({exc}); skipping the real-data populations")
        return [], {}
    t0 = time.perf_counter()
    frame = load(csv, public_fraud.MAPPING)
    train, dev, hold = split_by_time(frame)
    pop = pd.concat([dev, hold], ignore_index=True)
    n = len(dev)
    say(f"export: {len(frame):,} rows; train {len(train):,} ({int(train.is_fraud.sum())} frauds), dev {len(dev):,} "
        f"({int(dev.is_fraud.sum())}), holdout {len(hold):,} ({int(hold.is_fraud.sum())}); population = dev+holdout")
    feats = v_columns(frame) + ["amount"]
    y = train["is_fraud"].to_numpy()
    lr = fit_lr(train[["amount", "V1", "V2", "V3", "V4"]], y)
    s_lr = lr.predict_proba(pop[["amount", "V1", "V2", "V3", "V4"]])[:, 1]
    s_x0 = fit_xgb(train[feats], y, 0).predict_proba(pop[feats])[:, 1]
    s_x1 = fit_xgb(train[feats], y, 1).predict_proba(pop[feats])[:, 1]
    timings["export_fits_s"] = time.perf_counter() - t0

    # Refit noise: the champion (XGBoost, seed 0) refitted on seeded 90 % subsamples of train, as refit_spread does.
    t0 = time.perf_counter()
    dev_scores, hold_scores, dev_contrib, hold_contrib = [], [], [], []
    for k in range(refits):
        sample = train.sample(frac=0.9, random_state=k).sort_index()
        s = fit_xgb(sample[feats], sample["is_fraud"].to_numpy(), 0).predict_proba(pop[feats])[:, 1]
        c = contributions(pop, s, 0.5)
        dev_contrib.append(c[:n])
        hold_contrib.append(c[n:])
        dev_scores.append(float(c[:n].mean()))
        hold_scores.append(float(c[n:].mean()))
    model_sd = float(np.std(dev_scores, ddof=1)) if refits >= 2 else 0.0
    pairs = []
    z = stats.norm.isf(1 - CONFIDENCE)
    for i in range(refits):
        for j in range(i + 1, refits):
            dd = dev_contrib[j] - dev_contrib[i]
            dh = hold_contrib[j] - hold_contrib[i]
            se = float(dd.std(ddof=1) / math.sqrt(len(dd)))
            pairs.append({"pair": [i, j], "dev_diff": float(dd.mean()), "dev_row_se": se,
                          "z": float(dd.mean() / se) if se > 0 else 0.0, "holdout_diff": float(dh.mean()),
                          "holdout_row_se": float(dh.std(ddof=1) / math.sqrt(len(dh))),
                          "nonzero_share_dev": float(np.count_nonzero(dd) / len(dd))})
    timings["export_refits_s"] = time.perf_counter() - t0
    refit = {"refits": refits, "dev_scores": dev_scores, "holdout_scores": hold_scores, "model_sd": model_sd,
             "widening_sd": math.sqrt(2) * model_sd, "widening_at_95": z * math.sqrt(2) * model_sd, "pairs": pairs}

    t0 = time.perf_counter()
    shipped = shipped_policy("export_s0")
    s_p0 = policy_scores(shipped, train, pop)
    s_p1 = policy_scores(shipped_policy("export_s1", SEED=1), train, pop)
    timings["export_policy_fits_s"] = time.perf_counter() - t0
    thr = float(shipped.THRESHOLD)
    pops = [
        population("export/lr-vs-xgb", pop, (s_lr, 0.5), (s_x0, 0.5), "LR(amount,V1..V4)@.5 -> XGB@.5", n, model_sd),
        population("export/xgb-thr", pop, (s_x0, 0.5), (s_x0, 0.2), "XGB@.5 -> same XGB@.2", n, model_sd),
        population("export/xgb-seed", pop, (s_x0, 0.5), (s_x1, 0.5), "XGB seed 0 -> seed 1 (near null)", n, model_sd),
        population("export/policy-thr", pop, (s_p0, thr), (s_p0, 0.3), f"policy.py@{thr:g} -> @.3", n, model_sd),
        population("export/policy-seed", pop, (s_p0, thr), (s_p1, thr), "policy.py SEED 0 -> 1 (near null)", n,
                   model_sd),
        population("export/lr-vs-policy", pop, (s_lr, 0.5), (s_p0, thr), f"LR@.5 -> policy.py@{thr:g}", n, model_sd),
        population("export/xgb-vs-policy", pop, (s_x0, 0.5), (s_p0, thr), f"XGB@.5 -> policy.py@{thr:g}", n, model_sd),
    ]
    return pops, refit


def generated_populations(rows: int, timings: dict) -> list[dict]:
    from domains.fraud.data import generate

    t0 = time.perf_counter()
    frame = generate(7, rows)
    train, dev, hold = split_by_time(frame)
    pop = pd.concat([dev, hold], ignore_index=True)
    n = len(dev)
    say(f"generated: {len(frame):,} rows; train {len(train):,} ({int(train.is_fraud.sum())} frauds), dev {len(dev):,} "
        f"({int(dev.is_fraud.sum())}), holdout {len(hold):,} ({int(hold.is_fraud.sum())})")
    shipped = shipped_policy("gen_s0")
    thr = float(shipped.THRESHOLD)
    s_p0 = policy_scores(shipped, train, pop)
    s_p1 = policy_scores(shipped_policy("gen_s1", SEED=1), train, pop)
    # A weak champion: logistic regression on the amount and the policy's own 1-day windows.
    cols = ["amount", "customer_n_1d", "terminal_n_1d"]
    ftrain = shipped.features(train.drop(columns=["is_fraud", "fraud_scenario"]))
    fpop = shipped.features(pop.drop(columns=["is_fraud", "fraud_scenario"]))
    cols = [c for c in cols if c in ftrain.columns] or ["amount"]
    s_lr = fit_lr(ftrain[cols], train["is_fraud"].to_numpy()).predict_proba(fpop[cols])[:, 1]
    timings["generated_s"] = time.perf_counter() - t0
    return [
        population("gen/lr-vs-policy", pop, (s_lr, 0.5), (s_p0, thr), f"LR({','.join(cols)})@.5 -> policy.py@{thr:g}",
                   n),
        population("gen/policy-thr", pop, (s_p0, thr), (s_p0, 0.3), f"policy.py@{thr:g} -> @.3", n),
        population("gen/policy-seed", pop, (s_p0, thr), (s_p1, thr), "policy.py SEED 0 -> 1 (near null)", n),
    ]


# --- simulation ----------------------------------------------------------------------------------
def resample_sums(v: np.ndarray, c: np.ndarray, n: int, n_boot: int, rng: np.random.Generator):
    """Sums of x and x^2 over `n_boot` resamples (n rows, with replacement) of a sample holding value v[k] c[k] times.

    guards/_bootstrap.py's two tricks, same distribution as drawing rows: draw how many picks land on each
    distinct value (multinomial), or, when the distinct values are about as many as the nonzero rows, draw how many
    picks are nonzero (binomial) and pick only those (zeros add nothing to either sum)."""
    nz = v != 0
    m = int(c[nz].sum())
    if len(v) * 4 < m:
        M = rng.multinomial(n, c / c.sum(), size=n_boot)
        return M @ v, M @ v**2
    x = np.repeat(v[nz], c[nz].astype(np.int64))
    k = rng.binomial(n, m / n, size=n_boot)
    picks = x[rng.integers(0, m, size=int(k.sum()))]
    ends = np.concatenate([[0], np.cumsum(k)])
    c1 = np.concatenate([[0.0], np.cumsum(picks)])
    c2 = np.concatenate([[0.0], np.cumsum(picks**2)])
    return c1[ends[1:]] - c1[ends[:-1]], c2[ends[1:]] - c2[ends[:-1]]


def simulate(popn: dict, reps: int, n_boot: int, seed: int) -> dict:
    """Coverage, width and P(lower > 0) of each method over `reps` samples of n rows drawn from the population."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    d, label, n = popn["d"], popn["label"], popn["n"]
    mu = float(d.mean())
    true_se = float(d.std() / math.sqrt(n))
    alpha = 1 - CONFIDENCE
    z = float(stats.norm.isf(alpha))
    tq = float(stats.t.isf(alpha, n - 1))
    za = float(stats.norm.ppf(alpha))
    # Population cells: distinct (value, label) pairs; a sample is a multinomial count over them.
    keys, inverse = np.unique(np.stack([d, label.astype(float)]), axis=1, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    vals, labs = keys[0], keys[1].astype(int)
    probs = np.bincount(inverse, minlength=len(vals)) / len(d)
    # Value levels (labels merged) for the bootstrap: a resample's mean depends only on the values.
    uvals, vmap = np.unique(vals, return_inverse=True)
    counts = rng.multinomial(n, probs, size=reps)                       # reps x cells
    m1 = counts @ vals / n
    m2 = counts @ vals**2 / n
    var = np.maximum(m2 - m1**2, 0.0) * n / (n - 1)
    se = np.sqrt(var / n)
    lower = {m: np.empty(reps) for m in METHODS}
    upper = {m: np.empty(reps) for m in METHODS}
    lower["normal"], upper["normal"] = m1 - z * se, m1 + z * se
    lower["t"], upper["t"] = m1 - tq * se, m1 + tq * se
    strat_var = np.zeros(reps)
    for h in (0, 1):
        cell = labs == h
        nh = counts[:, cell].sum(axis=1)
        s1 = counts[:, cell] @ vals[cell]
        s2 = counts[:, cell] @ vals[cell] ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            vh = np.where(nh > 1, (s2 - s1**2 / np.maximum(nh, 1)) / np.maximum(nh - 1, 1), 0.0)
        strat_var += nh * np.maximum(vh, 0.0)
    sse = np.sqrt(strat_var) / n
    lower["strat"], upper["strat"] = m1 - z * sse, m1 + z * sse
    widen = z * math.sqrt(2) * popn["refit_sd"]
    for r in range(reps):
        cv = np.bincount(vmap, weights=counts[r], minlength=len(uvals))
        keep = cv > 0
        v, c = uvals[keep], cv[keep]
        if len(v) == 1 or se[r] == 0:  # every row alike: every bound is the mean
            for m in ("percentile", "boot-t", "bca"):
                lower[m][r] = upper[m][r] = m1[r]
            continue
        s1, s2 = resample_sums(v, c, n, n_boot, rng)
        bm = s1 / n
        bse = np.sqrt(np.maximum(s2 / n - bm**2, 0.0) * n / (n - 1) / n)
        lo, hi = np.quantile(bm, [alpha, 1 - alpha])
        lower["percentile"][r], upper["percentile"][r] = lo, hi
        with np.errstate(divide="ignore", invalid="ignore"):
            tstar = (bm - m1[r]) / bse
        tstar = tstar[np.isfinite(tstar)]
        t_hi, t_lo = np.quantile(tstar, [1 - alpha, alpha]) if len(tstar) else (np.inf, -np.inf)
        lower["boot-t"][r], upper["boot-t"][r] = m1[r] - t_hi * se[r], m1[r] - t_lo * se[r]
        share = (np.count_nonzero(bm < m1[r]) + 0.5 * np.count_nonzero(bm == m1[r])) / n_boot
        z0 = float(stats.norm.ppf(min(max(share, 1 / n_boot), 1 - 1 / n_boot)))
        u = v - m1[r]
        acc = float((c * u**3).sum() / (6 * (c * u**2).sum() ** 1.5))
        qs = [float(stats.norm.cdf(z0 + (z0 + zq) / (1 - acc * (z0 + zq)))) for zq in (za, -za)]
        lower["bca"][r], upper["bca"][r] = np.quantile(bm, qs)
    lower["guard"] = np.minimum(lower["percentile"], lower["normal"])
    upper["guard"] = np.maximum(upper["percentile"], upper["normal"])
    lower["guard+refit"] = m1 - np.hypot(m1 - lower["guard"], widen)
    upper["guard+refit"] = m1 + np.hypot(upper["guard"] - m1, widen)
    lower["oracle-se"], upper["oracle-se"] = m1 - z * true_se, m1 + z * true_se
    methods = [m for m in METHODS if m != "guard+refit" or popn["refit_sd"] > 0]
    out = {}
    for m in methods:
        out[m] = {"cover_lower_95": float(np.mean(lower[m] <= mu)),
                  "cover_two_sided_90": float(np.mean((lower[m] <= mu) & (mu <= upper[m]))),
                  "miss_high": float(np.mean(upper[m] < mu)),
                  "width_se": float(np.mean(m1 - lower[m]) / true_se) if true_se > 0 else float("nan"),
                  "p_lower_gt_0": float(np.mean(lower[m] > 0))}
    nonzero = np.count_nonzero(d)
    absd = np.abs(d)
    top1 = float(absd.max() / absd.sum()) if nonzero else 0.0
    skew = float(stats.skew(d)) if nonzero > 1 else 0.0
    return {"name": popn["name"], "note": popn["note"], "population_rows": int(len(d)), "n": n,
            "nonzero_share": nonzero / len(d), "nonzero_rows": int(nonzero),
            "nonzero_fraud_rows": int(np.count_nonzero(d[label == 1])), "distinct_values": int(len(uvals)),
            "true_mean": mu, "true_se": true_se, "top1_share_of_abs": top1, "skew": skew,
            "kurtosis": float(stats.kurtosis(d)) if nonzero > 1 else 0.0,
            "expected_nonzero_in_sample": nonzero / len(d) * n, "refit_sd": popn["refit_sd"], "reps": reps,
            "n_boot": n_boot, "seconds": time.perf_counter() - t0, "methods": out}


def check_grouped_matches_guard(popn: dict, n_boot: int, seed: int) -> dict:
    """The grouped resampling here and guards._bootstrap.bootstrap_means give the same percentile bound."""
    from guards._bootstrap import bootstrap_means

    rng = np.random.default_rng(seed)
    x = rng.choice(popn["d"], size=popn["n"], replace=True)
    v, c = np.unique(x, return_counts=True)
    ours = rng.multinomial(len(x), c / len(x), size=n_boot) @ v / len(x)
    theirs = bootstrap_means(x, n_boot, rng)
    se = x.std(ddof=1) / math.sqrt(len(x))
    s1, _ = resample_sums(v, c.astype(float), len(x), n_boot, rng)
    return {"population": popn["name"], "q05_grouped": float(np.quantile(ours, 0.05)),
            "q05_bootstrap_means": float(np.quantile(theirs, 0.05)),
            "q05_resample_sums": float(np.quantile(s1 / len(x), 0.05)), "sd_grouped": float(ours.std()),
            "sd_bootstrap_means": float(theirs.std()), "sd_resample_sums": float((s1 / len(x)).std()),
            "sample_se": float(se)}


# --- report --------------------------------------------------------------------------------------
def table(res: dict) -> list[str]:
    ratio = res["true_mean"] / res["true_se"] if res["true_se"] else 0.0
    lines = [f"== {res['name']}: {res['note']}",
             f"   n {res['n']:,} (population {res['population_rows']:,}), nonzero {100 * res['nonzero_share']:.3f} % "
             f"(~{res['expected_nonzero_in_sample']:.0f} per sample; population {res['nonzero_rows']} rows, "
             f"{res['nonzero_fraud_rows']} of them frauds, {res['distinct_values']} distinct values), "
             f"true mean {res['true_mean']:+.5f}, true SE {res['true_se']:.5f} (mean/SE {ratio:+.2f}), "
             f"skew {res['skew']:+.1f}, largest row {100 * res['top1_share_of_abs']:.0f} % of sum|d|, "
             f"reps {res['reps']}, boot {res['n_boot']}, {res['seconds']:.0f} s",
             f"   {'method':<12}{'cover95(1s)':>12}{'cover90(2s)':>12}{'miss_high':>10}{'width/SE':>10}{'P(lb>0)':>9}"]
    for m, r in res["methods"].items():
        lines.append(f"   {m:<12}{r['cover_lower_95']:>12.3f}{r['cover_two_sided_90']:>12.3f}{r['miss_high']:>10.3f}"
                     f"{r['width_se']:>10.2f}{r['p_lower_gt_0']:>9.3f}")
    return lines


def summary(results: list[dict]) -> list[str]:
    """Per method over a group of populations: worst and mean one-sided coverage, width, power, false keeps."""
    lines = [f"   {'method':<12}{'min cov':>9}{'mean cov':>9}{'mean|cov-.95|':>14}{'med width/SE':>14}"
             f"{'power(mu>0)':>12}{'max P(lb>0|mu<=0)':>19}"]
    for m in METHODS:
        rows = [r for r in results if m in r["methods"]]
        if not rows:
            continue
        cov = np.array([r["methods"][m]["cover_lower_95"] for r in rows])
        width = np.array([r["methods"][m]["width_se"] for r in rows])
        pos = [r["methods"][m]["p_lower_gt_0"] for r in rows if r["true_mean"] > 0]
        neg = [r["methods"][m]["p_lower_gt_0"] for r in rows if r["true_mean"] <= 0]
        lines.append(f"   {m:<12}{cov.min():>9.3f}{cov.mean():>9.3f}{np.abs(cov - CONFIDENCE).mean():>14.3f}"
                     f"{np.median(width):>14.2f}{np.mean(pos) if pos else float('nan'):>12.3f}"
                     f"{max(neg) if neg else float('nan'):>19.3f}")
    return lines


def _sim(args):
    return simulate(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000, help="samples drawn from each population")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples per sample (the guard's default)")
    ap.add_argument("--refits", type=int, default=5, help="refits of the export champion on 90 %% subsamples")
    ap.add_argument("--generated-rows", type=int, default=300_000)
    ap.add_argument("--no-generated", action="store_true", help="only the public export")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    say(f"intervals: reps {args.reps}, boot {args.boot}, one-sided confidence {CONFIDENCE}, {os.cpu_count()} cores, "
        f"{args.workers} workers")
    pops, refit = export_populations(args.refits, timings)
    if not args.no_generated:
        pops += generated_populations(args.generated_rows, timings)
    if not pops:
        say("no populations: nothing to simulate")
        OUT.write_text("\n".join(_lines) + "\n")
        return
    check = check_grouped_matches_guard(pops[0], args.boot, args.seed + 99)
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(args.seed).spawn(len(pops))
    jobs = [(p, args.reps, args.boot, int(s.generate_state(1)[0])) for p, s in zip(pops, seeds)]
    order = sorted(range(len(jobs)), key=lambda i: -np.count_nonzero(pops[i]["d"]))  # big ones first
    results: list[dict | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, res in zip(order, pool.map(_sim, [jobs[i] for i in order])):
            results[i] = res
    timings["simulation_s"] = time.perf_counter() - t0
    say()
    say(f"one-sided {CONFIDENCE:.0%} lower bounds: cover95(1s) = share of reps with lower <= true mean (nominal 0.95, "
        f"MC error +-{math.sqrt(.95 * .05 / args.reps):.3f}); cover90(2s) = both 95 % bounds hold (nominal 0.90); "
        "miss_high = upper < true mean; width/SE = mean(mean - lower) / true SE (normal = 1.64); P(lb>0) = power "
        "when the true mean > 0, a false keep when <= 0")
    for res in results:
        say()
        for line in table(res):
            say(line)
    for group, prefix in (("public export (real)", "export/"), ("generated", "gen/")):
        chosen = [r for r in results if r["name"].startswith(prefix)]
        if chosen:
            say()
            say(f"== summary over the {len(chosen)} {group} populations (med width/SE: median over populations)")
            for line in summary(chosen):
                say(line)
    if refit:
        say()
        say(f"== refit noise (export, XGBoost seed 0 refitted on {refit['refits']} seeded 90 % subsamples of train, "
            "dev and holdout fixed)")
        say(f"   dev net savings per refit: {', '.join(f'{x:.5f}' for x in refit['dev_scores'])}")
        say(f"   holdout net savings per refit: {', '.join(f'{x:.5f}' for x in refit['holdout_scores'])}")
        say(f"   model_sd (std of dev score) {refit['model_sd']:.5f}; sqrt(2) model_sd {refit['widening_sd']:.5f}; "
            f"guard widening z sqrt(2) model_sd {refit['widening_at_95']:.5f}")
        ses = [p["dev_row_se"] for p in refit["pairs"]]
        say(f"   row-resampling SE of the dev paired difference between two refits: median {np.median(ses):.5f} "
            f"(range {min(ses):.5f}..{max(ses):.5f}); "
            f"ratio sqrt(2) model_sd / row SE {refit['widening_sd'] / np.median(ses):.2f}")
        say(f"   {'pair':<6}{'dev diff':>10}{'row SE':>9}{'z':>7}{'holdout diff':>14}{'hold SE':>9}{'nonzero':>9}")
        for p in refit["pairs"]:
            say(f"   {p['pair'][0]}-{p['pair'][1]:<4}{p['dev_diff']:>+10.5f}{p['dev_row_se']:>9.5f}{p['z']:>+7.2f}"
                f"{p['holdout_diff']:>+14.5f}{p['holdout_row_se']:>9.5f}{100 * p['nonzero_share_dev']:>8.2f}%")
        zs = np.array([p["z"] for p in refit["pairs"]])
        dv = np.array([p["dev_diff"] for p in refit["pairs"]])
        hv = np.array([p["holdout_diff"] for p in refit["pairs"]])
        refit["share_refit_pairs_z_gt_1.645"] = float(np.mean(np.abs(zs) > 1.645))
        refit["rms_z"] = float(np.sqrt(np.mean(zs**2)))
        refit["dev_holdout_corr"] = float(np.corrcoef(dv, hv)[0, 1]) if len(dv) > 2 else float("nan")
        say(f"   refit pairs with |z| > 1.645 (one-sided 5 % each way: 10 % expected if only rows were noise): "
            f"{refit['share_refit_pairs_z_gt_1.645']:.2f}; rms z {refit['rms_z']:.2f} "
            "(about 1 if row noise explains the refit differences); "
            f"corr(dev diff, holdout diff) over pairs {refit['dev_holdout_corr']:+.2f}")
    say()
    say(f"check on one sample of {check['population']}: bootstrap q05 / sd of means: "
        f"grouped {check['q05_grouped']:+.5f} / "
        f"{check['sd_grouped']:.5f}, resample_sums {check['q05_resample_sums']:+.5f} / {check['sd_resample_sums']:.5f}, "
        f"guards._bootstrap.bootstrap_means {check['q05_bootstrap_means']:+.5f} / {check['sd_bootstrap_means']:.5f} "
        f"(sample SE {check['sample_se']:.5f})")
    timings["total_s"] = time.perf_counter() - t_start
    say("timings: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    say("JSON " + json.dumps({"reps": args.reps, "boot": args.boot, "confidence": CONFIDENCE, "populations": results,
                              "refit": refit, "check": check, "timings": timings}))
    OUT.write_text("\n".join(_lines) + "\n")


if __name__ == "__main__":
    main()
