"""The layers point one way: domains <- holdout, guards <- optimizer. An import that points up (even one inside a
function) fails here, naming the file and line; so does a module that has grown past one concept's size."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each lower layer may import from the project (besides itself).
ALLOWED = {"domains": set(), "holdout": {"domains"}, "guards": {"domains"}}
PROJECT = {"domains", "holdout", "guards", "optimizer", "configs"}
MAX_LINES = 420  # "a file that grows past ~400 lines is usually two concepts"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(layer):
    upward = [f"{p.relative_to(ROOT)}:{line} imports {top}" for p in sorted((ROOT / layer).rglob("*.py"))
              for line, top in _imports(p) if top in PROJECT - ALLOWED[layer] - {layer}]
    assert not upward, "; ".join(upward)


def test_no_module_is_two_concepts():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for layer in ("optimizer", "domains", "holdout", "guards")
            for p in sorted((ROOT / layer).rglob("*.py")) if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, ", ".join(long)
