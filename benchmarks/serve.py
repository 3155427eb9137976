"""What one decision costs through `ratchet serve`: the real server (uvicorn, in its own process) on a small
fraud workspace, called over HTTP with keep-alive from this process. Single events: latency per request
(p50, p99); batches of 1,000: events per second. Each run sends both; the figures are the median of the runs.
The server's own figure (`latency_ms`: the sandbox decide alone, in the policy's warm decide worker) is printed
beside the client's, and one decide without HTTP is timed in a worker and in a fresh child.

Every request carries new events (ids never seen, times after dev), so each reads its customers' and terminals'
history and is appended to history.duckdb before it is answered. `--history` grows the store first to that many
events with copies of train and dev under other customer, terminal and transaction ids: the index holds them all,
and each request's customers keep a realistic history.

`--mlflow` also serves the baseline's registered version (its signature, a warm sandboxed worker) with `mlflow
models serve` and sends it the same events, once, as `dataframe_records` (it passes the policy no history).

`--shadow-slow-ms MS` measures instead what a shadow trial costs the acting policy: the same single-event requests,
first with no trial running, then (a second server, same workspace) with a trial whose challenger sleeps MS in every
decide; the acting policy's per-request p50/p99 both ways, and what the challenger logged or dropped meanwhile.

    .venv/bin/python benchmarks/serve.py [--rows 30000] [--history 1000000] [--singles 200] [--batches 20] [--runs 3]
                                         [--mlflow] [--shadow-slow-ms 160]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_workspace(root: Path, rows: int, register: bool = False) -> Path:
    """A sealed fraud workspace with its baseline evaluated (no refits: serving needs only the champion); `register`:
    recorded in MLflow too, which registers it as version 1."""
    from optimizer.lifecycle.initialize import init_workspace
    from optimizer.loop.run import ensure_baseline
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox
    from optimizer.tracking.runs import open_tracker

    ws = init_workspace("fraud", root / "ws", overrides={"data.rows": rows}).workspace.root
    ctx = load_context(ws)
    ctx.config = ctx.config.model_copy(update={"decision": ctx.config.decision.model_copy(update={"refits": 0})})
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        ensure_baseline(ctx, sandbox, open_tracker(ctx) if register else None)
    return ws


def grow_history(ws: Path, events: int) -> int:
    """Append copies of train's and dev's events under other ids to history.duckdb until it holds `events`."""
    import duckdb

    from optimizer.workspace.history import FILE

    with duckdb.connect(str(ws / FILE)) as con:
        base = con.execute("SELECT * FROM events").df()
        held, copy = len(base), 1
        while held < events:
            part = base.head(events - held).copy()
            for col in ("tx_id", "customer_id", "terminal_id"):
                part[col] = part[col] + copy * 10**9
            con.append("events", part)
            held, copy = held + len(part), copy + 1
        return held


def request_bodies(ws: Path, size: int, count: int, first: int) -> list[bytes]:
    """`count` JSON bodies of `size` new events each: dev rows (cycled) moved past the end of dev, ids from
    `first` on (the policy view, no label)."""
    import pandas as pd

    from optimizer.records.context import load_context

    ctx = load_context(ws)
    view = ctx.domain.policy_view(ctx.dev, with_label=False)
    picked = view.iloc[[i % len(view) for i in range(size * count)]].reset_index(drop=True)
    span = ctx.dev["ts"].max() - ctx.dev["ts"].min() + pd.Timedelta(days=1)
    picked["ts"] = picked["ts"] + span * (1 + picked.index // len(view))
    picked["tx_id"] = first + picked.index
    rows = json.loads(picked.to_json(orient="records", date_format="iso", date_unit="ns"))
    return [json.dumps({"rows": rows[i * size:(i + 1) * size]}).encode() for i in range(count)]


def sandbox_breakdown(ws: Path, count: int) -> dict[str, float]:
    """Median ms of one decide of 1 row without HTTP: in a fresh sandboxed child per call (what the trial and the
    loop use), in a persistent worker (what serve uses), and of the policy's own decide inside the worker."""
    from optimizer.records.context import load_context
    from optimizer.sandbox import Sandbox

    ctx = load_context(ws)
    view = ctx.domain.policy_view(ctx.dev, with_label=False)
    source = ctx.ws.champion_source()
    fresh, worker_ms, inside = [], [], []
    with Sandbox(memory_mb=ctx.config.sandbox.memory_mb) as sandbox:
        model = sandbox.fit(source, ctx.domain.policy_view(ctx.train, with_label=True), budget_s=60).model
        with sandbox.worker(source, model, budget_s=60) as worker:
            for i in range(count):
                t0 = time.perf_counter()
                sandbox.decide(source, model, {"rows": view.iloc[i:i + 1]}, budget_s=60,
                               constants=ctx.domain.constants)
                fresh.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                result = worker.decide(view.iloc[i:i + 1], budget_s=60, constants=ctx.domain.constants)
                worker_ms.append((time.perf_counter() - t0) * 1000)
                inside.append(result.decide_seconds * 1000)
    return {"fresh": statistics.median(fresh[5:]), "worker": statistics.median(worker_ms[5:]),
            "policy": statistics.median(inside[5:])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ws: Path, port: int, log: Path) -> subprocess.Popen:
    """`ratchet serve` in its own process; returns once /health answers."""
    command = [sys.executable, "-c", "from optimizer.cli import main; main()", "serve", str(ws), "--port", str(port)]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}): {log.read_text()[-2000:]}")
        try:
            status, _ = call(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "GET", "/health")
            if status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not answer /health in 300 s: {log.read_text()[-2000:]}")


