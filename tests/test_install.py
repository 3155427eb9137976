"""Packaging: a wheel built from the repository carries every file the program reads at run time (configs,
baseline policies and their variants, program files), and the `ratchet` it installs works from a folder
outside the repository.

The wheel is installed with --no-deps into a fresh venv; its dependencies are the running interpreter's
site-packages, hard-linked into the fresh one (a copy where linking is impossible) without the repository's
editable install, so the repo's packages are importable only from the wheel (asserted below, so a missing
file cannot be papered over by the checkout). A .pth line naming the running site-packages would be lighter,
but the sandbox lets a policy read only the interpreter's own install (sys.prefix, its site-packages), so
dependencies reached that way are refused when a policy imports them lazily.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optimizer", "domains", "holdout", "guards", "configs")
# Named explicitly, so an empty glob below cannot make the check vacuous.
REQUIRED = ("configs/__init__.py", "configs/fraud.yaml", "configs/pricing.yaml", "configs/routing.yaml",
            "domains/fraud/policy.py", "domains/fraud/program.md", "domains/pricing/policy.py",
            "domains/pricing/program.md", "domains/routing/policy.py", "domains/routing/policy_llm.py",
            "domains/routing/program.md", "optimizer/cli/__init__.py", "optimizer/sandbox/_child.py",
            "optimizer/sandbox/_server.py", "guards/__init__.py", "holdout/__init__.py")
# Files read at run time besides the modules.
DATA_GLOBS = ("configs/*.yaml", "domains/*/program.md", "domains/*/policy*.py")
# What the build must not see: the environment, history, caches and earlier build outputs (a stale build/lib
# would put files in the wheel that the packaging configuration no longer ships).
_IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 "mlflow", "tests", "workspaces", "demo-workspace", "pricing-demo", "routing-demo")
# pip's words when the build requirements could not be obtained (no index reachable, nothing matching).
_NO_BUILD_DEPS = ("could not find a version that satisfies", "no matching distribution found",
                  "installing build dependencies: finished with status 'error'", "failed to establish a new connection")

pytestmark = pytest.mark.timeout(600)


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def _tail(proc: subprocess.CompletedProcess, n: int = 4000) -> str:
    return (proc.stdout + proc.stderr)[-n:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of the working tree, with the running interpreter's pip."""
    if _run([sys.executable, "-m", "pip", "--version"]).returncode != 0:
        pytest.skip(f"cannot build a wheel: pip is not available to {sys.executable}")
    base = tmp_path_factory.mktemp("build")
    src, dist = base / "src", base / "dist"
    shutil.copytree(ROOT, src, ignore=_IGNORE, symlinks=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src]
    offline = _run([*command[:4], "--no-deps", "--no-build-isolation", "-w", dist, src])
    built = offline
    if offline.returncode != 0:  # this interpreter lacks the build backend: let pip fetch it into an isolated env
        built = _run(command)
        if built.returncode != 0:
            text = _tail(built).lower()
            if any(words in text for words in _NO_BUILD_DEPS):
                pytest.skip("cannot build a wheel: --no-build-isolation failed (this interpreter lacks the build "
                            "requirements in pyproject.toml [build-system]) and pip could not fetch them for an "
                            f"isolated build:\n{_tail(offline, 1500)}\n{_tail(built, 1500)}")
            pytest.fail(f"building the wheel failed:\n{_tail(offline, 2000)}\n{_tail(built)}")
    found = sorted(dist.glob("ratchet_loop-*.whl"))
    assert len(found) == 1, f"expected one ratchet_loop wheel in {dist}: {found}\n{_tail(built)}"
    return found[0]


