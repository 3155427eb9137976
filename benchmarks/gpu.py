"""The fraud baseline's XGBoost fit on CPU (hist, every core) and on CUDA, same seed, same rows: seconds and ROC-AUC
on the last fifth of the rows by time, at 1M and 10M generated rows; then one fit through the sandbox to check the
GPU path there (device found, memory limit, Landlock rules for the device files).

    .venv/bin/python benchmarks/gpu.py [--rows 1000000,10000000] [--trees 300]

Without a visible GPU the CUDA rows say so and the CPU figures are still printed. Goal: CUDA >= 5x faster than
CPU at 10M rows, AUC equal within noise (|diff| < 0.005); exit 1 when the AUCs differ more.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import types

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in the sandbox: spinning threads collapse a busy host


def load_policy(device: str, threads: int, trees: int) -> types.ModuleType:
    """The shipped baseline as a module with DEVICE, its thread count and size set (trusted code, exec'd here)."""
    from domains import get_domain

    source = get_domain("fraud").baseline_policy.read_text()
    source = source.replace('DEVICE = "auto"', f'DEVICE = "{device}"').replace("n_jobs=2", f"n_jobs={threads}")
    source = source.replace("N_ESTIMATORS = 300 ", f"N_ESTIMATORS = {trees} ")
    module = types.ModuleType(f"policy_{device}")
    exec(compile(source, "policy.py", "exec"), module.__dict__)
    return module


def cuda_visible() -> str | None:
    """None when XGBoost can train on CUDA here, else why not (XGBoost itself falls back to CPU with a warning)."""
    import xgboost

    from optimizer.sandbox._isolation import _gpu_visible  # what the sandbox server decides DEVICE="auto" by

    if not _gpu_visible():
        return "no NVIDIA device files visible"
    if not xgboost.build_info().get("USE_CUDA"):
        return "this XGBoost build has no CUDA"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,10000000")
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--sandbox-rows", type=int, default=1_000_000, help="rows of the sandboxed fit (0: skip)")
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from domains import get_domain

    domain = get_domain("fraud")
    threads = len(os.sched_getaffinity(0))
    no_gpu = cuda_visible()
    print(f"machine: {platform.machine()} {threads} cores, Python {platform.python_version()}; "
          f"GPU: {'none (' + no_gpu + ')' if no_gpu else 'visible to XGBoost'}", flush=True)
    worst = 0.0
    for rows in (int(r) for r in args.rows.split(",")):
        t0 = time.perf_counter()
        frame = domain.generate(0, rows).sort_values("ts", kind="stable").reset_index(drop=True)
        cut = int(len(frame) * 0.8)
        train, test = frame.iloc[:cut], frame.iloc[cut:].reset_index(drop=True)
        view = domain.policy_view(test, with_label=False)
        print(f"{rows:,} rows generated in {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        probe = load_policy("cpu", threads, args.trees)
        probe.features(train, probe.text_levels(train))
        features_s = time.perf_counter() - t0  # numpy on the CPU for both devices: the part CUDA cannot speed up
        print(f"  features (inside each fit, CPU either way) {features_s:.1f} s", flush=True)
        aucs = {}
        for device in ("cpu", "cuda"):
            if device == "cuda" and no_gpu:
                print(f"  cuda: skipped ({no_gpu})")
                continue
            policy = load_policy(device, threads, args.trees)
            t0 = time.perf_counter()
            model = policy.fit(train)
            fit_s = time.perf_counter() - t0
            aucs[device] = roc_auc_score(test["is_fraud"], policy.decide(model, view))
            print(f"  {device:<4} fit {fit_s:8.1f} s (booster about {max(fit_s - features_s, 0):.1f} s)  "
                  f"ROC-AUC {aucs[device]:.4f}", flush=True)
            aucs[f"{device}_s"], aucs[f"{device}_boost_s"] = fit_s, max(fit_s - features_s, 1e-3)
        if "cuda" in aucs:
            worst = max(worst, abs(aucs["cuda"] - aucs["cpu"]))
            print(f"  speed-up x{aucs['cpu_s'] / aucs['cuda_s']:.1f} (booster alone about "
                  f"x{aucs['cpu_boost_s'] / aucs['cuda_boost_s']:.1f}), AUC diff {aucs['cuda'] - aucs['cpu']:+.4f}")
    if args.sandbox_rows:
        from optimizer.sandbox import Sandbox

        frame = domain.generate(0, args.sandbox_rows)
        source = domain.baseline_policy.read_text().replace("n_jobs=2", f"n_jobs={threads}")
        with Sandbox(memory_mb=16384) as box:
            fitted = box.fit(source, domain.policy_view(frame, with_label=True), budget_s=900)
            print(f"sandbox: server device {box.device}, layers {', '.join(box.layers)}; fit {fitted.status} on "
                  f"{fitted.device} in {fitted.fit_seconds or 0:.1f} s{': ' + fitted.error if fitted.error else ''}")
    raise SystemExit(1 if worst >= 0.005 else 0)


if __name__ == "__main__":
    main()
