"""Where `ratchet init` spends its time and memory, stage by stage: generate or import, contract, leakage, split
with the seal-time checks, writing, sealing, recording.

One in-process init (a temporary workspace, an MLflow sqlite store beside it). A thread samples the process's RSS
every 5 ms; each line is one stage as `init` names it in its progress messages: its seconds, the peak RSS while it
ran and the RSS after it. The last line is the kernel's peak for the whole process (ru_maxrss).

    .venv/bin/python benchmarks/init_stages.py --rows 10000000              # generated fraud rows
    .venv/bin/python benchmarks/init_stages.py --data tx.parquet            # a file in the generator's columns
    .venv/bin/python benchmarks/init_stages.py --rows 10000000 --write-data tx.parquet   # write such a file first
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MAPPING = {"label": "is_fraud", "time": "ts", "amount": "amount", "id": "tx_id", "entity": "customer_id",
           "terminal": "terminal_id"}
GIB = 2**30


class Sampler:
    """The process's RSS, every `every` seconds, on a daemon thread; `stage()` closes one stage and prints it."""

    def __init__(self, every: float = 0.005) -> None:
        import psutil

        self.process, self.every, self.peak = psutil.Process(), every, 0
        self.started, self.name = time.perf_counter(), "start-up (imports)"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every)

    def stage(self, next_name: str) -> None:
        now, rss = time.perf_counter(), self.process.memory_info().rss
        print(f"{now - self.started:8.2f}  {max(self.peak, rss) / GIB:8.2f}  {rss / GIB:9.2f}  {self.name}", flush=True)
        self.started, self.name, self.peak = now, next_name, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (without --data)")
    ap.add_argument("--data", type=Path, help="import this CSV/Parquet file (the generator's column names)")
    ap.add_argument("--write-data", type=Path, help="generate --rows rows into this Parquet file, then exit")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.write_data:
        from domains.fraud.data import generate

        generate(args.seed, args.rows).drop(columns=["fraud_scenario"]).to_parquet(args.write_data, index=False)
        print(f"wrote {args.write_data}")
        return
    workdir = Path(tempfile.mkdtemp(prefix="ratchet-init-stages-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{'import ' + str(args.data) if args.data else f'{args.rows:,} generated rows'}")
    print(f"{'seconds':>8}  {'peak GiB':>8}  {'after GiB':>9}  stage", flush=True)
    sampler = Sampler()
    import optimizer  # noqa: F401 - the Arrow pool ratchet's processes use
    from optimizer.lifecycle.initialize import init_workspace

    overrides = ({"data.source": "file", "data.file": str(args.data), "data.mapping": MAPPING} if args.data
                 else {"data.rows": args.rows, "data.seed": args.seed})
    try:
        init_workspace("fraud", workdir / "ws", overrides=overrides, progress=sampler.stage)
        sampler.stage("")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"process peak (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
