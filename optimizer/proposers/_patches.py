"""A person's candidates: every *.py in a folder, in name order, each a whole policy.py."""
from __future__ import annotations

import ast
import logging
from pathlib import Path

from guards.static import parse_tree
from optimizer.base.errors import RatchetError
from optimizer.proposers._base import Candidate, ProposalContext, Proposer

log = logging.getLogger("ratchet")


def hypothesis_of(source: str, fallback: str) -> str:
    """The first line of the module docstring, else a `# hypothesis:` comment, else the file name."""
    for line in source.splitlines():
        if line.strip().lower().startswith("# hypothesis:"):
            return line.split(":", 1)[1].strip()
    try:
        doc = ast.get_docstring(parse_tree(source))
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
        while self._queue:
            path = self._queue.pop(0)
            try:
                source = read_candidate(path)
            except RatchetError as exc:  # an unreadable file is skipped, said once, and the loop goes on
                log.warning("patches: skipped %s", exc)
                continue
            return Candidate(source, hypothesis_of(source, path.name), {"file": path.name})
        return None

    def rebase(self, candidate: Candidate, old: str, new: str) -> Candidate | None:
        """Each file is a whole policy, judged as written against whichever champion holds then (as in a run of
        one at a time)."""
        return candidate


def read_candidate(path: Path) -> str:
    """A candidate policy file's text; RatchetError naming the file when it is missing, empty or not UTF-8."""
    if not path.is_file():
        raise RatchetError(f"{path}: candidate file not found.")
    data = path.read_bytes()
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RatchetError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); save the "
                           "policy as UTF-8.") from None
    if not source.strip():
        raise RatchetError(f"{path}: the candidate file is empty; a policy defines fit(train) and decide(model, rows).")
    return source
