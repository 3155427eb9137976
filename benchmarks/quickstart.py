"""The README's whole quickstart, run as written: part 1 (`make demo`: the Makefile's `ratchet demo`), part 3 (a
shadow trial and a promotion on the demo workspace) and part 2 (your own CSV), each command timed, each line the
README shows held to what the command printed. `tests/test_quickstart.py` runs part 2 in the suite; parts 1 and 3
take minutes, so they are run here. Prints one line per command; exits 1 when a command fails or prints otherwise.

  .venv/bin/python benchmarks/quickstart.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._readme import blocks, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="ratchet-quickstart-"))
    folder.mkdir(parents=True, exist_ok=True)
    demo, csv, shadow = blocks()
    failed = 0
    for name, steps, where in (("1 demo", demo, folder), ("3 shadow", shadow, folder), ("2 csv", csv, folder / "csv")):
        where.mkdir(exist_ok=True)
        for step in steps:
            started = time.perf_counter()
            proc, missing = run(step, where, timeout=3600)
            ok = proc.returncode == 0 and not missing
            failed += not ok
            print(f"part {name:<9} {time.perf_counter() - started:7.1f} s  {'ok  ' if ok else 'FAIL'}  $ {step.command}",
                  flush=True)
            if not ok:
                print(f"  exit {proc.returncode}; not printed: {missing}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(f"quickstart: {'as written' if not failed else f'{failed} step(s) differ from the README'} ({folder})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
