import duckdb
import pytest

from holdout.ledger import Ledger, verify_chain
from optimizer.base.errors import RatchetError


def _ledger(tmp_path, n=4):
    led = Ledger(tmp_path / "ledger.duckdb")
    led.append("seal", {"manifest_sha256": "ab" * 32})
    for i in range(1, n):
        led.append("experiment", {"i": i, "metric": 0.1 * i})
    return led


def test_chain_intact_and_linked(tmp_path):
    led = _ledger(tmp_path)
    entries = led.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert verify_chain(entries) == []
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))


def _tampered(tmp_path, sql: str) -> list[str]:
    """What the chain check says of a ledger edited behind its back with `sql`."""
    led = _ledger(tmp_path)
    con = duckdb.connect(str(led.path))
    con.execute(sql)
    con.close()
    return verify_chain(led.entries())


def test_edited_payload_is_named(tmp_path):
    problems = _tampered(tmp_path, "UPDATE ledger SET payload = '{\"i\":2,\"metric\":9.9}' WHERE seq = 3")
    assert any("entry 3" in p and "recomputed" in p for p in problems)


def test_removed_entry_is_named(tmp_path):
    problems = _tampered(tmp_path, "DELETE FROM ledger WHERE seq = 2")
    assert problems and "seq 2 is missing" in problems[0]


def test_rehashed_forgery_still_breaks_the_chain(tmp_path):
    """Recomputing an edited entry's own hash is not enough: the next entry links to the old one."""
    from holdout.ledger import entry_hash

    led = _ledger(tmp_path)
    e = led.entries()[1]
    forged = '{"i":1,"metric":5.0}'
    new_hash = entry_hash(e.seq, e.time, e.kind, forged, e.prev_hash)
    con = duckdb.connect(str(led.path))
    con.execute("UPDATE ledger SET payload = ?, hash = ? WHERE seq = ?", [forged, new_hash, e.seq])
    con.close()
    problems = verify_chain(led.entries())
    assert any("entry 3" in p and "prev_hash" in p for p in problems)


def test_second_writer_is_refused(tmp_path):
    import fcntl

    led = _ledger(tmp_path, n=1)
    with open(led.path.with_suffix(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(RatchetError, match="another process is writing"):
            led.append("experiment", {"x": 1})


def test_first_entry_must_be_seal(tmp_path):
    led = Ledger(tmp_path / "l.duckdb")
    led.append("experiment", {"x": 1})
    assert any("expected the seal" in p for p in verify_chain(led.entries()))


def _opens(monkeypatch) -> list[bool]:
    """Every time the ledger opens its file from now on (the read_only flag of each)."""
    import holdout.ledger as ledger_module

    opened: list[bool] = []
    real = ledger_module._attached

    def counting(path, *, read_only):
        opened.append(read_only)
        return real(path, read_only=read_only)

    monkeypatch.setattr(ledger_module, "_attached", counting)
    return opened


def test_entries_it_read_or_wrote_are_served_without_reopening(tmp_path, monkeypatch):
    led = _ledger(tmp_path)
    led.entries()  # read once
    opened = _opens(monkeypatch)
    led.append("experiment", {"i": 9})
    got = led.entries()
    assert opened == [False]  # the append's own; the read after it opened nothing
    assert [e.seq for e in got] == [1, 2, 3, 4, 5] and got[-1].data == {"i": 9}
    assert got == Ledger(led.path).entries()  # what a fresh reader finds in the file
    assert verify_chain(got) == []


def test_a_change_behind_its_back_is_read_afresh(tmp_path):
    """Another writer, or a tamper in the same millisecond as the last append: the next read sees it."""
    led = _ledger(tmp_path)
    led.entries()
    led.append("experiment", {"i": 4, "metric": 0.4})
    con = duckdb.connect(str(led.path))
    con.execute("UPDATE ledger SET payload = '{\"i\":4,\"metric\":9.9}' WHERE seq = 5")  # same length
    con.close()
    assert led.entries()[-1].data == {"i": 4, "metric": 9.9}
    assert any("entry 5" in p and "recomputed" in p for p in verify_chain(led.entries()))
    other = Ledger(led.path)
    other.append("experiment", {"i": 5})
    assert [e.seq for e in led.entries()] == [1, 2, 3, 4, 5, 6]


def test_no_lock_on_the_file_outlives_a_call(tmp_path):
    """The file is attached for each call only, even one that fails: another process can open it between calls,
    and the ledger goes on."""
    import subprocess
    import sys

    import holdout.ledger as ledger_module

    led = _ledger(tmp_path)
    with pytest.raises(RuntimeError):
        with ledger_module._attached(led.path, read_only=False):
            raise RuntimeError("a statement failed")
    probe = "import duckdb, sys; print(duckdb.connect(sys.argv[1]).execute('SELECT count(*) FROM ledger').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", probe, str(led.path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"
    led.append("experiment", {"i": 5})
    assert Ledger(led.path).entries()[-1].data == {"i": 5}


def test_per_entry_computes_once_per_entry_content(tmp_path):
    from holdout.ledger import per_entry

    calls = []

    @per_entry
    def metric(entry):
        calls.append(entry.seq)
        return entry.data.get("metric")

    led = _ledger(tmp_path)
    first = [metric(e) for e in led.entries()]
    again = [metric(e) for e in Ledger(led.path).entries()]  # other objects, same entries: not parsed again
    assert first == again == [None, 0.1, pytest.approx(0.2), pytest.approx(0.3)] and calls == [1, 2, 3, 4]
    con = duckdb.connect(str(led.path))
    con.execute("UPDATE ledger SET payload = '{\"i\":3,\"metric\":9.9}', hash = 'forged' WHERE seq = 4")
    con.close()
    assert metric(led.entries()[-1]) == 9.9 and calls[-1] == 4  # a changed entry is another entry
