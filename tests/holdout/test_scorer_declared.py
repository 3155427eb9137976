"""The scorer is declared in one place (holdout/scorer.py): every module the verdict pipeline imports is either in it
(hashed at the seal and at each upgrade) or named outside it with a reason. A new import fails here until someone
decides which."""
from __future__ import annotations

import ast
from pathlib import Path

from domains import DOMAINS, get_domain
from holdout import scorer

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("domains", "guards", "holdout", "optimizer")


def _module_file(name: str) -> Path | None:
    path = ROOT / name.replace(".", "/")
    if path.is_dir() and (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(name: str) -> set[str]:
    """The project modules `name` imports, at the top or inside functions (relative imports resolved)."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}"))
    modules = {m for m in found if m.split(".")[0] in PROJECT and _module_file(m)}
    # importing a.b.c runs a/__init__ and a/b/__init__ too
    return modules | {m.rsplit(".", k)[0] for m in modules for k in range(1, m.count(".") + 1)}


def _declared_modules() -> set[str]:
    out = set()
    for name in scorer.SCORER:
        path = ROOT / name.replace(".", "/")
        if path.is_dir():
            out.add(name)
            out.update(f"{name}.{p.stem}" for p in path.glob("*.py") if p.stem != "__init__")
        else:
            out.add(name)
    for domain in DOMAINS:
        package = get_domain(domain).package_dir
        prefix = f"domains.{package.name}"
        out.add(prefix)
        out.update(f"{prefix}.{p.stem}" for p in get_domain(domain).scorer_sources() if p.stem != "__init__")
    return out


def _holds_scorer(package: str) -> bool:
    return any(s.startswith(f"{package}.") for s in scorer.SCORER)


def _outside(name: str) -> bool:
    """Named in OUTSIDE, or inside a package OUTSIDE names that holds no scorer module (a package holding some
    names each of its other modules)."""
    return any(name == o or name.startswith(f"{o}.") and not _holds_scorer(o) for o in scorer.OUTSIDE)


def test_every_module_the_scorer_imports_is_declared_or_named_outside_it():
    declared = _declared_modules()
    todo, seen, undeclared, outside = sorted(declared), set(), {}, set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in _imports(name):
            if imported in declared:
                todo.append(imported)
            elif _outside(imported):
                outside.add(imported)
            else:
                undeclared.setdefault(imported, name)
    assert not undeclared, "imported by the scorer but neither in holdout/scorer.py SCORER nor OUTSIDE: " + ", ".join(
        f"{m} (imported by {by})" for m, by in sorted(undeclared.items()))
    unused = [o for o in scorer.OUTSIDE if not any(m == o or m.startswith(f"{o}.") for m in outside)]
    assert not unused, f"holdout/scorer.py OUTSIDE names modules the scorer does not import: {unused}"


def test_the_declaration_names_real_modules_once():
    for name in (*scorer.SCORER, *scorer.OUTSIDE):
        assert _module_file(name), f"holdout/scorer.py names {name}, which is not a module or package"
    assert not set(scorer.SCORER) & set(scorer.OUTSIDE)
    assert all(reason.strip() for reason in scorer.OUTSIDE.values())


def test_the_change_check_and_the_executors_are_hashed():
    rels = set(scorer.hashes(get_domain("fraud")))
    for rel in ("optimizer/workspace/layout.py", "optimizer/loop/executors/local.py", "holdout/scorer.py",
                "optimizer/loop/stages/evaluate.py", "domains/fraud/adapter.py"):
        assert rel in rels, rel
    assert "domains/fraud/policy.py" not in rels  # a policy is a candidate, not scorer
    assert not any(rel.startswith("optimizer/cli") for rel in rels)


def test_a_module_outside_the_declaration_would_be_found(tmp_path, monkeypatch):
    """The check itself can fail: drop a module the stages import from the declaration and it is named."""
    monkeypatch.setattr(scorer, "SCORER", tuple(n for n in scorer.SCORER if n != "optimizer.workspace.layout"))
    try:
        test_every_module_the_scorer_imports_is_declared_or_named_outside_it()
    except AssertionError as exc:
        assert "optimizer.workspace.layout" in str(exc)
    else:
        raise AssertionError("a scorer import missing from the declaration was not reported")


def test_a_package_named_outside_beside_scorer_modules_holds_only_its_docstring():
    """Its __init__ runs whenever one of its scorer modules is imported: code there would decide unsealed."""
    mixed = [o for o in scorer.OUTSIDE if _holds_scorer(o) and o != "optimizer"]  # the root's reason is its own
    assert "optimizer.records" in mixed
    for package in mixed:
        body = ast.parse(_module_file(package).read_text()).body
        assert scorer.OUTSIDE[package] == scorer.PACKAGE, package
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), (
            f"{package}/__init__.py holds code; move it to a module of the package and declare that module")
