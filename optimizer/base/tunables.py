"""Tunable constants marked in a policy file: parse them, suggest values, rewrite the literals.

A marker is a comment on the same line as a top-level `NAME = <literal>` assignment:

    N_ESTIMATORS = 200        # tune: int 50..600 log
    LEARNING_RATE = 0.1       # tune: float 0.01..0.3 log
    WINDOW_DAYS = 14          # tune: choice 7, 14, 30
    OBJECTIVE = "aucpr"       # tune: choice "aucpr", "logloss"

Grammar (after `# tune:`):  `int LOW..HIGH [log]` | `float LOW..HIGH [log]` | `choice V1, V2, ...`
where bounds and choices are Python literals (numbers, quoted strings, True/False). Bounds are
inclusive. The offline proposer changes only these literals, so the rest of the file stays
exactly as the person (or the meta-agent) wrote it.
"""
from __future__ import annotations

import ast
import functools
import io
import math
import numbers
import re
import tokenize
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from guards.static import parse_tree

KINDS = ("int", "float", "choice")

# A near-miss such as "# tune int 1..5" must fail loudly, not leave the constant silently untuned.
_NEAR_MISS = re.compile(r"#\s*tune\s+(int|float|choice)\b")
_PREFIX = re.compile(r"#\s*tune\s*:\s*(?P<spec>.*)$")
_RANGE = re.compile(r"^(?P<kind>int|float)\s+(?P<low>\S+?)\s*\.\.\s*(?P<high>\S+?)(?:\s+(?P<log>log))?$")
_CHOICE = re.compile(r"^choice\s+(?P<items>.+)$")


@dataclass(frozen=True)
class Tunable:
    """One marked constant. `low`/`high`/`log` are for int and float; `choices` for choice."""

    name: str
    kind: str
    low: int | float | None
    high: int | float | None
    log: bool
    choices: tuple
    value: Any
    line: int  # 1-based line of the assignment

    def check(self, value: Any) -> None:
        """Raise ValueError when `value` is not allowed for this constant."""
        where = f"{self.name} (line {self.line})"
        if self.kind == "choice":
            if not any(_same(value, c) for c in self.choices):
                raise ValueError(f"{where}: {value!r} is not one of the choices {list(self.choices)!r}")
            return
        if self.kind == "int" and not _is_int(value):
            raise ValueError(f"{where}: expected an int, got {value!r}")
        if self.kind == "float" and not _is_number(value):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value) or not (self.low <= value <= self.high):
            raise ValueError(f"{where}: {value!r} is outside {self.low}..{self.high}")


# numbers.* admits numpy scalars from samplers; bool is an int subclass but never a count.
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    # 1 == True == 1.0 in Python; a choice must match in type as well as value.
    return type(a) is type(b) and a == b


def _literal(text: str, line: int, what: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"line {line}: {what} {text!r} is not a Python literal") from None


def _lines(source: str) -> list[str]:
    # Split where Python's tokenizer does (str.splitlines also splits on \f, \x1c, \u2028 ...).
    return io.StringIO(source, newline="").readlines()


