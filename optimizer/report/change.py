"""A hypothesis drawn from a candidate's change against the champion (`ratchet try` without --hypothesis): the
module constants it changed ("THRESHOLD 0.3 -> 0.35; N_ESTIMATORS 300 -> 200"), else how many lines it added and
removed in which functions ("+12 -3 lines in decide()"). A docstring says what a file is, not what changed."""
from __future__ import annotations

import ast
import difflib
from typing import Any

MISSING = object()


def constants(source: str) -> dict[str, Any]:
    """Top-level `NAME = <literal>` assignments (the tunables and any other literal constant)."""
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        value = getattr(node, "value", None)
        for t in targets:
            if isinstance(t, ast.Name) and value is not None:
                try:
                    out[t.id] = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
    return out


def _shown(value: Any) -> str:
    text = "(none)" if value is MISSING else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of every function, methods as Class.name, innermost last."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.append((item.lineno, item.end_lineno or item.lineno, f"{node.name}.{item.name}"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.lineno, node.end_lineno or node.lineno, node.name))
    return sorted(out, key=lambda f: f[1] - f[0], reverse=True)


def _where(lines: list[int], tree: ast.Module | None) -> list[str]:
    """The innermost function holding each changed line, in file order; 'module level' for the rest."""
    funcs = _functions(tree) if tree is not None else []
    places: dict[str, None] = {}
    for ln in sorted(lines):
        inside = [f"{name}()" for lo, hi, name in funcs if lo <= ln <= hi]
        places[inside[-1] if inside else "module level"] = None
    return list(places)


def _assigned(tree: ast.Module | None, names: set[str]) -> set[int]:
    """The lines of the top-level assignments to `names`."""
    lines: set[int] = set()
    for node in tree.body if tree is not None else []:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in names for t in targets):
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def describe(old: str, new: str, limit: int = 300) -> str:
    """What changed from `old` to `new`, in one line (at most `limit` characters)."""
    try:
        before, after = constants(old), constants(new)
    except SyntaxError:
        before = after = {}
    changed = [f"{k} {_shown(before.get(k, MISSING))} -> {_shown(after.get(k, MISSING))}"
               for k in [*before, *(k for k in after if k not in before)]
               if before.get(k, MISSING) != after.get(k, MISSING) or type(before.get(k)) is not type(after.get(k))]
    a, b = old.splitlines(), new.splitlines()
    added, removed = 0, 0
    touched_new: list[int] = []
    touched_old: list[int] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed, added = removed + i2 - i1, added + j2 - j1
            touched_old += range(i1 + 1, i2 + 1)
            touched_new += range(j1 + 1, j2 + 1)
    if not added and not removed:
        return "no change against the champion"
    try:
        new_tree = ast.parse(new)
    except SyntaxError:
        new_tree = None
    try:
        old_tree = ast.parse(old)
    except SyntaxError:
        old_tree = None
    # Lines only a changed constant's assignment touched are already named by the constants.
    names = {c.split(" ", 1)[0] for c in changed}
    rest_new = [ln for ln in touched_new if ln not in _assigned(new_tree, names)]
    rest_old = [ln for ln in touched_old if ln not in _assigned(old_tree, names)]
    places = list(dict.fromkeys(_where(rest_new, new_tree) + _where(rest_old, old_tree)))
    parts = []
    if changed:
        parts.append("; ".join(changed))
    if places and places != ["module level"] or not changed:
        parts.append(f"+{added} -{removed} lines in {', '.join(places) or 'module level'}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"
