"""A soak: the loop runs for a set time while faults are injected, and nothing may be lost.

Each round does one of: a `ratchet try --keep` of an honest improvement killed at a gate or keep point, a `ratchet run` killed with SIGKILL at a random moment, one killed at a random named fault
point (RATCHET_FAULT), one that runs while a second runner tries the workspace (which must be refused with exit 75),
a crashing candidate (`ratchet try` of a policy whose fit raises: exit 1, recorded), and a run against an
unreachable MLflow server (exit 2, nothing recorded). After every round the workspace must tell one story: each
experiment id once with its folder, holdout queries numbered without gaps, none without its experiment, HEAD at the
champion's commit; `ratchet audit` runs every few rounds and at the end.

    .venv/bin/python benchmarks/soak.py --minutes 30 [--rows 20000] [--seed 0]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RATCHET = [sys.executable, "-c", "from optimizer.cli import main; main()"]
CRASHING = '"""A candidate whose fit raises."""\ndef fit(train):\n    raise RuntimeError("boom")\n\n' \
           'def decide(model, rows):\n    return rows["amount"] * 0\n'


def ratchet(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*RATCHET, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def story(ws: Path) -> list[str]:
    """What is inconsistent in the workspace now (nothing, when all is well)."""
    from holdout.ledger import Kind, Ledger
    from optimizer.workspace.layout import Workspace

    entries = Ledger(ws / "ledger.duckdb").entries()
    ids = [e.data["experiment"] for e in entries if e.kind == Kind.EXPERIMENT]
    problems = []
    if ids != [f"exp-{i:04d}" for i in range(1, len(ids) + 1)]:
        problems.append(f"experiment ids not each once in order: {ids[-5:]}")
    folders = sorted(p.name for p in (ws / "experiments").iterdir()) if (ws / "experiments").is_dir() else []
    if folders != ids:
        problems.append(f"folders {sorted(set(folders) ^ set(ids))} without entry or entry without folder")
    queries = [e.data["query"] for e in entries if e.kind == Kind.GATE]
    if queries != list(range(1, len(queries) + 1)):
        problems.append(f"holdout queries numbered {queries[-5:]}")
    orphans = {e.data.get("experiment") for e in entries if e.kind == Kind.GATE} - set(ids) - {None}
    if orphans:
        problems.append(f"holdout queries without their experiment: {sorted(orphans)}")
    state = json.loads((ws / "champion" / "state.json").read_text()) if (ws / "champion" / "state.json").is_file() \
        else None
    head = Workspace(ws).head()
    if state is not None and state.get("commit") != head:
        problems.append(f"HEAD {head[:12]} is not the champion's commit {str(state.get('commit'))[:12]}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    from optimizer.base.faults import FAULT_POINTS
    from optimizer.lifecycle.initialize import init_workspace

    points = [p for p in FAULT_POINTS if not p.startswith(("init:", "baseline:"))]
    tmp = Path(tempfile.mkdtemp(prefix="ratchet-soak-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from optimizer.base.tunables import parse, rewrite

    shipped = (ROOT / "domains" / "fraud" / "policy.py").read_text()
    assert {"N_ESTIMATORS", "MAX_DEPTH", "THRESHOLD"} <= {t.name for t in parse(shipped)}
    (tmp / "weak.py").write_text(rewrite(shipped, {"N_ESTIMATORS": 50, "MAX_DEPTH": 2, "THRESHOLD": 0.9}))
    ws = init_workspace("fraud", tmp / "ws", policy_file=tmp / "weak.py", overrides={
        "data.rows": args.rows, "decision.refits": 1, "seal.canaries": 4, "gate.budget": 1000}).workspace.root
    (tmp / "crashing.py").write_text(CRASHING)
    faults: collections.Counter = collections.Counter()
    outcomes: collections.Counter = collections.Counter()
    lost: list[str] = []
    audits = []
    start, rounds = time.monotonic(), 0
    run = ["run", str(ws), "--experiments", "3", "--proposer", "optuna"]

    def killed_at(point: str, *command: str) -> None:
        done = ratchet(*command, env={**env, "RATCHET_FAULT": point})
        if done.returncode == -signal.SIGKILL:
            faults[f"killed at {point}"] += 1
        else:
            outcomes[f"{point} not reached (exit {done.returncode})"] += 1

    while time.monotonic() - start < args.minutes * 60:
        rounds += 1
        kind = rng.choice(["kill", "fault", "keep", "second_runner", "crashing", "mlflow_down"])
        if kind == "keep":  # an honest improvement over the weak start, killed at a point of the gate or the keep
            point = rng.choice([p for p in points if p.startswith(("gate:", "keep:", "record:", "mlflow:"))])
            (tmp / "keep.py").write_text(shipped.replace("SEED = 0", f"SEED = {rng.randrange(1, 1000)}", 1))
            killed_at(point, "try", str(ws), str(tmp / "keep.py"), "--keep")
        elif kind == "kill":
            proc = subprocess.Popen([*RATCHET, *run], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(rng.uniform(0.5, 20.0))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                faults["sigkill at a random moment"] += 1
            proc.wait()
        elif kind == "fault":
            killed_at(rng.choice(points), *run)
        elif kind == "second_runner":
            proc = subprocess.Popen([*RATCHET, *run], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(3.0)
            if proc.poll() is None:
                second = ratchet("try", str(ws), str(tmp / "crashing.py"), env=env)
                faults["second runner"] += 1
                if second.returncode != 75:
                    lost.append(f"round {rounds}: a second runner was not refused (exit {second.returncode})")
            proc.wait()
        elif kind == "crashing":
            done = ratchet("try", str(ws), str(tmp / "crashing.py"), env=env)
            faults["crashing candidate"] += 1
            if done.returncode != 1:
                lost.append(f"round {rounds}: a crashing candidate gave exit {done.returncode}")
        else:
            done = ratchet(*run, env={**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
            faults["mlflow unreachable"] += 1
            if done.returncode != 2:
                lost.append(f"round {rounds}: an unreachable MLflow gave exit {done.returncode}")
        repaired = ratchet("repair", str(ws), env=env)  # what the next command does first
        if repaired.returncode != 0:
            lost.append(f"round {rounds} ({kind}): repair failed: {repaired.stderr.strip()[-300:]}")
        lost += [f"round {rounds} ({kind}): {p}" for p in story(ws)]
        if rounds % 10 == 0:
            audits.append(ratchet("audit", str(ws), env=env).returncode)
    audits.append(ratchet("audit", str(ws), env=env).returncode)
    from holdout.ledger import Kind, Ledger

    entries = Ledger(ws / "ledger.duckdb").entries()
    recorded = sum(e.kind == Kind.EXPERIMENT for e in entries)
    kept = sum(e.kind == Kind.EXPERIMENT and e.data.get("kept") for e in entries)
    print(f"soak: {args.minutes:g} min, {rounds} rounds, {sum(faults.values())} faults injected, {recorded} experiments "
          f"recorded ({kept} kept), {sum(e.kind == Kind.GATE for e in entries)} holdout queries")
    for name, n in sorted(faults.items()):
        print(f"  {n:4d}  {name}")
    for name, n in sorted(outcomes.items()):
        print(f"  {n:4d}  (no fault) {name}")
    print(f"audits: {len(audits)}, exit codes {sorted(set(audits))} (0 intact)")
    print(f"lost or inconsistent: {len(lost)}")
    for line in lost[:20]:
        print("  " + line)
    if lost or any(audits):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