def _comments(source: str) -> dict[int, str]:
    """Line -> comment text, read with tokenize so '#' inside strings is not a comment."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source, newline="").readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def _assignments(tree: ast.Module) -> dict[int, tuple[str, ast.expr]]:
    """Line -> (name, value node) for top-level single-name, single-line assignments."""
    out = {}
    starts = Counter(node.lineno for node in tree.body)  # counted once: list.count per statement was quadratic
    for node in tree.body:
        if starts[node.lineno] > 1:
            continue  # `A = 1; B = 2  # tune: ...` would leave it unclear which one is meant
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and node.lineno == node.end_lineno:
            out[node.lineno] = (target.id, value)
    return out


def _spec(spec: str, line: int) -> tuple[str, Any, Any, bool, tuple]:
    """Parse the text after `# tune:` into (kind, low, high, log, choices)."""
    m = _RANGE.match(spec)
    if m:
        kind = m["kind"]
        low = _literal(m["low"], line, "lower bound")
        high = _literal(m["high"], line, "upper bound")
        ok = _is_int if kind == "int" else _is_number
        if not (ok(low) and ok(high)):
            raise ValueError(f"line {line}: bounds of an {kind} marker must be {kind}s, got {low!r}..{high!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError(f"line {line}: bounds must be finite with low < high, got {low!r}..{high!r}")
        if m["log"] and low <= 0:
            raise ValueError(f"line {line}: a log range needs a positive lower bound, got {low!r}")
        if kind == "float":
            low, high = float(low), float(high)
        return kind, low, high, bool(m["log"]), ()
    m = _CHOICE.match(spec)
    if m:
        choices = _literal(f"({m['items']},)", line, "choice list")
        if len(choices) < 2:
            raise ValueError(f"line {line}: a choice marker needs at least two choices")
        for c in choices:
            if not isinstance(c, (bool, int, float, str)):
                raise ValueError(f"line {line}: choice {c!r} must be a number, string or bool")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ValueError(f"line {line}: duplicate choices in {list(choices)!r}")
        return "choice", None, None, False, tuple(choices)
    raise ValueError(
        f"line {line}: cannot read marker {spec!r}; expected 'int LOW..HIGH [log]', "
        "'float LOW..HIGH [log]' or 'choice V1, V2, ...'"
    )


def parse(source: str) -> list[Tunable]:
    """Every marked constant in `source`, in file order. Malformed markers raise ValueError."""
    return list(_parsed(source))


@functools.lru_cache(maxsize=8)
def _parsed(source: str) -> tuple[Tunable, ...]:
    """`parse`, once per distinct source: tracking, the proposer and `rewrite` read the same candidate's tunables,
    and the shared tree (guards.static.parse_tree) saves the parse but not the tokenizing of comments."""
    tree = parse_tree(source)
    assigns = _assignments(tree)
    found: list[Tunable] = []
    for line, comment in sorted(_comments(source).items()):
        m = _PREFIX.match(comment)
        if not m:
            if _NEAR_MISS.match(comment):
                raise ValueError(f"line {line}: marker {comment!r} lacks ':' after 'tune'")
            continue
        if line not in assigns:
            raise ValueError(f"line {line}: a tune marker must sit on a top-level one-line `NAME = <literal>` assignment")
        name, node = assigns[line]
        try:
            value = ast.literal_eval(node)
        except ValueError:
            raise ValueError(f"line {line}: {name} is not assigned a literal") from None
        kind, low, high, log, choices = _spec(m["spec"].strip(), line)
        if any(t.name == name for t in found):
            raise ValueError(f"line {line}: {name} is marked twice")
        tunable = Tunable(name, kind, low, high, log, choices, value, line)
        try:
            tunable.check(value)
        except ValueError as exc:
            raise ValueError(f"line {line}: current value does not fit its marker: {exc}") from None
        found.append(tunable)
    return tuple(found)


def _format(value: Any) -> str:
    if isinstance(value, str):
        # Double quotes match the policy files' style; repr handles anything awkward.
        return f'"{value}"' if not set(value) & {'"', "\\", "\n", "\r"} else repr(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def rewrite(source: str, values: Mapping[str, Any]) -> str:
    """`source` with only the named literals replaced; every other character is kept."""
    by_name = {t.name: t for t in parse(source)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise KeyError(f"not tunable in this file: {', '.join(unknown)}; tunable: {', '.join(by_name)}")
    nodes = _assignments(parse_tree(source))
    lines = _lines(source)
    for name, value in values.items():
        t = by_name[name]
        t.check(value)
        if t.kind != "choice":
            value = int(value) if t.kind == "int" else float(value)
        node = nodes[t.line][1]
        # ast column offsets count UTF-8 bytes, so slice the encoded line.
        raw = lines[t.line - 1].encode("utf-8")
        new = raw[: node.col_offset] + _format(value).encode("utf-8") + raw[node.end_col_offset :]
        lines[t.line - 1] = new.decode("utf-8")
    return "".join(lines)


def suggest(trial: Any, tunables: list[Tunable]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per tunable; the param name is the constant's name."""
    out: dict[str, Any] = {}
    for t in tunables:
        if t.kind == "int":
            out[t.name] = trial.suggest_int(t.name, t.low, t.high, log=t.log)
        elif t.kind == "float":
            assert t.low is not None and t.high is not None, "a float marker has bounds (see _spec)"
            out[t.name] = trial.suggest_float(t.name, float(t.low), float(t.high), log=t.log)
        else:
            out[t.name] = trial.suggest_categorical(t.name, list(t.choices))
    return out


__all__ = ["KINDS", "Tunable", "parse", "rewrite", "suggest"]
