"""Unified diffs of policy versions: what an experiment changed (records, MLflow, the meta-agent's memory)."""
from __future__ import annotations

import difflib
import io


def unified_diff(old: str, new: str, name: str = "policy.py") -> str:
    """A unified diff of two versions of a file, as `git diff` would label it."""
    # Split where Python's tokenizer does (str.splitlines also splits on \f, \x1c, \u2028 ...); a last line without
    # a newline would glue onto the next diff line, so terminate it.
    a, b = ([s if s.endswith("\n") else s + "\n" for s in io.StringIO(text, newline="").readlines()]
            for text in (old, new))
    return "".join(difflib.unified_diff(a, b, fromfile=f"a/{name}", tofile=f"b/{name}"))


def changed_lines(diff: str) -> list[str]:
    """The added and removed lines of a unified diff (file headers left out)."""
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def merge(base: str, ours: str, theirs: str) -> str | None:
    """Three-way merge of two changes of `base` (git merge-file): `ours`' and `theirs'` edits both applied, or None
    when they touch the same lines."""
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="ratchet-merge-") as folder:
        paths = [Path(folder, name) for name in ("ours.py", "base.py", "theirs.py")]
        for path, text in zip(paths, (ours, base, theirs)):
            path.write_text(text, encoding="utf-8")
        done = subprocess.run(["git", "merge-file", "-p", "-q", *map(str, paths)], capture_output=True)
    return done.stdout.decode("utf-8") if done.returncode == 0 else None
