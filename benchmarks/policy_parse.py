"""What a large policy.py costs before it ever runs: the parent-side work on one candidate's source.

A candidate is the fraud baseline padded with small helper functions up to a size (1 MB and 4 MB by default).
Each size runs in a fresh Python process that does what the loop does with one candidate's source before and
after the sandbox: the static check (scan, contract, HISTORY_DAYS), the look-back, the contamination scan of
literals, the tunables (tracking) and the offline proposer's read of the tunables. Printed per size: wall
and CPU seconds, peak RSS of the process (MB), and the static guard's detail (a refusal names the size and the limit).

    python benchmarks/policy_parse.py [--sizes-mb 0.99 4] [--max-policy-bytes 8000000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
from types import SimpleNamespace
sys.path.insert(0, {root!r})
from domains.history import lookback
from guards.contamination import scan_literals
from optimizer.workspace.config import parse_config
from optimizer.loop.stages.evaluate import static_check
from optimizer.base.tunables import parse as tunables

base = open({root!r} + "/domains/fraud/policy.py").read()
target = int({size!r})
pad, size, i = [], len(base), 0
while size < target:
    pad.append(f"\n\ndef helper_{{i}}(x):\n    y = x * 2 + {{i}}\n    return [y, y - 1, y + 1]\n")
    size += len(pad[-1])
    i += 1
source = base + "".join(pad)
settings = {{"domain": "fraud", **({{"static": {{"max_policy_bytes": {limit!r}}}}} if {limit!r} else {{}})}}
ctx = SimpleNamespace(config=parse_config(settings, source="bench"))
def cpu():
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime
started, cpu0 = time.perf_counter(), cpu()
static = static_check(ctx, source)
if static.passed:
    lookback(source)
    scan_literals(source, holdout_ids=frozenset())
    tunables(source)
    tunables(source)
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"bytes": len(source.encode()), "seconds": seconds, "cpu": cpu_seconds, "peak_mb": peak, "passed": static.passed,
                  "detail": static.detail[:160]}}))
"""


def measure(size: int, limit: int | None) -> dict:
    """One size in a fresh process (peak RSS is per process); `limit`: static.max_policy_bytes (None: default)."""
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), size=size, limit=limit)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[0.99, 4.0])
    parser.add_argument("--max-policy-bytes", type=int, default=None,
                        help="static.max_policy_bytes for the run (default: the config's), e.g. to time a 4 MB parse")
    args = parser.parse_args()
    print("| size | bytes | wall s | CPU s | peak RSS (MB) | static |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mb in args.sizes_mb:
        row = measure(int(mb * 1_000_000), args.max_policy_bytes)
        print(f"| {mb:g} MB | {row['bytes']:,} | {row['seconds']:.2f} | {row['cpu']:.2f} | {row['peak_mb']:.0f} | "
              f"{'passed' if row['passed'] else 'refused'}: {row['detail']} |")


if __name__ == "__main__":
    main()
