"""The loop on the real public card-fraud export, judged on rows it never saw.

The export (284,807 transactions over two days, benchmarks/public_fraud.py) is cut by time: the last ~10 % of
its time range is held back (never sealed, never seen by the loop) and the first 90 % goes to `ratchet init`
(itself split into train, dev and a sealed holdout), started from a weak first model (logistic regression on the
amount and V1..V4, public_fraud.WEAK_POLICY). The loop runs over honest candidate files (public_fraud.
honest_candidates: the shipped XGBoost policy, and the same with class weights), then `--experiments N` of the
offline Optuna proposer; three contenders are fitted on the workspace's train rows and scored on the held-back rows:

  baseline   the weak first model as init committed it in the workspace
  champion   the workspace's policy.py after the run (the baseline again when nothing was kept)
  xgboost    a plain xgboost.XGBClassifier() with default settings on V1..V28 + amount, as a user would fit it

Metrics: ROC-AUC and PR-AUC of the scores; net savings per transaction (the fraud domain's definition: fraud
amount blocked minus the decline cost, 5.0, per legitimate transaction blocked, over all transactions) at the
policy's own THRESHOLD (0.5 for plain XGBoost); recall when alerting the top 3 % by score (the alert-rate
limit). The champion's gain over the baseline as the workspace reports it (selection-corrected, with its 90 %
interval) is printed beside a fresh score of that gain on the held-back rows. Policies are imported from their files and called as fit(train) / decide(model, rows) outside the
sandbox, on frames with the workspace's columns (the held-back CSV is read by the fraud importer).

    .venv/bin/python benchmarks/real_fraud.py [--experiments 5] [--workdir DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import public_fraud  # noqa: E402

HOLD_BACK = 0.10     # the last tenth of the time range
ALERT_LIMIT = 0.03   # the fraud domain's alert-rate capacity: the review team works the top 3 %
XGB_THRESHOLD = 0.5  # what predict() would use
RATCHET = str(Path(sys.executable).parent / "ratchet")


def cut_export(csv: Path, out: Path) -> tuple[Path, Path, float]:
    """first90.csv and heldback.csv in `out`, both with the export's columns and original Time seconds."""
    raw = pd.read_csv(csv)
    lo, hi = float(raw["Time"].min()), float(raw["Time"].max())
    cut = lo + (1 - HOLD_BACK) * (hi - lo)
    front, back = out / "first90.csv", out / "heldback.csv"
    raw[raw["Time"] < cut].to_csv(front, index=False)
    raw[raw["Time"] >= cut].to_csv(back, index=False)
    return front, back, cut


def ratchet(*args: str | Path, env: dict[str, str]) -> str:
    proc = subprocess.run([RATCHET, *map(str, args)], capture_output=True, text=True, env=env)
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise SystemExit(f"ratchet {args[0]} failed (exit {proc.returncode}):\n{said[-4000:]}")
    return said


