"""A new domain is one folder plus one YAML: the fraud domain copied under a new name, into a copy of the source
tree, is discovered by the registry and runs `ratchet init` and `ratchet try` with no other file edited."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("optimizer", "domains", "holdout", "guards", "configs")
NAME = "cardcopy"


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(tree / "domains" / "fraud", tree / "domains" / NAME)  # the folder
    adapter = tree / "domains" / NAME / "adapter.py"
    source = adapter.read_text()
    assert source.count('name = "fraud"') == 1, "the fraud adapter declares its name once"
    adapter.write_text(source.replace('name = "fraud"', f'name = "{NAME}"'))
    config = (tree / "configs" / "fraud.yaml").read_text()  # the YAML
    assert "domain: fraud\n" in config
    (tree / "configs" / f"{NAME}.yaml").write_text(config.replace("domain: fraud\n", f"domain: {NAME}\n"))
    return tree


def _ratchet(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import sys, domains; assert domains.__file__.startswith(sys.argv[1]), domains.__file__; " \
           "sys.argv = ['ratchet', *sys.argv[2:]]; from optimizer.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, str(tree), *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_copied_domain_folder_and_yaml_run_init_and_try(tmp_path):
    tree = _tree(tmp_path)
    ws = tmp_path / "ws"
    init = _ratchet(tree, "init", NAME, "-w", str(ws), "--rows", "8000", "--seed", "3")
    assert init.returncode == 0, init.stderr + init.stdout
    manifest = json.loads((ws / "holdout" / "MANIFEST.json").read_text())
    assert manifest["domain"] == NAME
    assert f"domains/{NAME}/adapter.py" in manifest["scorer_sha256"]  # its own scorer is the sealed one
    candidate = tmp_path / "candidate.py"
    policy = (ws / "policy.py").read_text()
    assert "\nTHRESHOLD = 0.3 " in policy
    candidate.write_text(policy.replace("\nTHRESHOLD = 0.3 ", "\nTHRESHOLD = 0.32 "))
    tried = _ratchet(tree, "try", str(ws), str(candidate), "--json")
    assert tried.returncode in (0, 1), tried.stderr + tried.stdout
    verdict = json.loads(tried.stdout)
    assert verdict["experiment"] == "exp-0001"
    passed = {r["guard"] for r in verdict["reasons"] if r["passed"]}
    assert {"integrity", "static", "sandbox", "output"} <= passed, verdict["reasons"]
    assert "net_savings" in verdict["metrics"]["dev"]
