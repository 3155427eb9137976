"""The errors every layer may raise: one clear line (what, where, what to do), never a traceback.

A leaf module (it imports nothing of the project), so domains, holdout and guards can raise them without
reaching up into the optimizer; the CLI maps each class to its exit code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd


class RatchetError(Exception):
    """A mistake the user can fix; the CLI prints it as one line."""


class IntegrityError(RatchetError):
    """The holdout, its seal, the ledger or the scorer does not verify."""


class WorkspaceBusy(RatchetError):
    """Another process holds the workspace's runner lock (one command at a time writes a workspace)."""


def listing(values: Sequence[object], limit: int = 12, *, total: str = "in all") -> str:
    """Up to `limit` values for a message, with how many there are in all."""
    shown = [str(v) for v in values[:limit]]
    return ", ".join(shown) + (f", ... ({len(values):,} {total})" if len(values) > limit else "")


def examples(series: pd.Series, bad: npt.NDArray[np.bool_]) -> str:
    """Up to five distinct offending values of a pandas Series under a boolean mask (the row count is the
    caller's)."""
    return listing(list(dict.fromkeys(repr(v) for v in series[bad].tolist())), 5, total="different values")
