"""Shadow trials that cannot be used as an oracle or forged, with outcomes validated as they arrive: on the real
prepared workspace of test_shadow (exp-0001 passed trial-0001 and was promoted), its store, files and ledger."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import duckdb
import pandas as pd

from holdout.ledger import Kind, Ledger
from tests.optimizer.test_shadow import _challenger, _cli, _report, lab, prepared  # noqa: F401

TRIAL = "trial-0001"


def _kinds(ws) -> list[str]:
    return [e.kind for e in Ledger(ws / "ledger.duckdb").entries()]


def _count(ws, sql: str) -> int:
    with duckdb.connect(str(ws / "shadow.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


# --- only judged policies, only new events ---------------------------------------------------------------------

def test_events_the_workspace_has_seen_or_that_precede_its_sealed_data_are_refused_whole(lab):
    """The holdout's own rows, the holdout's rows under new ids, and new rows timed inside the sealed period are each
    refused with one line: how many, which, and what to do; no trial is started."""
    ws, events = lab / "ws", pd.read_parquet(lab / "ev.parquet")
    holdout = pd.read_parquet(ws / "holdout" / "holdout.parquet")[list(events.columns)]
    renamed = holdout.head(40).assign(tx_id=events["tx_id"].max() + 1 + pd.RangeIndex(40))  # new ids, same rows
    early = events.head(300).assign(ts=events["ts"].head(300) - (events["ts"].min() - holdout["ts"].min()))
    cases = {"oracle.parquet": (holdout.head(300), holdout["tx_id"].head(300), "an id the workspace holds"),
             "renamed.parquet": (pd.concat([events.head(500), renamed]), renamed["tx_id"],
                                 "decision-time values the workspace holds"),
             "early.parquet": (early, early["tx_id"], "a time at or before the sealed data's end")}
    before = _kinds(ws)
    for name, (frame, bad, why) in cases.items():
        frame.to_parquet(lab / name)
        refused = _cli("shadow", "start", ws, "--challenger", "baseline", "--events", lab / name)
        assert refused.exit_code == 2, refused.output
        line = " ".join(refused.output.split())
        found = re.search(r"([\d,]+) of ([\d,]+) events are not new", line)
        assert found and int(found[1].replace(",", "")) == len(bad), line  # every one of them, no other
        assert why in line and name in line and "first ids" in line, line
        assert any(f"{i}," in line or f"{i})" in line for i in bad.astype(str)), line  # names them
    assert _kinds(ws) == before and _count(ws, "SELECT count(*) FROM trials") == 1


def test_a_challenger_never_judged_is_refused(lab):
    """A commit that was never scanned, scored and kept is no challenger: its trial would read metrics no gate ever
    answered. The line names what is accepted."""
    ws = lab / "ws"
    commit = _challenger(ws, lambda policy: policy + "\n# the same policy, reformatted\n", "a refactor")
    refused = _cli("shadow", "start", ws, "--challenger", commit[:12], "--events", lab / "ev.parquet")
    assert refused.exit_code == 2, refused.output
    line = " ".join(refused.output.split())
    assert "no kept experiment" in line and "champion or baseline" in line and commit[:12] in line
    assert _kinds(ws).count(Kind.SHADOW_TRIAL) == 1


# --- bound to the ledger ---------------------------------------------------------------------------------------

def _fails_everywhere(lab, what: str) -> None:
    """`shadow report`, `promote` and `audit` each refuse, naming the trial and what changed."""
    ws = lab / "ws"
    report = _cli("shadow", "report", ws, TRIAL)
    assert report.exit_code == 2 and TRIAL in report.output and what in " ".join(report.output.split()), report.output
    promote = _cli("promote", ws, "exp-0001", "--approved-by", "A. Reviewer")
    assert promote.exit_code == 2 and TRIAL in promote.output, promote.output
    audit = _cli("audit", ws)
    assert audit.exit_code == 1 and "shadow_trials" in audit.output and TRIAL in audit.output, audit.output


def test_an_edited_store_or_constants_file_fails_report_promote_and_audit(lab):
    ws = lab / "ws"
    store, constants = ws / "shadow.duckdb", ws / "shadow" / TRIAL / "challenger.json"
    pristine, pristine_constants = store.read_bytes(), constants.read_text()
    assert _cli("audit", ws).exit_code == 0
    tampers = {
        "decisions": "UPDATE decisions SET decision = '0.0' WHERE policy = 'challenger' AND source = 'trial' AND "
                     "event_id = (SELECT min(event_id) FROM decisions WHERE decision <> '0.0')",
        "outcomes batch 1": "UPDATE outcomes SET label = CASE label WHEN '1' THEN '0' ELSE '1' END WHERE event_id = "
                            "(SELECT min(event_id) FROM outcomes)",
        "outcomes batch(es) 2": "INSERT INTO outcomes SELECT trial, 2, event_id, '0', known_at, reviewed, extra "
                                "FROM outcomes WHERE label = '1'",
    }
    for what, sql in tampers.items():
        with duckdb.connect(str(store)) as con:
            con.execute(sql)
        _fails_everywhere(lab, what)
        store.write_bytes(pristine)
    constants.write_text(json.dumps({"constants": {"THRESHOLD": 0.99}}))
    _fails_everywhere(lab, f"shadow/{TRIAL}/challenger.json changed")
    constants.write_text(pristine_constants)
    # What serve logs per request (source 'serve') is no verdict input: not bound, and no failure.
    from optimizer.release.shadow.store import ShadowStore

    ShadowStore(store).log_decisions(TRIAL, ["live-1"], None, "challenger", [0.5], 2.0, acted=False, source="serve")
    audit = _cli("audit", ws)
    assert audit.exit_code == 0, audit.output
    code, report = _report(lab, TRIAL)
    assert code == 0 and report["status"] == "passed"


def test_a_look_appended_to_the_ledger_by_hand_does_not_replay_for_promote_or_audit(lab):
    """Appended with the ledger's own API, a chain-intact "passed" look that the store never gave (here: as of no
    outcomes at all) is caught where it would act: promote replays the passing look, audit replays them all."""
    ws = lab / "ws"
    ledger = Ledger(ws / "ledger.duckdb")
    last = ledger.entries(Kind.SHADOW_RESULT)[-1].data
    assert last["trial"] == TRIAL and last["status"] == "passed" and last["outcome_batches"] == 1
    ledger.append(Kind.SHADOW_RESULT, {**last, "outcome_batches": 0, "look": last["look"] + 1})
    promote = _cli("promote", ws, "exp-0001", "--approved-by", "A. Reviewer")
    assert promote.exit_code == 2 and f"{TRIAL}: its last look does not replay" in promote.output, promote.output
    audit = _cli("audit", ws)
    assert audit.exit_code == 1 and "FAIL shadow_looks" in audit.output, audit.output
    assert f"{TRIAL} look {last['look'] + 1}: recorded passed" in " ".join(audit.output.split())
    assert "replayed pending" in " ".join(audit.output.split())


# --- robust outcomes -------------------------------------------------------------------------------------------

def test_outcomes_are_validated_whole_and_corrections_are_recorded(lab):
    from optimizer.release.shadow.store import ShadowStore

    ws = lab / "ws"
    out = pd.read_parquet(lab / "out.parquet").head(300).reset_index(drop=True)
    # An ordinary CSV: known_at mixing whole and fractional seconds, with and without a zone; reviewed as words.
    times = out["known_at"].dt.floor("us")
    written = [t.strftime("%Y-%m-%dT%H:%M:%S") if i % 2 == 0 else t.isoformat() + "+00:00" for i, t in enumerate(times)]
    sent = out.assign(known_at=written, reviewed=out["reviewed"].map({True: "yes", False: "no"}))
    sent.loc[:4, "label"] = 1 - sent.loc[:4, "label"]  # five outcomes corrected
    # Bad values are refused whole, naming the file, row and column; nothing is joined, the report is unchanged.
    code, before = _report(lab, TRIAL)
    stored, kinds = _count(ws, "SELECT count(*) FROM outcomes"), _kinds(ws)
    bad = {"label": ["True", "yes", 2, "maybe"], "known_at": ["soon", None], "reviewed": ["perhaps", None]}
    for column, values in bad.items():
        for value in values:
            frame = sent.astype({column: object})
            frame.loc[7, column] = value
            frame.to_csv(lab / "bad.csv", index=False)
            refused = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "bad.csv")
            line = " ".join(refused.output.split())
            assert refused.exit_code == 2 and f"bad.csv: row 8, column {column}" in line, line
            assert "refused whole" in line and "Traceback" not in refused.output, line
    sent.assign(label=sent["label"] == 1).to_parquet(lab / "flags.parquet")  # an export's booleans, not 0/1
    refused = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "flags.parquet")
    assert refused.exit_code == 2 and "row 1, column label" in " ".join(refused.output.split()), refused.output
    assert _count(ws, "SELECT count(*) FROM outcomes") == stored and _kinds(ws) == kinds  # nothing partial joined
    code_after, after = _report(lab, TRIAL)
    assert (code_after, after["status"], after["labeled"], after["primary"]["gain"]) == \
        (code, before["status"], before["labeled"], before["primary"]["gain"])
    # A later batch corrects: different outcomes are stored as a new batch and counted, the same ones ignored.
    sent.to_csv(lab / "fix.csv", index=False)
    changed = (sent["label"] != out["label"]) | (pd.to_datetime(pd.Series(written), format="ISO8601", utc=True)
                                                 .dt.tz_localize(None) != times)
    fixed = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "fix.csv")
    assert fixed.exit_code == 0, fixed.output
    assert f"0 outcomes joined, {int(changed.sum())} corrections, {300 - int(changed.sum())} ignored" in fixed.output
    entry = Ledger(ws / "ledger.duckdb").last(Kind.SHADOW_OUTCOMES).data
    assert (entry["trial"], entry["batch"], entry["corrections"], entry["rows"]) == \
        (TRIAL, 2, int(changed.sum()), int(changed.sum()))
    latest = ShadowStore(ws / "shadow.duckdb").latest_outcomes(TRIAL).set_index("event_id")["label"]
    assert (latest.loc[sent["event_id"].head(5)].astype(int).to_numpy() == sent["label"].head(5).to_numpy()).all()
    again = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "fix.csv")
    assert "0 outcomes joined, 0 corrections, 300 ignored" in again.output  # the same outcomes, read alike
    audit = _cli("audit", ws)
    assert audit.exit_code == 0, audit.output


def test_a_store_held_by_another_process_is_waited_for_then_reported_busy(lab, monkeypatch):
    """A running server holds shadow.duckdb while it writes: a command waits for it, and after a bounded wait says
    in one line that the store is busy, never a DuckDB traceback."""
    import optimizer.release.shadow.store as store_module

    ws = lab / "ws"
    hold = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(float(sys.argv[2]))")
    monkeypatch.setattr(store_module, "WAIT_S", 1.0)
    holder = subprocess.Popen([sys.executable, "-c", hold, str(ws / "shadow.duckdb"), "60"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        t0 = time.monotonic()
        busy = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "out.parquet")
        assert busy.exit_code == 2 and time.monotonic() - t0 < 30, busy.output
        line = " ".join(busy.output.split())
        assert "shadow.duckdb is busy (held by another ratchet process, e.g. `ratchet serve`); retry" in line, line
        assert "Traceback" not in busy.output
        report = _cli("shadow", "report", ws, TRIAL)
        assert report.exit_code == 2 and "shadow.duckdb is busy" in report.output
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.setattr(store_module, "WAIT_S", 20.0)
    holder = subprocess.Popen([sys.executable, "-c", hold, str(ws / "shadow.duckdb"), "4"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        waited = _cli("shadow", "outcomes", ws, TRIAL, "--outcomes", lab / "out.parquet")  # it lets go in 4 s
        assert waited.exit_code == 0 and "0 outcomes joined, 0 corrections" in waited.output, waited.output
    finally:
        holder.wait()