def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    conn.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def timed(conn: http.client.HTTPConnection, bodies: list[bytes]) -> tuple[list[float], list[float]]:
    """Client wall time and the server's decide latency of each request, in ms."""
    walls, inside = [], []
    for body in bodies:
        t0 = time.perf_counter()
        status, answer = call(conn, "POST", "/decide", body)
        walls.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"POST /decide answered {status}: {answer}")
        inside.append(answer["latency_ms"])
    return walls, inside


def mlflow_serving(ws: Path, log: Path, per_run: list, batch_size: int) -> dict[str, float]:
    """`mlflow models serve` of the registered baseline (local env): the first request (it starts the sandbox and the
    worker), then the first run's single events and batches, client wall times in ms."""
    import signal

    from holdout.ledger import Kind, Ledger

    entry = Ledger(ws / "ledger.duckdb").last(Kind.MODEL).data
    port, scripts = free_port(), Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}  # it runs the venv's uvicorn
    command = [str(scripts / "mlflow"), "models", "serve", "-m", f"models:/{entry['name']}/{entry['version']}",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow models serve did not answer /ping: {log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("GET", "/ping")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        records = [[json.dumps({"dataframe_records": json.loads(b)["rows"]}).encode() for b in bodies]
                   for bodies in per_run[0]]
        walls = []
        for body in records[0] + records[1]:
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers={"content-type": "application/json"})
            answer = conn.getresponse().read()
            walls.append((time.perf_counter() - t0) * 1000)
            if b'"predictions"' not in answer[:20]:
                raise SystemExit(f"POST /invocations answered: {answer[:500]!r}")
        singles, batches = walls[1:len(records[0])], walls[len(records[0]):]
        return {"first_s": walls[0] / 1000, "p50": percentile(singles[9:], 50), "p99": percentile(singles[9:], 99),
                "rate": len(batches) * batch_size / (sum(batches) / 1000), "batch_p50": percentile(batches, 50)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def slow_challenger(ws: Path, slow_ms: float) -> str:
    """A commit of the baseline's policy.py that sleeps `slow_ms` in every decide (a slow dependency), with `time`
    allowed by a recorded config change; the workspace stays at its champion (the commit is not checked out)."""
    from optimizer.lifecycle.config_events import change_config
    from optimizer.records.context import load_context

    ctx = load_context(ws)
    allowed = [*ctx.config.static.allowed_imports, "time"]
    change_config(ws, {"static.allowed_imports": allowed}, approved_by="benchmarks/serve.py",
                  reason="a challenger that sleeps in decide, to measure shadowing")
    head = "def decide(model, rows, history):\n"
    policy = ws / "policy.py"
    source = policy.read_text()
    if head not in source or "import numpy as np\n" not in source:
        raise SystemExit(f"{policy}: no `{head.strip()}` or numpy import to slow down")
    slow = source.replace("import numpy as np\n", "import time\n\nimport numpy as np\n", 1)
    policy.write_text(slow.replace(head, f"{head}    time.sleep({slow_ms / 1000!r})\n", 1))
    ctx.ws.git("commit", "-qam", f"a challenger that sleeps {slow_ms:g} ms per decide")
    commit = ctx.ws.git("rev-parse", "HEAD").strip()
    ctx.ws.git("reset", "-q", "--hard", "HEAD~1")
    return commit


def set_trial(ws: Path, challenger: str | None) -> None:
    """A running trial of `challenger` against the acting policy in shadow.duckdb, or (None) no trial."""
    import pandas as pd

    from optimizer.records.context import load_context
    from optimizer.records.refs import acting
    from optimizer.release.shadow.store import ShadowStore, Trial

    store = ShadowStore(ws / "shadow.duckdb")
    store.forget("trial-0001")
    if challenger is not None:
        ctx = load_context(ws)
        champion = acting(ctx, ctx.ledger.entries())[0]
        store.add_trial(Trial("trial-0001", "2025-07-01T00:00:00+00:00", champion.commit, challenger,
                              challenger[:12], "0" * 64),
                        pd.DataFrame({"event_id": ["benchmark"], "ts": [pd.Timestamp("2025-07-01")]}))


def singles_per_run(ws: Path, port: int, log: Path, bodies: list[list[bytes]]) -> tuple[list[dict], dict, float]:
    """Serve `ws`, send each run's single-event requests (10 warm-up, then the rest) over one keep-alive connection;
    per run the client's p50/p99 in ms, then /health after the last run and the seconds the server took to stop."""
    server = start_server(ws, port, log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        runs = []
        for singles in bodies:
            timed(conn, singles[:10])
            walls, inside = timed(conn, singles[10:])
            runs.append({"p50": percentile(walls, 50), "p99": percentile(walls, 99),
                         "decide_p50": percentile(inside, 50)})
        _, health = call(conn, "GET", "/health")
    finally:
        t0 = time.perf_counter()
        server.terminate()
        server.wait(timeout=120)
    return runs, health, time.perf_counter() - t0


def shadow_cost(args: argparse.Namespace) -> None:
    """The acting policy's single-event latency without and with a slow challenger shadowed, in one invocation; the
    two alternate run by run (a server each), so a change of load on the host touches both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        ws = build_workspace(tmp, args.rows)
        held = grow_history(ws, args.history)
        challenger = slow_challenger(ws, args.shadow_slow_ms)
        alone, shadowed, stops = [], [], []
        for k in range(args.runs):
            for i, (mode, runs) in enumerate((("alone", alone), ("shadowed", shadowed))):
                set_trial(ws, challenger if mode == "shadowed" else None)
                bodies = request_bodies(ws, 1, args.singles + 10, 10**15 + (2 * k + i) * 10**7)
                done, health, stop_s = singles_per_run(ws, free_port(), tmp / f"serve-{mode}.log", [bodies])
                runs += done
                if mode == "shadowed":
                    stops.append(stop_s)
                    trial = health["trial"] or {}
                    if not trial.get("shadowing"):
                        raise SystemExit(f"the trial was not shadowed: {trial}")
    med = {mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for mode, runs in (("alone", alone), ("shadowed", shadowed))}
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"sandbox layers: {', '.join(health['sandbox']['layers'])}")
    print(f"workspace: {args.rows:,} generated transactions, {held:,} events in history.duckdb; {args.singles} "
          f"single-event requests per run over one keep-alive connection, median of {args.runs} runs")
    for mode, what in (("alone", "no trial running"),
                       ("shadowed", f"a trial running, its challenger sleeping {args.shadow_slow_ms:g} ms per decide")):
        m = med[mode]
        print(f"{what}: acting policy p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms (sandbox decide alone p50 "
              f"{m['decide_p50']:.1f} ms)")
        for i, r in enumerate(alone if mode == "alone" else shadowed, 1):
            print(f"  run {i}: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms")
    ratio = med["shadowed"]["p50"] / med["alone"]["p50"]
    print(f"p50 shadowed / alone: {ratio:.2f} (goal <= 1.20); challenger at the last /health: "
          + ", ".join(f"{k} {trial[k]}" for k in trial if isinstance(trial[k], int) and not isinstance(trial[k], bool))
          + f"; server stop up to {max(stops):.1f} s (the queue drains for at most 10 s)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=30_000, help="generated transactions in the workspace")
    ap.add_argument("--history", type=int, default=1_000_000, help="events in history.duckdb when the server starts")
    ap.add_argument("--singles", type=int, default=200, help="single-event requests per run")
    ap.add_argument("--batches", type=int, default=20, help="requests of --batch-size events per run")
    ap.add_argument("--batch-size", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mlflow", action="store_true", help="also time `mlflow models serve` of the registered baseline")
    ap.add_argument("--shadow-slow-ms", type=float, default=0.0,
                    help="instead: single events without and with a trial whose challenger sleeps this long per decide")
    args = ap.parse_args()
    if args.shadow_slow_ms > 0:
        shadow_cost(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        ws = build_workspace(tmp, args.rows, register=args.mlflow)
        bare = sandbox_breakdown(ws, 55)
        held = grow_history(ws, args.history)
        # Every run sends new events (later than the last run's): each request reads history and is appended.
        per_run = [(request_bodies(ws, 1, args.singles + 10, 10**15 + k * 10**7),
                    request_bodies(ws, args.batch_size, args.batches, 10**15 + k * 10**7 + 10**6))
                   for k in range(args.runs)]
        port = free_port()
        t0 = time.perf_counter()
        server = start_server(ws, port, tmp / "serve.log")
        start_s = time.perf_counter() - t0
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            _, health = call(conn, "GET", "/health")
            runs = []
            for singles, batches in per_run:
                timed(conn, singles[:10])  # warm-up: first forks, page cache
                walls, inside = timed(conn, singles[10:])
                t0 = time.perf_counter()
                batch_walls, batch_inside = timed(conn, batches)
                rate = args.batches * args.batch_size / (time.perf_counter() - t0)
                runs.append({"p50": percentile(walls, 50), "p99": percentile(walls, 99),
                             "decide_p50": percentile(inside, 50), "rate": rate,
                             "batch_p50": percentile(batch_walls, 50),
                             "batch_decide_p50": percentile(batch_inside, 50)})
        finally:
            server.terminate()
            server.wait(timeout=60)
        served = mlflow_serving(ws, tmp / "mlflow-serve.log", per_run, args.batch_size) if args.mlflow else None

    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"sandbox layers: {', '.join(health['sandbox']['layers'])}")
    print(f"workspace: {args.rows:,} generated transactions, {held:,} events in history.duckdb at start; server "
          f"start (load, verify, history index, fit) {start_s:.1f} s; median of {args.runs} runs")
    print(f"single event ({args.singles} requests): p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms "
          f"(sandbox decide alone p50 {med['decide_p50']:.1f} ms); goal p50 <= 10 ms, p99 <= 50 ms")
    print(f"batches of {args.batch_size:,} ({args.batches} requests): {med['rate']:,.0f} events/s, "
          f"{med['batch_p50']:.1f} ms per request (sandbox decide alone {med['batch_decide_p50']:.1f} ms); "
          f"goal >= 5,000 events/s")
    print(f"one decide of 1 row without HTTP: {bare['worker']:.1f} ms in the warm worker serve uses, of which the "
          f"policy's own decide {bare['policy']:.1f} ms; {bare['fresh']:.1f} ms in a fresh sandboxed child (fork, "
          "containment, policy load, model unpickle, Parquet hand-off)")
    for i, r in enumerate(runs, 1):
        print(f"  run {i}: single p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms; batches {r['rate']:,.0f} events/s")
    if served:
        print(f"mlflow models serve (the registered baseline, no history; run 1's events): first request "
              f"{served['first_s']:.1f} s (sandbox and worker start); single event p50 {served['p50']:.1f} ms, p99 "
              f"{served['p99']:.1f} ms; batches of {args.batch_size:,}: {served['rate']:,.0f} events/s, "
              f"{served['batch_p50']:.1f} ms per request")


if __name__ == "__main__":
    main()
