"""The README's quickstart as data: its console blocks, each a list of (command, the output lines it shows).

A block is a ```console fence under "## Quickstart"; a line starting with `$ ` is a command, the lines after it
until the next command are what it prints (a line may leave parts out with `…`, which stands for any text).
`tests/test_quickstart.py` and `benchmarks/quickstart.py` run them as written and hold the output to them.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ELISION = "…"


@dataclass(frozen=True)
class Step:
    command: str
    shown: tuple[str, ...]  # output lines the README shows (with … for what it leaves out)


def blocks(text: str | None = None) -> list[list[Step]]:
    text = README.read_text() if text is None else text
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    out = []
    for body in re.findall(r"```console\n(.*?)```", section, re.S):
        steps: list[Step] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:].strip(), ()))
            elif steps and line.strip() and line.strip() != ELISION:
                steps[-1] = Step(steps[-1].command, (*steps[-1].shown, line.rstrip()))
        out.append(steps)
    return out


def pattern(shown: str) -> re.Pattern:
    """A shown line as a regex: literal text, `…` any text, the table's padding any run of spaces."""
    parts = [re.escape(p) for p in shown.strip().split(ELISION)]
    return re.compile(".*?".join(p.replace(r"\ \ ", r"\s+") for p in parts))


def argv(command: str) -> list[str]:
    """A README command as the process to start: `ratchet` is this environment's, `make demo` what the Makefile
    runs for it (the environment is made already)."""
    words = shlex.split(command)
    if words[:2] == ["make", "demo"]:
        recipe = next(line for line in (ROOT / "Makefile").read_text().splitlines()
                      if line.startswith("\t") and "ratchet demo" in line)
        words = shlex.split(recipe.strip().replace("$(BIN)/", ""))
    if words[0] == "ratchet":
        words = [str(Path(sys.executable).parent / "ratchet"), *words[1:]]
    return words


def run(step: Step, folder: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run one step in `folder` as a person would (the workspace's own MLflow store, no test overrides) and return
    it with the shown lines it did not print."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    proc = subprocess.run(argv(step.command), cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    printed = (proc.stdout + "\n" + proc.stderr).splitlines()
    missing = [s for s in step.shown if not any(pattern(s).search(line) for line in printed)]
    return proc, missing
