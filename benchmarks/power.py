"""Power and honesty of the keep decision over long runs, on resampled real per-row contributions.

A run is a stream of experiments (500 by default). Each candidate is a change relative to the current champion,
given as a per-row difference of net savings D over a population of real rows (the public card-fraud export's
last 40 % by time, scored by real fitted policies): D is a random part of a real difference between two fitted
models (real rows, real labels, real heavy-tailed amounts), shifted on its changed rows so its population mean,
the true gain, is exactly what its kind says:

  true gain    3 %  a part of XGBoost-vs-logistic-regression (a real improvement), mean 1 to 2 holdout SEs
  null        37 %  a part of a seed change (XGBoost vs XGBoost), mean exactly 0
  worse       40 %  a part of a seed change, mean -U(0, 2) holdout SEs
  dev-overfit 20 %  a null change plus 3 to 10 of the dev sample's frauds "caught" by literals copied from dev

Dev and holdout are fresh bootstrap samples of the population per run (their real sizes); what a candidate
memorised of dev rows is in dev only. The same candidate stream is judged by each procedure, which keeps its
own champion (the sum of its kept changes, row by row, so later tests are paired on the same rows):

  today        dev: normal lower bound at the per-look spending level (look k: alpha 6/(pi^2 k^2) x 0.05);
               holdout: Thresholdout on the gain over the baseline with a 2-SE Ladder step, budget 20;
               reported: the gate's answer
  lord         dev: screen at 95 % (normal lower bound > 0); holdout: z-test at LORD++'s level (FDR 5 %),
               budget 100; reported: the hybrid selection-corrected estimate, the keeps' intervals added end to end
  lord+guard   the same, with the contamination guard's refusal of literals copied from dev rows
  lord-split   lord, but the screen reads only half of dev and traces (what memorising reads) the other
  dev-selected keep whatever gains on dev (a plain search selecting by dev); reported: the dev gains

Printed per procedure: true gains kept, false keeps, false-discovery proportion (mean over runs), total true
gain, reported minus true, how often the true total lies in the reported 90 % interval (runs that kept something;
the keeps' intervals added end to end) and how often one keep's interval holds its true gain.
Not modelled: the refit widening, the guardrail and segment guards, and a champion's absorbed rows (each change
is drawn afresh).

    .venv/bin/python benchmarks/power.py [--runs 100] [--experiments 500] [--data export|generated]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holdout.fdr import GAMMA_EXPONENT, critical_z, lord_level, selected_estimate  # noqa: E402
from holdout.gate import draw_gamma, gain_se, thresholdout  # noqa: E402

Z95 = critical_z(0.05)
PROCEDURES = ("today", "lord", "lord+guard", "lord-split", "dev-selected")
KINDS = (("true", 0.03), ("null", 0.37), ("worse", 0.40), ("overfit", 0.20))


def templates(data: str) -> dict:
    """Real per-row differences over the scoring rows: 'good' (XGBoost over logistic regression) and 'seed'
    (XGBoost with another seed), with each row's label and amount; kept in the data cache after the first fit."""
    import public_fraud

    cached = public_fraud.default_cache() / f"power-templates-{data}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return {k: (z[k] if z[k].ndim else z[k].item()) for k in z.files}
    t = _fit_templates(data)
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **t)
    return t


def _fit_templates(data: str) -> dict:
    import intervals  # the fitted pairs of benchmarks/intervals.py

    if data == "export":
        import public_fraud

        from domains.fraud.data import load

        try:
            frame = load(public_fraud.fetch(), public_fraud.MAPPING)
        except public_fraud.Unavailable as exc:
            raise SystemExit(f"the public export is not cached and cannot be downloaded: {exc}")
    else:
        from domains.fraud.data import generate

        frame = generate(0, 300_000)
    train, dev, hold = intervals.split_by_time(frame)
    rows = __import__("pandas").concat([dev, hold], ignore_index=True)
    cols = [c for c in intervals.v_columns(frame) if c in frame] + ["amount"]
    if len(cols) == 1:  # generated data has no V columns: amount and the row's hour
        for f in (train, rows):
            f["hour"] = f["ts"].dt.hour
        cols = ["amount", "hour"]
    y = train["is_fraud"].to_numpy()
    lr = intervals.fit_lr(train[cols[:5]], y)
    xa, xb = intervals.fit_xgb(train[cols], y, 0), intervals.fit_xgb(train[cols], y, 1)
    c_lr = intervals.contributions(rows, lr.predict_proba(rows[cols[:5]])[:, 1], 0.5)
    s_a, s_b = xa.predict_proba(rows[cols])[:, 1], xb.predict_proba(rows[cols])[:, 1]
    c_a, c_b = intervals.contributions(rows, s_a, 0.3), intervals.contributions(rows, s_b, 0.3)
    return {"good": c_a - c_lr, "seed": c_b - c_a, "label": rows["is_fraud"].to_numpy(),
            "amount": rows["amount"].to_numpy(dtype=float), "n_dev": len(dev), "n_hold": len(hold), "rows": len(rows)}


