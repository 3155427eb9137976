"""The meta-agent's memory: what was tried, what it changed, what it scored and why it was judged so.

Built from the ledger and the experiments' diff files on every proposal, so it persists in the
workspace and a resumed run starts from everything earlier runs learned. Dev information only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from optimizer.base.diffs import changed_lines


def diff_summary(diff: str, limit: int = 4) -> str:
    """The first changed lines of a unified diff, on one line."""
    changed = changed_lines(diff)
    shown = "; ".join(ln[:100].strip() for ln in changed[:limit])
    return shown + (f"; ... ({len(changed)} lines)" if len(changed) > limit else "") if changed else "(no change)"


def summarize(history: Sequence[Mapping[str, Any]], experiments: Path, primary: str, limit: int) -> str:
    """One line per recent experiment: id, verdict, failed guards, primary metric, hypothesis, diff."""
    lines = []
    for h in list(history)[-limit:]:
        exp = h.get("experiment") or "?"
        failed = h.get("failed_guards") or ()
        metric = (h.get("dev_metrics") or {}).get(primary)
        diff_file = experiments / exp / "diff.patch"
        diff = diff_summary(diff_file.read_text()) if diff_file.is_file() else "(diff not found)"
        lines.append(f"- {exp} {h.get('status')}" + (f" [failed: {', '.join(failed)}]" if failed else "")
                     + (f" {primary}={metric:.4f}" if isinstance(metric, (int, float)) else "")
                     + f" | {h.get('hypothesis') or '-'} | {diff}")
    return "\n".join(lines) if lines else "(no experiments yet)"
