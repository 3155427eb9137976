"""A person's candidates: every *.py in a folder, in name order, each a whole policy.py."""
from __future__ import annotations

import ast
from pathlib import Path

from optimizer.errors import RatchetError
from optimizer.proposers._base import Candidate, ProposalContext, Proposer


def hypothesis_of(source: str, fallback: str) -> str:
    """The first line of the module docstring, else a `# hypothesis:` comment, else the file name."""
    for line in source.splitlines():
        if line.strip().lower().startswith("# hypothesis:"):
            return line.split(":", 1)[1].strip()
    try:
        doc = ast.get_docstring(ast.parse(source))
    except SyntaxError:
        doc = None
    return (doc.strip().splitlines()[0] if doc else fallback)[:300]


class PatchesProposer(Proposer):
    name = "patches"

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise RatchetError(f"{folder}: patches folder not found. Pass a folder of candidate policy files.")
        self._queue = sorted(folder.glob("*.py"))
        if not self._queue:
            raise RatchetError(f"{folder}: no *.py candidate files in it.")

    def propose(self, context: ProposalContext) -> Candidate | None:
        if not self._queue:
            return None
        path = self._queue.pop(0)
        source = path.read_text()
        return Candidate(source, hypothesis_of(source, path.name), {"file": path.name})
