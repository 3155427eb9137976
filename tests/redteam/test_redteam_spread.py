"""Failures that spread: one bad request, value or record must fail alone, never the requests, rows or pages
around it.

- serve: a request that overruns its budget ends the decide worker; requests queued behind it get a fresh worker
  and are answered (only the overrun gets its 503);
- serve: times outside what the time column holds (year 1, 9999, 10000) and numbers that overflow their column
  are a 422 naming the row and the column, never a 500;
- report: text from records (a hypothesis with TeX in it) reaches plots as text, and a plot that cannot be drawn
  leaves the report whole with that plot's place saying why.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from holdout.ledger import Kind
from optimizer.release.serve_http import make_app
from optimizer.release.serve_rows import Refused
from tests.optimizer.test_serve import _commit_aside, served_ws  # noqa: F401 - the module-scoped served workspace

MARK = 4242.4242  # an amount no generated row has: the policy below sleeps on it
SLEEP_S = 120  # far past the budget: the sandbox ends the decide, not the sleep
BUDGET_S = 5.0  # the decide budget while the tests run (the fit used the workspace's)


def slow_on_mark(source: str) -> str:
    """The fraud baseline, sleeping SLEEP_S in decide when a row's amount is MARK and answering at once otherwise."""
    head = "def decide(model, rows, history):\n"
    assert head in source
    return source.replace("import xgboost\n", "import time\n\nimport xgboost\n", 1).replace(
        head, f"{head}    if (rows['amount'] == {MARK}).any():\n        time.sleep({SLEEP_S})\n", 1)


@pytest.fixture(scope="module")
def slow_ws(served_ws, tmp_path_factory) -> Path:  # noqa: F811 - the fixture imported above
    """A copy of the served workspace whose acting policy (promoted) sleeps on the marked row."""
    from optimizer.lifecycle.config_events import change_config
    from optimizer.records.context import load_context

    root = tmp_path_factory.mktemp("spread") / "ws"
    shutil.copytree(served_ws, root)
    ctx = load_context(root)
    change_config(root, {"static.allowed_imports": [*ctx.config.static.allowed_imports, "time"]},
                  approved_by="test", reason="a policy that sleeps on one marked row")
    commit = _commit_aside(root, slow_on_mark((root / "policy.py").read_text()))
    load_context(root).ledger.append(Kind.PROMOTION, {"commit": commit, "approved_by": "test"})
    return root


@pytest.fixture(scope="module")
def slow_client(slow_ws):
    with TestClient(make_app(slow_ws)) as c:
        service = c.app.state.service
        config = service.ctx.config
        service.ctx.config = config.model_copy(update={"sandbox": config.sandbox.model_copy(
            update={"budget_s": BUDGET_S})})
        yield c


def _rows(client, n: int) -> list[dict]:
    ctx = client.app.state.service.ctx
    view = ctx.domain.policy_view(ctx.dev, with_label=False).head(n)
    return json.loads(view.to_json(orient="records", date_format="iso", date_unit="ns"))


def _frame(client, rows: list[dict]):
    return client.app.state.service.schema.frame(rows)


def _wait_until_deciding(service, timeout_s: float = 60.0) -> None:
    """Until the acting policy's worker holds a request's rows (the slow request is inside the sandbox)."""
    from optimizer.sandbox import _protocol as P

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker = service.workers.get(service.champion.key)
        if worker is not None and (worker._work / P.WORKER_ROWS).exists():
            return
        time.sleep(0.02)
    raise AssertionError("the slow request never reached the decide worker")


def _slow_then_fast(service, send_slow, send_fast, fast: int) -> tuple[object, list]:
    """Send the slow call, wait until it is inside the worker, then `fast` calls at once; every result."""
    results: dict = {}

    def call(key, send):
        try:
            results[key] = send()
        except Exception as exc:  # noqa: BLE001 - a refusal is a result here
            results[key] = exc

    threads = [threading.Thread(target=call, args=("slow", send_slow))]
    threads[0].start()
    _wait_until_deciding(service)
    threads += [threading.Thread(target=call, args=(i, lambda i=i: send_fast(i))) for i in range(fast)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout=BUDGET_S + 120)
    return results["slow"], [results[i] for i in range(fast)]