@dataclass
class Candidate:
    kind: str
    d: np.ndarray  # per population row
    truth: float
    memo: np.ndarray  # positions in the dev sample "caught" by copied literals, and their gains
    memo_gain: np.ndarray


def shifted(d: np.ndarray, target: float) -> np.ndarray:
    """d with its changed rows shifted so the population mean is exactly `target` (zeros stay zeros)."""
    nz = d != 0
    if not nz.any():
        return d
    out = d.copy()
    out[nz] += (target - d.mean()) * len(d) / nz.sum()
    return out


def propose(rng: np.random.Generator, t: dict, dev_idx: np.ndarray, se_unit: float) -> Candidate:
    kind = KINDS[rng.choice(len(KINDS), p=[p for _, p in KINDS])][0]
    source = t["good"] if kind == "true" else t["seed"]
    nz = np.flatnonzero(source)
    part = np.zeros_like(source)
    keep = nz[rng.random(len(nz)) < rng.uniform(0.3, 1.0)]
    part[keep] = source[keep]
    if kind == "true":
        target = rng.uniform(1.0, 2.0) * se_unit
    elif kind == "worse":
        target = -rng.uniform(0.0, 2.0) * se_unit
    else:
        target = 0.0
    d = shifted(part, target)
    memo = memo_gain = np.zeros(0)
    if kind == "overfit":  # frauds of the dev sample the champion missed, copied into rules
        frauds = np.flatnonzero(t["label"][dev_idx] == 1)
        if len(frauds):
            memo = rng.choice(frauds, size=min(len(frauds), int(rng.integers(3, 11))), replace=False)
            memo_gain = t["amount"][dev_idx[memo]]
    return Candidate(kind, d, float(d.mean()), memo, memo_gain)


@dataclass
class Procedure:
    name: str
    acc: np.ndarray  # the champion's summed kept changes, per population row
    reported: float = 0.0
    half_widths: list = field(default_factory=list)  # (below, above) the estimate, per keep
    steps_covered: list = field(default_factory=list)  # whether each keep's interval held its true gain
    answer: float = 0.0  # thresholdout: the champion's recorded answer over the baseline
    dev_memo: float = 0.0  # the champion's memorised dev gain (in its dev sum)
    truth: float = 0.0
    kept: list = field(default_factory=list)  # (kind, truth) of each keep
    looks: int = 0
    tests: int = 0
    passes: list = field(default_factory=list)
    budget: int = 0
    gamma: float = 0.0


