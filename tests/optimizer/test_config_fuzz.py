"""Malformed configs, fuzzed with hypothesis: every one is either a valid config or one line naming the file and the
field path, never a traceback."""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.base.errors import RatchetError
from optimizer.workspace.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BASE = load_config(ROOT / "configs" / "fraud.yaml").model_dump(mode="json")


def _leaf(data: dict, path: tuple):
    for key in path:
        data = data[key]
    return data


def _leaves(data: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


LEAVES = _leaves(BASE)
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))  # what YAML can hold
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(TEXT, max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(TEXT, max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _check(data, text: str | None = None) -> tuple[str | None, str]:
    """Load `data` (or raw `text`) as a config file: (None, "") when valid, else (the one-line message, its file)."""
    folder = Path(tempfile.mkdtemp(prefix="ratchet-config-"))
    path = folder / "ratchet.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data, allow_unicode=True))
    try:
        load_config(path)
    except RatchetError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path)), message
        return message, str(path)
    finally:
        shutil.rmtree(folder)
    return None, str(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(LEAVES), value=VALUES)
def test_a_setting_given_any_value_is_accepted_or_named(path, value):
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message, _ = _check(data)
    if message is not None and "invalid configuration" in message:
        assert str(path[0]) in message, message  # the section, and the field below it, are named
        assert str(path[-1]) in message or "domain" in message, message


@settings(max_examples=60, deadline=None)
@given(key=st.text(TEXT, min_size=1, max_size=12).filter(lambda k: k.strip() and k not in BASE), value=SCALARS)
def test_an_unknown_key_is_refused_by_name(key, value):
    message, _ = _check({**BASE, key: value})
    assert message is not None and key.strip() in message, message


@pytest.mark.parametrize("change, words", [
    ({"split": {"train": 0.9, "dev": 0.2, "holdout": 0.2}}, ["split"]),
    ({"gate": {"budget": 0}}, ["gate.budget"]),
    ({"decision": {"confidence": 1.5}}, ["decision.confidence"]),
    ({"sandbox": {"budget_s": -1}}, ["sandbox.budget_s"]),
    ({"domain": "weather"}, ["unknown domain", "weather"]),
])
def test_impossible_values_are_refused_by_field(change, words):
    data = copy.deepcopy(BASE)
    for section, value in change.items():
        data[section] = {**data[section], **value} if isinstance(value, dict) else value
    message, _ = _check(data)
    assert message is not None and all(w in message for w in words), message


@pytest.mark.parametrize("text, words", [
    ("", ["empty"]),
    ("# only a comment\n", ["empty"]),
    ("gate:\n  budget: 3\n    step_se: 1\n", ["not valid YAML", "line 3"]),
    ("seed: [1, 2\n", ["not valid YAML", "line"]),
    ("- a\n- b\n", ["top level must be a mapping"]),
])
def test_files_that_are_no_config_say_what_and_where(text, words):
    message, _ = _check(None, text)
    assert message is not None and all(w in message for w in words), message


def test_a_config_that_is_not_utf8_is_named():
    folder = Path(tempfile.mkdtemp(prefix="ratchet-config-"))
    path = folder / "ratchet.yaml"
    path.write_bytes("seed: 1\n# d\u00e9cision\n".encode("latin-1"))
    with pytest.raises(RatchetError, match="not UTF-8"):
        load_config(path)


NUMBERS = [path for path in LEAVES if _leaf(BASE, path) is not True and _leaf(BASE, path) is not False
           and isinstance(_leaf(BASE, path), (int, float))]


@pytest.mark.parametrize("path", NUMBERS, ids=".".join)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e308])
def test_every_number_refuses_nan_infinity_and_the_absurd_by_name(path, value):
    """Every numeric setting is finite and bounded: NaN, infinity and 1e308 are refused naming the setting."""
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message, _ = _check(data)
    assert message is not None and ".".join(map(str, path)).replace("scoring.", "scoring.fraud.") in message, message