def load_policy(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"contender_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PlainXGBoost:
    """A user's first model: XGBClassifier() defaults on the anonymised features and the amount."""

    THRESHOLD = XGB_THRESHOLD

    @staticmethod
    def columns(frame: pd.DataFrame) -> list[str]:
        return [c for c in frame.columns if c.startswith("V") and c[1:].isdigit()] + ["amount"]

    def fit(self, train: pd.DataFrame):
        import xgboost

        return xgboost.XGBClassifier().fit(train[self.columns(train)], train["is_fraud"].to_numpy())

    def decide(self, model, rows: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(rows[self.columns(rows)])[:, 1].astype(np.float64)


def contributions(scores: np.ndarray, threshold: float, rows: pd.DataFrame, decline_cost: float) -> np.ndarray:
    from domains import Decisions, get_domain

    return get_domain("fraud").contributions(rows, Decisions(scores, {"THRESHOLD": threshold}),
                                             {"decline_cost": decline_cost})


def reported_gain(entries: list) -> tuple[float, float, float]:
    """The workspace's reported gain of its champion over the baseline and its 90 % interval: the sum of the kept
    steps' selection-corrected estimates and of their intervals' ends."""
    steps = [e.data["gate"] for e in entries if e.kind == "experiment" and e.data.get("kept")]
    return (sum(g["estimate"] for g in steps), sum(g["lower"] for g in steps), sum(g["upper"] for g in steps))


def measure(scores: np.ndarray, threshold: float, rows: pd.DataFrame, decline_cost: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    fraud = rows["is_fraud"].to_numpy() == 1
    contrib = contributions(scores, threshold, rows, decline_cost)
    blocked = scores >= threshold
    top = np.argsort(-scores, kind="stable")[:int(round(ALERT_LIMIT * len(scores)))]
    return {
        "roc_auc": float(roc_auc_score(fraud, scores)),
        "pr_auc": float(average_precision_score(fraud, scores)),
        "net_savings": float(contrib.mean()),
        "recall_at_3pct": float(fraud[top].sum() / fraud.sum()),
        "threshold": float(threshold),
        "alert_rate": float(blocked.mean()),
        "recall_at_threshold": float((blocked & fraud).sum() / fraud.sum()),
        "false_declines": int((blocked & ~fraud).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=5,
                    help="loop experiments of the offline Optuna proposer after the candidate files")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="folder for the cut files, the workspace and MLflow (default: a new temporary folder, kept)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="where the export is cached (default: $RATCHET_DATA_CACHE or ~/.cache/ratchet)")
    args = ap.parse_args()

    import yaml

    from domains._importing import START_EPOCH
    from domains.fraud.data import load
    from holdout.ledger import Ledger

    t_start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="real-fraud-"))
    work.mkdir(parents=True, exist_ok=True)
    ws = work / "ws"
    if ws.exists() and any(ws.iterdir()):
        raise SystemExit(f"{ws} is not empty; give another --workdir.")
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{work.resolve() / 'mlflow.db'}"}
    try:
        csv = public_fraud.fetch(args.cache)
    except public_fraud.Unavailable as exc:
        raise SystemExit(f"the public export is not cached and cannot be downloaded: {exc}")
    front, back, cut = cut_export(csv, work)

    seconds = {}
    t0 = time.perf_counter()
    config = public_fraud.write_config(work / "fraud.yaml")
    weak = work / "weak.py"
    weak.write_text(public_fraud.WEAK_POLICY)
    init_said = ratchet("init", "fraud", "-w", ws, "--data", front, "--label", "Class", "--time", "Time",
                        "--amount", "Amount", "--config", config, "--policy", weak, env=env)
    seconds["init"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    patches = work / "candidates"
    patches.mkdir(exist_ok=True)
    candidates = public_fraud.honest_candidates()
    for name, source in candidates:
        (patches / name).write_text(source)
    run_said = ratchet("run", ws, "--proposer", "patches", "--patches", patches, "--experiments",
                       str(len(candidates)), env=env)
    if args.experiments:
        run_said = ratchet("run", ws, "--experiments", str(args.experiments), "--proposer", "optuna", env=env)
    seconds["run"] = time.perf_counter() - t0

    entries = Ledger(ws / "ledger.duckdb").entries()
    baseline_commit = next(e for e in entries if e.kind == "baseline").data["commit"]
    experiments = [e.data for e in entries if e.kind == "experiment"]
    kept = [x["experiment"] for x in experiments if x.get("kept")]
    contenders_dir = work / "contenders"
    contenders_dir.mkdir(exist_ok=True)
    baseline_file = contenders_dir / "baseline.py"
    baseline_file.write_text(subprocess.run(["git", "-C", str(ws), "show", f"{baseline_commit}:policy.py"],
                                            capture_output=True, text=True, check=True).stdout)
    champion_file = contenders_dir / "champion.py"
    champion_file.write_text((ws / "policy.py").read_text())

    settings = yaml.safe_load((ws / "ratchet.yaml").read_text())
    decline_cost = float(settings["scoring"]["decline_cost"])
    mapping = settings["data"]["mapping"]
    train = pd.read_parquet(ws / "data" / "train.parquet")
    held = load(back, mapping)
    held["tx_id"] = held["tx_id"] + int(train["tx_id"].max()) + 10**6  # row numbers of another file: keep ids apart
    dev_end = pd.read_parquet(ws / "data" / "dev.parquet")["ts"].max()
    # The sealed holdout follows dev and ends with first90.csv, before the cut (its rows are not read here).
    front_end = START_EPOCH + pd.Timedelta(seconds=float(pd.read_csv(front, usecols=["Time"])["Time"].max()))
    if not held["ts"].min() > max(train["ts"].max(), dev_end, front_end):
        raise SystemExit(f"held-back rows start at {held['ts'].min()}, inside the workspace's time range")
    rows = held.drop(columns=["is_fraud"])

    table, fitted, scored = {}, {}, {}
    base_policy = load_policy(baseline_file, "baseline")
    champ_policy = load_policy(champion_file, "champion")
    same = champion_file.read_text() == baseline_file.read_text()  # nothing kept: one fit serves both
    for name, policy, threshold in (("baseline", base_policy, float(base_policy.THRESHOLD)),
                                    ("champion", champ_policy, float(champ_policy.THRESHOLD)),
                                    ("xgboost", PlainXGBoost(), XGB_THRESHOLD)):
        t0 = time.perf_counter()
        if name == "champion" and same:
            scores = scored["baseline"]
        else:
            model = policy.fit(train)
            scores = np.asarray(policy.decide(model, rows), dtype=np.float64)
        scored[name] = scores
        fitted[name] = time.perf_counter() - t0
        table[name] = measure(scores, threshold, held, decline_cost)
        table[name]["fit_decide_s"] = round(fitted[name], 1)
    seconds["contenders"] = sum(fitted.values())
    seconds["total"] = time.perf_counter() - t_start

    diff = (contributions(scored["champion"], float(champ_policy.THRESHOLD), held, decline_cost)
            - contributions(scored["baseline"], float(base_policy.THRESHOLD), held, decline_cost))
    fresh = float(diff.mean())
    fresh_half = 1.6449 * float(diff.std(ddof=1)) / np.sqrt(len(diff))
    reported, rep_lo, rep_hi = reported_gain(entries)
    frame = pd.DataFrame(table).T
    print(f"public card-fraud export, {platform.machine()}, {os.cpu_count()} cores; workdir {work}")
    print(init_said.splitlines()[0])
    print(next((ln for ln in init_said.splitlines() if ln.startswith("workspace ")), ""))
    print(f"held back (never sealed, never seen by the loop): Time >= {cut:.0f} s, {len(held):,} rows, "
          f"{int(held['is_fraud'].sum())} frauds, {held['ts'].min():%Y-%m-%d %H:%M} to {held['ts'].max():%Y-%m-%d %H:%M}"
          f"; the workspace's rows end {front_end:%Y-%m-%d %H:%M:%S}, dev ends {dev_end:%Y-%m-%d %H:%M:%S}")
    print(f"loop: {len(experiments)} experiments, kept {kept or 'none'}; {run_said.splitlines()[-1]}")
    shown = {c: (lambda v: f"{v:.0f}") if c == "false_declines" else (lambda v: f"{v:.1f}") if c.endswith("_s")
             else (lambda v: f"{v:.4f}") for c in frame.columns}
    print(frame.to_string(formatters=shown))
    within = fresh - fresh_half <= reported <= fresh + fresh_half
    print(f"champion over baseline: reported {reported:+.4f} (90 % interval {rep_lo:+.4f} to {rep_hi:+.4f}); fresh "
          f"score on the held-back rows {fresh:+.4f} (90 % interval {fresh - fresh_half:+.4f} to "
          f"{fresh + fresh_half:+.4f}); the reported gain is {'within' if within else 'OUTSIDE'} the fresh interval")
    print("seconds:", {k: round(v, 1) for k, v in seconds.items()})
    print(json.dumps({"benchmark": "real_fraud", "experiments": len(experiments), "kept": kept,
                      "held_back_rows": int(len(held)), "held_back_frauds": int(held["is_fraud"].sum()),
                      "cut_seconds": cut, "contenders": table, "seconds": seconds,
                      "reported_gain": [reported, rep_lo, rep_hi], "fresh_gain": [fresh, fresh - fresh_half,
                                                                                  fresh + fresh_half]}, sort_keys=True))


if __name__ == "__main__":
    main()