# --- a dead worker is replaced for the requests queued behind the one that killed it -------------------------------
def test_calls_queued_behind_an_overrun_get_a_fresh_worker(slow_client):
    """Several decides of the acting policy wait while one overruns: only that one is refused (timeout); the others
    find its worker ended and are decided by one fresh worker (before, each got 'the decide worker has ended')."""
    service = slow_client.app.state.service
    rows = _rows(slow_client, 5)
    marked = _frame(slow_client, [{**rows[0], "amount": MARK}])
    restarts = service.counts["worker_restarts"]
    slow, fast = _slow_then_fast(service, lambda: service.decide(service.champion, marked),
                                 lambda i: service.decide(service.champion, _frame(slow_client, [rows[i + 1]])), 4)
    assert isinstance(slow, Refused) and slow.status_code == 503 and slow.extra["status"] == "timeout", slow
    assert all(not isinstance(r, Exception) for r in fast), [getattr(r, "message", r) for r in fast]
    assert all(len(r.values) == 1 for r in fast)
    assert service.counts["worker_restarts"] == restarts + 1


def test_requests_queued_behind_an_overrun_are_answered(slow_client):
    """Over HTTP: the marked request gets its 503 (timeout) and each request sent while it hung gets a 200."""
    service = slow_client.app.state.service
    rows = _rows(slow_client, 5)
    before = dict(service.counts)
    slow, fast = _slow_then_fast(
        service, lambda: slow_client.post("/decide", json={"rows": [{**rows[0], "amount": MARK}]}),
        lambda i: slow_client.post("/decide", json={"rows": [rows[i + 1]]}), 4)
    assert slow.status_code == 503 and slow.json()["status"] == "timeout", slow.text
    assert [r.status_code for r in fast] == [200] * 4, [r.text for r in fast]
    served = slow_client.get("/health").json()["served"]
    assert served["sandbox_failures"] == before["sandbox_failures"] + 1
    assert served["worker_restarts"] == before["worker_restarts"] + 1


# --- times and numbers the columns cannot hold ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00", "0001-01-01", "9999-12-31T23:59:59", "9999-01-01",
                                   "1677-09-21T00:00:00", "2262-04-12T00:00:00", "1000-06-01T00:00:00+05:00",
                                   "9999-12-31T23:59:59.999999999"])
