"""The layers point one way: domains <- holdout, guards <- optimizer, and inside optimizer its packages by rank. An
import that points up (even one inside a function) fails here, naming the file and line; so does a module that has
grown past one concept's size, and any import cycle."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each lower layer may import from the project (besides itself).
ALLOWED = {"domains": set(), "holdout": {"domains"}, "guards": {"domains"}}
PROJECT = {"domains", "holdout", "guards", "optimizer", "configs"}
MAX_LINES = 400  # "a file that grows past ~400 lines is usually two concepts"
# optimizer's packages, lowest first: each imports only from packages ranked below it (CONTRIBUTING.md has the map).
# Packages of one rank do not import each other.
RANKS = {"base": 0, "workspace": 1, "sandbox": 2, "llm": 3, "records": 4, "tracking": 5, "proposers": 6, "loop": 7,
         "audit": 8, "release": 8, "lifecycle": 9, "report": 10, "cli": 11}


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


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _typing_only(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:`: imports for annotations only, never run."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports, at top level or inside a function (not those under `if
    TYPE_CHECKING:`, which never run). `from pkg import sub` points at the submodule `pkg.sub`; `from pkg import
    name` at `pkg` (the package's own code)."""
    files = {_module_of(p): p for layer in sorted(PROJECT) for p in sorted((ROOT / layer).rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _typing_only(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "optimizer" and len(parts) > 1 else None


def test_every_optimizer_module_lives_in_a_ranked_package():
    loose = [m for m in _graph() if m.startswith("optimizer.") and _package(m) not in RANKS]
    assert not loose, f"not in a package of tests/test_layers.py RANKS: {loose}"


def test_optimizer_packages_import_only_lower_ranks():
    graph = _graph()
    upward = [f"{m} imports {t}" for m in sorted(graph) if _package(m) in RANKS for t in sorted(graph[m])
              if _package(t) in RANKS and _package(t) != _package(m) and RANKS[_package(t)] >= RANKS[_package(m)]]
    assert not upward, "; ".join(upward)


def test_the_rank_check_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """A workspace module asking the loop for something, even lazily, is refused."""
    fake = tmp_path / "optimizer"
    lazy = "def f():\n    from optimizer.loop.run import X\n"
    for rel, text in (("__init__.py", ""), ("workspace/__init__.py", ""), ("loop/__init__.py", ""),
                      ("loop/run.py", "X = 1\n"), ("workspace/layout.py", lazy)):
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PROJECT", {"optimizer"})
    with pytest.raises(AssertionError, match="optimizer.workspace.layout imports optimizer.loop.run"):
        test_optimizer_packages_import_only_lower_ranks()


def test_no_import_cycle():
    """No two project modules import each other, directly or round a loop, even inside functions."""
    cycles = _cycles(_graph())
    assert not cycles, "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_loop_and_nothing_else():
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert _cycles(loop) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
