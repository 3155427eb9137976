"""The meta-agent's tools: read the policy, program, history and traces; propose one edit.

Only policy.py can be edited. An edit that does not apply, does not parse or fails the static
scan is returned to the model as a tool error, so it can fix it within the proposal's step budget.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from guards.static import parse_tree

TOOLS: list[dict[str, Any]] = [
    {"name": "read_policy", "description": "The current policy.py (the only file you may edit), with line numbers.",
     "input_schema": {"type": "object", "properties": {}}},
    {"name": "read_program", "description": "program.md: the person's goal, rules and ideas for this workspace.",
     "input_schema": {"type": "object", "properties": {}}},
    {"name": "read_history", "description": "Earlier experiments: verdict, failed guards, dev metric, hypothesis, "
                                             "and the lines each changed.",
     "input_schema": {"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 200}}}},
    {"name": "read_trace", "description": "One experiment's trace on dev rows: metrics, per-segment metrics, worst "
                                          "errors with their features, the fit log, guard failures with details. "
                                          "experiment: an id such as exp-0007, or 'latest'.",
     "input_schema": {"type": "object", "properties": {"experiment": {"type": "string"}},
                      "required": ["experiment"]}},
    {"name": "propose_edit",
     "description": "Propose the next experiment: a one-line hypothesis and either search/replace edits to "
                    "policy.py (each search text must occur exactly once) or a whole new file. Ends the proposal "
                    "when the edit applies, parses and passes the static scan; otherwise the error comes back.",
     "input_schema": {"type": "object", "properties": {
         "hypothesis": {"type": "string", "description": "One line: what you change and why it should help."},
         "edits": {"type": "array", "items": {"type": "object", "properties": {
             "search": {"type": "string"}, "replace": {"type": "string"}}, "required": ["search", "replace"]}},
         "new_file": {"type": "string", "description": "A whole new policy.py instead of edits."}},
         "required": ["hypothesis"]}},
]


class ToolError(ValueError):
    """A tool call the model must fix: the message goes back to it as the tool's error."""


@dataclass(frozen=True)
class Edit:
    hypothesis: str
    source: str
    edits: tuple[tuple[str, str], ...]  # empty for a whole-file proposal


def apply_edits(source: str, edits: Sequence[tuple[str, str]]) -> str:
    for i, (search, replace) in enumerate(edits, 1):
        count = source.count(search) if search else 0
        if count != 1:
            where = "is empty" if not search else ("was not found" if count == 0 else f"occurs {count} times")
            raise ToolError(f"edit {i}: the search text {where} in policy.py; quote one exact, unique passage "
                            "(read_policy shows the current file)")
        source = source.replace(search, replace, 1)
    return source


def parse_edit(args: Any, current: str, check: Callable[[str], str | None]) -> Edit:
    """Validate the model's propose_edit input and apply it to `current`."""
    if not isinstance(args, dict):
        raise ToolError(f"propose_edit input must be an object, got {type(args).__name__}")
    hypothesis = args.get("hypothesis")
    if not isinstance(hypothesis, str) or not hypothesis.strip():
        raise ToolError("propose_edit needs a non-empty one-line 'hypothesis'")
    raw, new_file = args.get("edits"), args.get("new_file")
    if (raw is None) == (new_file is None):
        raise ToolError("give exactly one of 'edits' (search/replace blocks) or 'new_file'")
    edits: tuple[tuple[str, str], ...]
    if new_file is not None:
        if not isinstance(new_file, str):
            raise ToolError("'new_file' must be the whole policy.py as a string")
        source, edits = new_file, ()
    else:
        if not isinstance(raw, list) or not raw or not all(
                isinstance(e, dict) and isinstance(e.get("search"), str) and isinstance(e.get("replace"), str)
                for e in raw):
            raise ToolError("'edits' must be a non-empty list of {\"search\": str, \"replace\": str}")
        edits = tuple((e["search"], e["replace"]) for e in raw)
        source = apply_edits(current, edits)
    if source == current:
        raise ToolError("the edit changes nothing; propose a real change")
    try:
        parse_tree(source)
    except SyntaxError as exc:
        raise ToolError(f"policy.py does not parse after the edit: line {exc.lineno}: {exc.msg}") from None
    problem = check(source)
    if problem:
        raise ToolError(problem)
    return Edit(" ".join(hypothesis.split())[:300], source, edits)


def numbered(source: str) -> str:
    return "\n".join(f"{i:4d}  {line}" for i, line in enumerate(source.splitlines(), 1))


def read_trace(experiments: Path, name: str, limit: int) -> str:
    if name == "latest":
        found = sorted(p.parent.name for p in experiments.glob("exp-*/trace.json"))
        if not found:
            return "no experiment has a trace yet; the baseline's metrics are in the history"
        name = found[-1]
    path = experiments / name / "trace.json"
    if "/" in name or ".." in name or not path.is_file():
        raise ToolError(f"no trace for experiment {name!r}; ids look like exp-0007 (see read_history)")
    text = json.dumps(json.loads(path.read_text()), separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit] + f"... [trace cut at {limit} of {len(text)} characters]"
