"""Time and peak memory at 1M, 3M and 10M rows: init (generated data), init from a Parquet file, audit, and one
experiment.

For each size, each step is a real `ratchet` command in its own process, timed from start to exit, its peak
memory read from the kernel's accounting of the process and the children it waited for (ru_maxrss of wait4: the
largest single process, not a sum; an experiment's sandbox is one of those children):

  init      ratchet init fraud --rows N                         generate, split, contract, seal checks, seal
  import    ratchet init fraud --data tx.parquet --map ...      the same rows written to Parquet first (untimed)
  audit     ratchet audit WS                                    on the generated workspace
  baseline  ratchet try WS candidate.py --budget B              the first try also evaluates the baseline
  try       ratchet try WS candidate.py --budget B              one experiment alone (a second candidate)

All steps record to one MLflow sqlite store that a small untimed init migrates first, so the store's one-off
schema migration is in no figure. Candidates are the shipped fraud baseline with another THRESHOLD (every row is
still fitted and scored). `--runs K` repeats init, import and audit K times and reports the median; the two try
steps run once per size (each spends an experiment on the workspace).

    .venv/bin/python benchmarks/scale.py [--rows 1000000,3000000,10000000] [--runs 3] [--steps init,import,...]
                                         [--budget 3600] [--memory-mb MB] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RATCHET = [sys.executable, "-c", "from optimizer.cli import main; main()"]
STEPS = ("init", "import", "audit", "baseline", "try")
IMPORT_MAP = ["--label", "is_fraud", "--time", "ts", "--amount", "amount", "--id", "tx_id", "--entity",
              "customer_id", "--terminal", "terminal_id"]


def timed(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Seconds and peak GiB of one ratchet command; its output goes to `log`, and a failure stops the benchmark
    with the log's tail."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*RATCHET, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if code not in (0, 1):  # 1: a try whose candidate was rejected is still a measured experiment
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"ratchet {' '.join(args)} exited {code}:\n{tail}")
    return seconds, usage.ru_maxrss / 2**20  # KiB on Linux


def helper(code: str, env: dict[str, str]) -> None:
    """Run `code` in a Python child. This process stays small (the standard library only): every command it
    starts is forked from it, and Linux counts the RSS a child had before exec in its ru_maxrss, so a benchmark
    holding a 10M-row frame would add its own size to every figure (as an earlier version of this script did)."""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def candidate(workdir: Path, threshold: float, env: dict[str, str]) -> Path:
    path = workdir / f"threshold_{threshold}.py"
    helper("from domains import get_domain; from optimizer.base.tunables import rewrite; import pathlib; "
           f"pathlib.Path({str(path)!r}).write_text(rewrite(get_domain('fraud').baseline_policy.read_text(), "
           f"{{'THRESHOLD': {threshold}}}))", env)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,3000000,10000000", help="comma-separated row counts")
    ap.add_argument("--runs", type=int, default=3, help="repeats of init, import and audit (median reported)")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of: " + ", ".join(STEPS))
    ap.add_argument("--budget", type=float, default=3600.0, help="sandbox seconds per phase for the try steps")
    ap.add_argument("--memory-mb", type=int, default=None,
                    help="the sandbox's memory limit for the workspaces (sandbox.memory_mb; default: the config's)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="kept after the run (default: a temp dir, removed)")
    args = ap.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if {"audit", "baseline", "try"} & set(steps) and "init" not in steps:
        ap.error("--steps: audit, baseline and try run on the workspace that init makes; include init")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ratchet-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "PYTHONPATH": str(ROOT)}
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"steps {', '.join(steps)}; init/import/audit median of {args.runs}", flush=True)
    config = []
    if args.memory_mb:
        (workdir / "config.yaml").write_text(f"sandbox:\n  memory_mb: {args.memory_mb}\n")
        config = ["--config", str(workdir / "config.yaml")]
    timed(["init", "fraud", "--rows", "2000", "-w", str(workdir / "warm")], env, workdir / "warm.log")
    shutil.rmtree(workdir / "warm")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"this script's own peak: {own:.0f} MiB (each figure's floor: a child starts as a copy of it)", flush=True)
    print(f"{'rows':>11}  {'step':<9} {'seconds':>8} {'peak GiB':>9}  runs (s)", flush=True)
    try:
        for rows in sizes:
            ws = workdir / f"ws-{rows}"
            if "import" in steps:
                parquet = workdir / f"tx-{rows}.parquet"
                helper("from domains.fraud.data import generate; generate("
                       f"{args.seed}, {rows}).drop(columns=['fraud_scenario']).to_parquet({str(parquet)!r}, index=False)",
                       env)
            for step in steps:
                repeats = args.runs if step in ("init", "import", "audit") else 1
                figures = []
                for run in range(repeats):
                    if step in ("init", "import"):
                        target = ws if step == "init" else workdir / f"imported-{rows}"
                        shutil.rmtree(target, ignore_errors=True)
                        cmd = ["init", "fraud", "-w", str(target), "--seed", str(args.seed), *config]
                        cmd += ["--rows", str(rows)] if step == "init" else ["--data", str(parquet), *IMPORT_MAP]
                    elif step == "audit":
                        cmd = ["audit", str(ws)]
                    else:
                        policy = candidate(workdir, 0.12 if step == "baseline" else 0.15, env)
                        cmd = ["try", str(ws), str(policy), "--budget", str(args.budget)]
                    figures.append(timed(cmd, env, workdir / f"{step}-{rows}-{run}.log"))
                seconds = statistics.median(f[0] for f in figures)
                peak = max(f[1] for f in figures)
                runs = ", ".join(f"{f[0]:.1f}" for f in figures)
                said = (workdir / f"{step}-{rows}-{repeats - 1}.log").read_text().strip().splitlines()
                status = f"  ({said[-1]})" if step in ("baseline", "try") and said else ""
                print(f"{rows:>11,}  {step:<9} {seconds:>8.1f} {peak:>9.2f}  {runs}{status}", flush=True)
            shutil.rmtree(workdir / f"imported-{rows}", ignore_errors=True)
            (workdir / f"tx-{rows}.parquet").unlink(missing_ok=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