@pytest.mark.parametrize("others", ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f000"])
def test_a_time_outside_the_columns_range_is_a_422_naming_row_and_column(slow_client, value, others):
    """Before, the answer depended on the other rows: beside times in seconds a 500 (pandas' OutOfBoundsDatetime),
    beside times in nanoseconds a 422 saying the time 'is not an ISO 8601 time'."""
    rows = [{**row, "ts": pd.Timestamp(row["ts"]).strftime(others)} for row in _rows(slow_client, 3)]
    r = slow_client.post("/decide", json={"rows": [rows[0], {**rows[1], "ts": value}, rows[2]]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error == (f"row 1, column 'ts': \"{value}\" is outside the times the column holds "
                     "(1677-09-21T00:12:44 to 2262-04-11T23:47:16); send a time in that range")
    assert slow_client.post("/decide", json={"rows": rows[:1]}).status_code == 200


@pytest.mark.parametrize("value", ["10000-01-01T00:00:00", "+12025-01-01T00:00:00", "2025-02-30T00:00:00"])
def test_a_time_that_is_no_iso_8601_time_says_what_one_is(slow_client, value):
    rows = _rows(slow_client, 2)
    r = slow_client.post("/decide", json={"rows": [rows[0], {**rows[1], "ts": value}]})
    assert r.status_code == 422 and r.json()["error"] == (
        f"row 1, column 'ts': \"{value}\" is not an ISO 8601 time (YYYY-MM-DDTHH:MM:SS[+HH:MM], a year from 1 to 9999)")


@pytest.mark.parametrize("column, value, words", [
    ("tx_id", 2**70, "outside what the column holds (int64: "),
    ("tx_id", "99999999999999999999999", "outside what the column holds (int64: "),
    ("tx_id", 1e300, "outside what the column holds (int64: "),
    ("amount", "1e400", "is not a finite number"),
    ("amount", "nan", "is not a finite number"),
    ("amount", "-inf", "is not a finite number"),
])
def test_a_number_its_column_cannot_hold_is_a_422_naming_row_and_column(slow_client, column, value, words):
    rows = _rows(slow_client, 2)
    r = slow_client.post("/decide", json={"rows": [rows[0], {**rows[1], column: value}]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error.startswith(f"row 1, column '{column}': ") and words in error, error


@pytest.mark.parametrize("dtype, value", [("int32", 2**40), ("uint8", -1), ("uint8", 256), ("float32", 1e39),
                                          ("datetime64[s]", "10000-01-01"), ("datetime64[ns]", "2300-01-01")])
def test_values_outside_a_narrower_dtype_name_their_row(dtype, value):
    """Columns of other widths than the generated ones (an import keeps its own): the value that does not fit is
    named by its row, never 'values do not fit' for the whole column."""
    from optimizer.release.serve_rows import ColumnSpec, coerce

    first = "2025-01-01T00:00:00" if dtype.startswith("datetime") else 1
    with pytest.raises(Refused) as refused:
        coerce(ColumnSpec("c", pd.Series([], dtype=dtype).dtype, False), [first, value])
    message = refused.value.message
    assert refused.value.status_code == 422 and message.startswith("row 1, column 'c': ")
    assert "range" in message or "a year from 1 to 9999" in message


# --- text from records reaches plots as text; one plot that cannot be drawn leaves the report whole ------------------
TEX = r"$\sigmoid(x)$ beats a flat fee, 50% of the time & more_often #1 {x}"


def _point(number: int, hypothesis: str, value: float = 0.5, outcome: str = "kept"):
    from optimizer.report.facts import Point

    return Point(number, f"exp-{number:04d}", outcome, False, value, value, hypothesis, (), None)


def test_record_text_with_tex_is_drawn_as_text():
    """A kept experiment's hypothesis, a guard's name and a segment's name with TeX in them: every plot draws (before,
    matplotlib's mathtext raised 'Unknown symbol: \\sigmoid' while drawing the trajectory)."""
    from optimizer.report import facts as F
    from optimizer.report import plots

    pngs = [plots.trajectory([_point(1, TEX)], primary="net_savings", baseline=0.4),
            plots.rejections([F.Rejection(TEX, 2, "exp-0001", "why")]),
            plots.segments([F.SegmentRow(TEX, TEX, 10, 0.1, 0.2)], primary="net_savings", min_rows=1),
            plots.guardrails([F.GuardrailSeries(TEX, TEX, True, ((1, 0.2),), 0.1, None, None)])]
    assert all(png.startswith(b"\x89PNG") for png in pngs)


def test_text_stays_text_under_a_usetex_matplotlibrc():
    """An operator's matplotlibrc with text.usetex (LaTeX for every text) does not reach the report's plots."""
    import matplotlib

    from optimizer.report import plots

    with matplotlib.rc_context({"text.usetex": True}):
        png = plots.trajectory([_point(1, TEX)], primary="net_savings", baseline=0.4)
    assert png.startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def reported(served_ws, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """The served workspace's report facts, gathered once."""
    from optimizer.report.run import gather

    return gather(served_ws)


def test_a_plot_that_cannot_be_drawn_leaves_the_report_whole(reported, served_ws, tmp_path):
    """Values matplotlib cannot lay out (an axis from -1.7e308 to 1.7e308) fail the trajectory alone: the page is
    written with every other plot, and the trajectory's place says why in one line."""
    import dataclasses

    from optimizer.report.run import write_facts

    facts = dataclasses.replace(reported, points=(_point(1, TEX, -1.7e308), _point(2, "more", 1.7e308)))
    out = tmp_path / "r" / "night.html"
    files = write_facts(facts, out)
    html = out.read_text()
    assert set(files.missing) == {"trajectory"} and "\n" not in files.missing["trajectory"]
    assert files.missing["trajectory"].startswith("the trajectory plot could not be drawn (ValueError: ")
    assert files.missing["trajectory"] in html and 'id="plot-trajectory"' in html
    assert sorted(files.images) == ["guardrails", "rejections", "segments"]
    assert all(p.exists() for p in files.images.values()) and not out.with_name("night-trajectory.png").exists()
    assert TEX.replace("&", "&amp;") in html  # the hypothesis, as text in the table
