"""The README's quickstart, part 2 ("your own CSV, in five commands"), run as written in a fresh folder: every
command exits 0 and prints the lines the README shows. Parts 1 and 3 (the demo and a shadow trial on it, minutes
each) are run the same way by benchmarks/quickstart.py."""
from __future__ import annotations

from tests._readme import Step, blocks, pattern, run


def test_the_quickstart_has_its_three_parts():
    parts = blocks()
    assert len(parts) == 3, parts
    assert parts[0][0].command == "make demo"
    assert [s.command.split()[1] for s in parts[1]] == ["sample", "init", "run", "show", "report", "audit"]
    assert [s.command.split()[1] for s in parts[2]] == ["events", "shadow", "shadow", "shadow", "promote"]


def test_a_shown_line_may_leave_parts_out():
    assert pattern("workspace …/ws: train 24,189").search("workspace /tmp/x/ws: train 24,189 rows")
    assert not pattern("audit: intact").search("audit: INTEGRITY FAILURE")
    assert pattern("│ net_savings  …  0.9475 │").search("│ net_savings                     │   0.9475 │")


def test_your_own_csv_in_five_commands(tmp_path):
    for step in blocks()[1]:
        proc, missing = run(step, tmp_path)
        shown = f"$ {step.command}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        assert proc.returncode == 0, shown
        assert not missing, f"the README shows {missing}, the command did not print it:\n{shown}"
    assert (tmp_path / "ws" / "reports" / "run-report.html").is_file()


def test_a_step_that_prints_otherwise_is_found(tmp_path):
    """The check can fail: a shown line the command does not print is reported."""
    proc, missing = run(Step("ratchet --version", ("ratchet 9.9.9",)), tmp_path)
    assert proc.returncode == 0 and missing == ["ratchet 9.9.9"]
