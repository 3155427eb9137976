"""Look-ahead: a decision may depend only on rows up to its own time.

The policy decides the dev rows twice: once given only the rows before a cut, once given all of
them. A point-in-time policy gives the same decisions for the rows before the cut either way; a
policy that peeks at later rows (future spending, future labels by proxy, whole-set ranks)
changes them.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from guards._result import GuardName, GuardResult


def cut_rows(n: int, fraction: float = 0.5) -> int:
    """How many leading rows form the prefix: at least 1, and at least 1 row left after the cut."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1; got {fraction!r}")
    if n < 2:
        raise ValueError(f"a look-ahead check needs at least 2 rows; got {n}")
    return min(max(int(n * fraction), 1), n - 1)


def _is_numeric(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_


def _differs(a: np.ndarray, b: np.ndarray, atol: float) -> npt.NDArray[np.bool_]:
    if _is_numeric(a) and _is_numeric(b):
        return ~np.isclose(a.astype(np.float64), b.astype(np.float64), rtol=0.0, atol=atol, equal_nan=True)
    # Team names, prices as strings, mixed objects: exact equality, element by element.
    return np.array([not (x == y or (x != x and y != y)) for x, y in zip(a.tolist(), b.tolist())], dtype=bool)


def check_point_in_time(prefix_decisions: np.ndarray, full_decisions_on_prefix: np.ndarray, *,
                        atol: float = 1e-9) -> GuardResult:
    """Pass when decisions for the rows before the cut do not change once later rows are given too."""
    alone = np.asarray(prefix_decisions)
    full = np.asarray(full_decisions_on_prefix)
    if alone.ndim != 1 or full.ndim != 1 or len(alone) != len(full):
        return GuardResult(GuardName.LOOKAHEAD, False,
                           f"cannot compare: {alone.shape} decisions on the prefix alone vs "
                           f"{full.shape} from the full run; expected one per prefix row",
                           {"n_prefix": int(alone.size), "n_full": int(full.size)})
    diff = _differs(alone, full, atol)
    n_diff = int(diff.sum())
    figures: dict[str, float | int | str] = {"rows": int(len(alone)), "differing": n_diff, "atol": float(atol)}
    if n_diff == 0:
        return GuardResult(GuardName.LOOKAHEAD, True, f"all {len(alone)} decisions before the cut are the same with or "
                           "without later rows", figures)
    i = int(np.argmax(diff))
    figures.update({"first_index": i, "prefix_value": repr(alone[i].item() if hasattr(alone[i], "item") else alone[i]),
                    "full_value": repr(full[i].item() if hasattr(full[i], "item") else full[i])})
    return GuardResult(GuardName.LOOKAHEAD, False,
                       f"{n_diff} of {len(alone)} decisions before the cut changed when later "
                       f"rows were given (first at row {i}: {figures['prefix_value']} from the prefix alone vs "
                       f"{figures['full_value']} with later rows): decide() looks ahead", figures)