def sample_stats(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def judge(p: Procedure, c: Candidate, dev_idx: np.ndarray, hold_idx: np.ndarray, half: int, seed: int) -> None:
    d_dev = c.d[dev_idx].copy()
    if len(c.memo):
        d_dev[c.memo] += c.memo_gain
    d_hold = c.d[hold_idx]
    p.looks += 1
    if p.name == "lord+guard" and len(c.memo):  # the contamination guard refuses literals copied from dev rows
        return
    if p.name == "dev-selected":
        if d_dev.mean() > 0:
            p.kept.append((c.kind, c.truth))
            p.truth += c.truth
            p.reported += float(d_dev.mean())
            p.acc += c.d
        return
    if p.name == "today":
        m, se = sample_stats(d_dev)
        alpha = 0.05 * 6 / (math.pi ** 2 * p.looks ** 2)
        if m - critical_z(alpha) * se <= 0 or p.budget <= 0:
            return
        base_dev, base_hold = p.acc[dev_idx] + d_dev, p.acc[hold_idx] + d_hold  # the gain over the baseline
        se_ref = gain_se(base_dev, np.zeros_like(base_dev), base_hold, np.zeros_like(base_hold))
        t_gain, h_gain = p.dev_memo + float(base_dev.mean()), float(base_hold.mean())
        p.tests += 1
        a = thresholdout(dev_gain=t_gain, holdout_gain=h_gain, threshold=1.0 * se_ref, sigma=0.1 * se_ref,
                         gamma=p.gamma * 0.1 * se_ref, budget_left=p.budget, seed=seed, query=p.tests)
        p.budget, p.gamma = a.budget_left, (a.next_gamma / (0.1 * se_ref) if se_ref > 0 else 0.0)
        step = 2.0 * gain_se(d_dev, np.zeros_like(d_dev), d_hold, np.zeros_like(d_hold))
        if a.answer > p.answer + step:
            p.kept.append((c.kind, c.truth))
            p.truth += c.truth
            p.reported = p.answer = a.answer
            p.acc += c.d
            p.dev_memo += float(c.memo_gain.sum()) / len(dev_idx)
        return
    m, se = sample_stats(d_dev[half:] if p.name == "lord-split" else d_dev)
    if m - Z95 * se <= 0 or p.budget <= 0:
        return
    p.tests += 1
    p.budget -= 1
    h = float(d_hold.mean())
    se_h = gain_se(d_dev, np.zeros_like(d_dev), d_hold, np.zeros_like(d_hold))
    level = lord_level(p.tests, p.passes, alpha=0.05, exponent=GAMMA_EXPONENT)
    crit = critical_z(level)
    z = h / se_h if se_h > 0 else 0.0
    if z >= crit:
        p.passes.append(p.tests)
        est, lo, hi = (v * se_h for v in selected_estimate(z, crit))
        p.kept.append((c.kind, c.truth))
        p.truth += c.truth
        p.reported += est
        p.half_widths.append((est - lo, hi - est))
        p.steps_covered.append(lo <= c.truth <= hi)
        p.acc += c.d


def one_run(args: tuple) -> dict:
    t, seed, experiments = args
    rng = np.random.default_rng(seed)
    pop = t["rows"]
    dev_idx = rng.integers(0, pop, t["n_dev"])
    hold_idx = rng.integers(0, pop, t["n_hold"])
    se_unit = float(np.std(t["good"]) / math.sqrt(t["n_hold"]))
    procs = [Procedure(n, np.zeros(pop), budget=20 if n == "today" else 100)
             for n in PROCEDURES]
    procs[0].gamma = draw_gamma(seed, 0, 1.0)
    half = t["n_dev"] // 2
    kinds = {k: 0 for k, _ in KINDS}
    for _ in range(experiments):
        c = propose(rng, t, dev_idx, se_unit)
        kinds[c.kind] += 1
        for p in procs:
            cc = c
            if p.name == "lord-split" and len(c.memo):  # traces show only the first half: only its rows are copied
                keep = c.memo < half
                cc = Candidate(c.kind, c.d, c.truth, c.memo[keep], c.memo_gain[keep])
            judge(p, cc, dev_idx, hold_idx, half, seed)
    out = {"kinds": kinds}
    for p in procs:
        real = sum(1 for k, v in p.kept if v > 0)
        false = len(p.kept) - real
        below, above = sum(b for b, _ in p.half_widths), sum(a for _, a in p.half_widths)
        out[p.name] = {"true_kept": real, "false_kept": false, "fdp": false / max(len(p.kept), 1),
                       "true_total": p.truth, "reported": p.reported, "error": p.reported - p.truth,
                       "covered": p.reported - below <= p.truth <= p.reported + above if p.half_widths else None,
                       "steps": len(p.steps_covered), "steps_covered": sum(p.steps_covered), "tests": p.tests}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--experiments", type=int, default=500)
    ap.add_argument("--data", choices=("export", "generated"), default="export")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    t = templates(args.data)
    fitted = time.perf_counter() - t0
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        runs = list(pool.map(one_run, [(t, args.seed * 100_000 + r, args.experiments) for r in range(args.runs)]))
    se_unit = float(np.std(t["good"]) / math.sqrt(t["n_hold"]))
    print(f"power over {args.runs} runs of {args.experiments} experiments on {args.data} rows ({t['rows']:,} "
          f"population rows, dev {t['n_dev']:,}, holdout {t['n_hold']:,}, {int(t['label'].sum())} positives); "
          f"one holdout SE of the real improvement {se_unit:.4f} per row; {platform.machine()}, {os.cpu_count()} "
          f"cores; templates {fitted:.0f} s, simulation {time.perf_counter() - t0 - fitted:.0f} s")
    kinds = {k: float(np.mean([r["kinds"][k] for r in runs])) for k, _ in KINDS}
    print("candidates per run (mean):", {k: round(v, 1) for k, v in kinds.items()})
    header = (f"{'procedure':<13} {'true kept':>9} {'false kept':>10} {'FDP':>6} {'true total':>10} "
              f"{'reported':>9} {'rep-true':>9} {'covered':>7} {'steps':>6} {'tests':>6}")
    print(header)
    summary = {}
    for name in PROCEDURES:
        rows = [r[name] for r in runs]
        s = {k: float(np.mean([x[k] for x in rows])) for k in ("true_kept", "false_kept", "fdp", "true_total",
                                                                "reported", "error", "tests")}
        judged = [x["covered"] for x in rows if x["covered"] is not None]  # runs that kept something
        s["covered"] = float(np.mean(judged)) if judged else float("nan")
        steps = sum(x["steps"] for x in rows)
        s["steps_covered"] = sum(x["steps_covered"] for x in rows) / steps if steps else float("nan")
        summary[name] = s
        print(f"{name:<13} {s['true_kept']:>9.2f} {s['false_kept']:>10.2f} {s['fdp']:>6.3f} {s['true_total']:>10.4f} "
              f"{s['reported']:>9.4f} {s['error']:>+9.4f} {s['covered']:>7.2f} {s['steps_covered']:>6.2f} "
              f"{s['tests']:>6.1f}")
    today = summary["today"]["true_kept"]
    print("true gains kept per run, relative to today's: " + ", ".join(
        f"{n} {summary[n]['true_kept'] / today:.1f} x" if today else f"{n} {summary[n]['true_kept']:.2f} vs 0"
        for n in PROCEDURES[1:]))
    print(json.dumps({"benchmark": "power", "data": args.data, "runs": args.runs, "experiments": args.experiments,
                      "se_unit": se_unit, "kinds": kinds, "procedures": summary}, sort_keys=True))


if __name__ == "__main__":
    main()