def test_wheel_ships_every_runtime_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set(REQUIRED)
    for pattern in DATA_GLOBS:
        expected.update(p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern))
    for package in PACKAGES:  # every module of the shipped packages
        expected.update(p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")
                        if "__pycache__" not in p.parts)
    missing = sorted(expected - names)
    assert not missing, f"{wheel.name} lacks files the program needs: {missing}"
    assert not any(n.startswith("tests/") for n in names), "the test suite must not ship in the wheel"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; dependencies resolve from the running interpreter's site-packages."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv])
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv with {sys.executable}: {_tail(made, 1000)}")
    python = venv / "bin" / "python"
    # Installed before the dependencies arrive, so pip sees an empty environment (not the repo's editable install).
    pip = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    assert pip.returncode == 0, _tail(pip)
    site_dir = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert site_dir.is_dir(), site_dir
    deps = Path(sysconfig.get_paths()["purelib"])
    for entry in deps.iterdir():
        if entry.name.startswith(("__editable__", "ratchet_loop-", "ratchet_loop.")):
            continue  # the repository's own (editable) install: its finder would import the checkout
        target = site_dir / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        elif not target.exists():
            _link_or_copy(entry, target)
    return venv


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst, follow_symlinks=False)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    return env


def test_installed_packages_come_from_the_wheel(installed, tmp_path):
    python = installed / "bin" / "python"
    probe = ("import json, sysconfig, numpy, optimizer, domains, configs\n"
             "from optimizer.workspace.config import default_config_path\n"
             "from optimizer.lifecycle.initialize import source_root\n"
             "from domains import get_domain\n"
             "d = get_domain('fraud')\n"
             "print(json.dumps({'site': sysconfig.get_paths()['purelib'], 'modules': [optimizer.__file__, "
             "domains.__file__, configs.__file__], 'config': str(default_config_path('fraud')), "
             "'root': str(source_root()), 'policy': str(d.baseline_policy), 'program': str(d.program)}))\n")
    proc = _run([python, "-c", probe], cwd=tmp_path, env=_env(tmp_path))
    assert proc.returncode == 0, _tail(proc)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    site_dir = Path(info["site"]).resolve()
    assert site_dir.is_relative_to(installed.resolve())
    for path in (*info["modules"], info["config"], info["root"], info["policy"], info["program"]):
        resolved = Path(path).resolve()
        assert resolved == site_dir or resolved.is_relative_to(site_dir), f"{path} is not from the wheel install"
        assert not resolved.is_relative_to(ROOT), f"{path} comes from the repository, not the wheel"
    for path in (info["config"], info["policy"], info["program"]):
        assert Path(path).is_file(), path


def test_installed_ratchet_inits_and_tries_outside_the_repo(installed, tmp_path):
    ratchet = installed / "bin" / "ratchet"
    assert ratchet.is_file(), "the wheel did not install the ratchet console script"
    env = _env(tmp_path)
    init = _run([ratchet, "init", "fraud", "--workspace", "ws", "--rows", "30000"], cwd=tmp_path, env=env,
                timeout=300)
    assert init.returncode == 0, _tail(init)
    ws = tmp_path / "ws"
    assert (ws / "ratchet.yaml").is_file() and (ws / "policy.py").is_file() and (ws / "program.md").is_file()
    assert f"workspace {ws}" in init.stdout and "holdout sealed" in init.stdout, init.stdout
    assert (ws / "policy.py").read_text() == (ROOT / "domains" / "fraud" / "policy.py").read_text()

    # A real change (an identical candidate stops at the change guard), so the installed sandbox fits and runs the
    # baseline and the candidate, and the guards and the gate judge it.
    from optimizer.base.tunables import rewrite

    candidate = tmp_path / "candidate.py"
    candidate.write_text(rewrite((ws / "policy.py").read_text(), {"N_ESTIMATORS": 150}))
    tried = _run([ratchet, "try", "ws", candidate, "--json"], cwd=tmp_path, env=env, timeout=300)
    assert tried.returncode in (0, 1), _tail(tried)  # 0 kept, 1 rejected; 2 is a usage or integrity error
    verdict = json.loads(tried.stdout.strip().splitlines()[-1])
    assert verdict["kept"] is (tried.returncode == 0), verdict
    guards = {r["guard"] for r in verdict["reasons"]}
    assert {"integrity", "static", "sandbox", "significance"} <= guards, verdict  # the whole pipeline ran
    assert next(r for r in verdict["reasons"] if r["guard"] == "sandbox")["passed"], verdict
    assert verdict["metrics"]["dev"], verdict  # the candidate was run in the sandbox and scored
