"""Marked constants: parse the real baseline, rewrite only literals, refuse bad markers and values."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from domains.fraud import policy
from optimizer.base.diffs import unified_diff as diff
from optimizer.base.tunables import Tunable, parse, rewrite, suggest

BASELINE = Path(policy.__file__).read_text()


def test_parses_every_marker_of_the_baseline_policy():
    tunables = parse(BASELINE)
    # The docstring mentions markers too; a real one follows an assignment.
    marked = [i for i, line in enumerate(BASELINE.splitlines(), 1) if re.match(r"[A-Z_]+ = .*# tune:", line)]
    assert len(marked) >= 8
    assert [t.line for t in tunables] == marked
    names = {t.name for t in tunables}
    assert {"N_ESTIMATORS", "MAX_DEPTH", "LEARNING_RATE", "THRESHOLD", "SCALE_POS_WEIGHT"} <= names
    assert "SEED" not in names and "DEVICE" not in names
    for t in tunables:
        assert t.value == getattr(policy, t.name) and type(t.value) is type(getattr(policy, t.name))
    by_name = {t.name: t for t in tunables}
    assert by_name["N_ESTIMATORS"].kind == "int" and by_name["N_ESTIMATORS"].log
    assert by_name["THRESHOLD"] == Tunable("THRESHOLD", "float", 0.05, 0.95, False, (), policy.THRESHOLD,
                                           by_name["THRESHOLD"].line)
    assert by_name["REFERENCE_DAYS"].choices == (7, 14, 30, 60)


def test_rewrite_round_trip_changes_only_the_literals():
    new = {"N_ESTIMATORS": 123, "LEARNING_RATE": 0.05, "THRESHOLD": 0.25, "SCALE_POS_WEIGHT": 3,
           "REFERENCE_DAYS": 60}
    out = rewrite(BASELINE, new)
    after = {t.name: t.value for t in parse(out)}
    for name, value in new.items():
        assert after[name] == value
    assert isinstance(after["N_ESTIMATORS"], int)
    assert isinstance(after["SCALE_POS_WEIGHT"], float)  # an int for a float constant is written as 3.0
    changed = {t.line for t in parse(BASELINE) if t.name in new}
    old_lines, new_lines = BASELINE.splitlines(keepends=True), out.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    for i, (a, b) in enumerate(zip(old_lines, new_lines), 1):
        if i in changed:
            # Same name, same marker comment; only the literal moved.
            assert a.split("=")[0] == b.split("=")[0] and a.split("#")[1] == b.split("#")[1]
            assert a != b
        else:
            assert a == b, f"line {i} changed"
    assert rewrite(BASELINE, {}) == BASELINE


def test_rewrite_formats_literals_by_kind():
    src = (
        'A = 5  # tune: int 1..10\n'
        'B = 0.5  # tune: float 0.001..1.0 log\n'
        'C = "gbtree"  # tune: choice "gbtree", "dart"\n'
        'D = True  # tune: choice True, False\n'
        'E = -2  # tune: int -5..5\n'
    )
    out = rewrite(src, {"A": 7, "B": 1e-3, "C": "dart", "D": False, "E": 3})
    assert out.splitlines() == [
        'A = 7  # tune: int 1..10',
        'B = 0.001  # tune: float 0.001..1.0 log',
        'C = "dart"  # tune: choice "gbtree", "dart"',
        'D = False  # tune: choice True, False',
        'E = 3  # tune: int -5..5',
    ]
    assert rewrite(src, {"A": np.int64(9)}).startswith("A = 9  #")
    # repr is the shortest text that reads back as the same float.
    assert parse(rewrite(src, {"B": 0.1 + 0.2}))[1].value == 0.1 + 0.2


def test_rewrite_keeps_line_endings_and_odd_characters():
    # str.splitlines would split inside the string at the form feed and shift every line after it.
    src = 'import math\r\nS = "a\x0cb"  # ünïcode\r\nÄ = 1  # tune: int 1..5\r\nB = 0.5  # tune: float 0.1..1\r\n'
    out = rewrite(src, {"Ä": 4, "B": 0.75})
    assert out == src.replace("Ä = 1", "Ä = 4").replace("B = 0.5", "B = 0.75")
    assert parse(src)[1].high == 1.0 and isinstance(parse(src)[1].high, float)


@pytest.mark.parametrize(("source", "message"), [
    ("X = 5  # tune: int 10..1\n", "low < high"),
    ("X = 2  # tune: int 1.5..3\n", "must be ints"),
    ("X = 0.5  # tune: float 0..1 log\n", "positive lower bound"),
    ("X = 1  # tune: choice 1\n", "at least two"),
    ("X = 1  # tune: choice 1, 1\n", "duplicate"),
    ("X = 1  # tune: range 1..2\n", "cannot read marker"),
    ("X = 1  # tune: int 1..5 linear\n", "cannot read marker"),
    ("X = 1  # tune: int a..5\n", "not a Python literal"),
    ("X = 9  # tune: int 1..5\n", "outside"),
    ("X = 2.5  # tune: int 1..5\n", "expected an int"),
    ("X = 'a'  # tune: choice 'b', 'c'\n", "not one of the choices"),
    ("X = round(2.5)  # tune: int 1..5\n", "not assigned a literal"),
    ("def f():\n    X = 1  # tune: int 1..5\n", "top-level"),
    ("X = Y = 1  # tune: int 1..5\n", "top-level"),
    ("X = 1  # tune int 1..5\n", "lacks ':'"),
    ("Y = 0; X = 1  # tune: int 1..5\n", "top-level"),
    ("X = 1  # tune: int 1..5\nX = 2  # tune: int 1..5\n", "marked twice"),
])
def test_malformed_markers_name_the_line_and_the_problem(source, message):
    with pytest.raises(ValueError) as err:
        parse("import math\n" + source)
    assert re.search(r"line [23]\b", str(err.value)), str(err.value)
    assert message in str(err.value)


def test_ordinary_comments_and_strings_are_not_markers():
    src = 'S = "# tune: int 1..2"\nN = 3  # tuned by hand last spring\n# tune this later\n'
    assert parse(src) == []


@pytest.mark.parametrize(("values", "error"), [
    ({"MAX_DEPTH": 11}, ValueError),
    ({"THRESHOLD": 1.5}, ValueError),
    ({"LEARNING_RATE": float("nan")}, ValueError),
    ({"MAX_DEPTH": 4.0}, ValueError),
    ({"MAX_DEPTH": True}, ValueError),
    ({"REFERENCE_DAYS": 21}, ValueError),
    ({"THRESHOLD": "0.3"}, ValueError),
    ({"SEED": 1}, KeyError),
    ({"NO_SUCH_CONSTANT": 1}, KeyError),
])
def test_rewrite_refuses_bad_values_and_unknown_names(values, error):
    with pytest.raises(error):
        rewrite(BASELINE, values)


def test_suggest_asks_optuna_for_each_tunable_by_name():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tunables = parse(BASELINE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        values = suggest(trial, tunables)
        assert set(values) == {t.name for t in tunables} == set(trial.params)
        for t in tunables:
            t.check(values[t.name])
            dist = trial.distributions[t.name]
            if t.kind == "choice":
                assert tuple(dist.choices) == t.choices
            else:
                assert (dist.low, dist.high, dist.log) == (t.low, t.high, t.log)
        assert {t.name: t.value for t in parse(rewrite(BASELINE, values))} == values
        study.tell(trial, 0.0)


def test_diff_shows_only_the_changed_literal():
    out = rewrite(BASELINE, {"MAX_DEPTH": 7})
    text = diff(BASELINE, out)
    assert text.startswith("--- a/policy.py\n+++ b/policy.py\n")
    removed = [ln for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert len(removed) == len(added) == 1
    assert removed[0].startswith("-MAX_DEPTH = 5") and added[0].startswith("+MAX_DEPTH = 7")
    assert diff(BASELINE, BASELINE) == ""
    assert "b/fraud/policy.py" in diff("a\n", "b", name="fraud/policy.py")
