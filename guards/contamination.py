"""Contamination: holdout knowledge showing up where it must not, and columns that leak the label.

- `scan_literals`: a candidate whose source holds several holdout identifiers (or values) has
  memorised holdout rows; any planted canary id anywhere in it is proof of a leak. Given the dev rows'
  feature values (`row_values`), it also refuses a candidate whose literals copy them: what a proposer
  writes after a trace showed it the dev frauds its model missed (`abs(row.V14 - -7.3345102) < 1e-6`).
- `find_canaries` / `check_text`: canaries in a trace, a prompt, a log or an artifact;
  `check_outgoing` also counts holdout ids in text about to leave the process.
- `label_leakage`: a single column that predicts the label almost perfectly is derived from it.

Details never repeat which literals matched or a canary in full: a verdict is shown to proposers
and written to logs, and must not become a holdout-membership oracle or spread the canary itself.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from guards._columns import datetime_seconds
from guards._result import GuardName, GuardResult
from guards.static import parse_tree

TRIVIAL_BELOW = 1000  # integers this small are ordinary tuning constants, never evidence of an id
MIN_STRING_LEN = 3  # one- and two-character strings are column suffixes and flags, not ids

# Dev rows memorised. The rule: a numeric literal that is not a whole number and has >= DEV_MIN_DIGITS significant
# digits matches when some dev feature value rounds to it at its own printed precision; a policy is refused when
# >= min_matches distinct literals match AND chance alone (each literal's chance being the density of dev values
# around it at its precision) would give that many matches with probability below DEV_ALPHA.
DEV_MIN_DIGITS = 5  # 0.08, 220.0, 0.1234: tuning constants, never precise enough to point at a row
DEV_WINDOW_CELLS = 1000  # the neighbourhood, in steps of the literal's last digit either side, that gives its density
DEV_ALPHA = 1e-3  # how unlikely the matches must be by chance before they count as memorised


def _key(value: Any) -> str | None:
    """A comparable form for ids and literals: 250123, 250123.0 and "250123" all match."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def id_keys(values: Iterable[Any]) -> frozenset[str]:
    """Holdout ids in comparable form, computed once per seal rather than per candidate."""
    return frozenset(k for k in map(_key, values) if k is not None)


@dataclass(frozen=True, eq=False)
class RowValues:
    """The numeric feature values of a frame's rows, sorted and distinct, for `scan_literals(dev_values=...)`.

    One sorted float64 array answers "does a value round to this literal at d decimals" for every d at once (two
    binary searches): 100k rows x 30 columns is 24 MB, rather than one set of rounded values per precision."""

    values: np.ndarray  # sorted, distinct, finite, no whole numbers (they can never match; see _dev_precision)
    rows: int
    columns: tuple[str, ...]


def row_values(frame: pd.DataFrame, columns: Iterable[str]) -> RowValues:
    """The values of `frame`'s numeric (not boolean) `columns`: the features a literal could have copied. The
    caller leaves out ids, time, the label and columns never shown to a policy; integer columns hold only whole
    numbers and are skipped here."""
    used: list[str] = []
    parts: list[np.ndarray] = []
    for col in columns:
        if col not in frame.columns:
            continue
        series = frame[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_float_dtype(series):
            continue
        values = np.unique(series.to_numpy(dtype=np.float64, na_value=np.nan))  # sorted; NaN last
        values = values[np.isfinite(values)]
        parts.append(values[values != np.floor(values)])
        used.append(str(col))
    values = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.float64)
    return RowValues(values, int(len(frame)), tuple(used))


def _dev_precision(value: float) -> int | None:
    """The decimals a literal is printed with, when it is precise enough to point at a row (else None)."""
    if not math.isfinite(value) or value.is_integer():
        return None  # counts, ids, round thresholds: never a copied feature value
    digits = Decimal(repr(abs(value))).normalize().as_tuple()
    if len(digits.digits) < DEV_MIN_DIGITS:
        return None
    return -int(digits.exponent)


def _poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam): no smaller than the chance of k matches among independent literals whose
    chances add up to lam, beyond the mean."""
    if k <= 0:
        return 1.0
    if lam <= 0.0:
        return 0.0
    if k <= lam:
        return 1.0  # no more than chance explains; the exact figure does not matter here
    term = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
    total, j = 0.0, k
    while term > 0.0 and term > total * 1e-16:
        total += term
        j += 1
        term *= lam / j
    return min(1.0, total)


def _dev_matches(literals: Iterable[Any], index: RowValues) -> tuple[int, float]:
    """(distinct literals that a dev value rounds to, the number chance alone would give)."""
    values = index.values
    hits, expected = 0, 0.0
    seen: set[float] = set()
    for v in literals:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        v = float(v)
        if v in seen:
            continue
        seen.add(v)
        d = _dev_precision(v)
        if d is None or not len(values):
            continue
        step = 10.0 ** -d
        half = 0.5 * step * (1 + 1e-9) + abs(v) * 4e-16  # a value rounding to v at d decimals, float error included
        if np.searchsorted(values, v + half, "right") > np.searchsorted(values, v - half, "left"):
            hits += 1
        # Chance of a match: the share of the 2 x DEV_WINDOW_CELLS steps around v that hold a dev value (each value
        # covers about one step). A matched value counts in its own neighbourhood, which only makes the figure
        # larger (the guard more lenient). Columns are pooled: which column a literal was compared with is unknown.
        width = DEV_WINDOW_CELLS * step
        near = np.searchsorted(values, v + width, "right") - np.searchsorted(values, v - width, "left")
        expected += min(1.0, float(near) / (2 * DEV_WINDOW_CELLS))
    return hits, expected


def _is_trivial(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value).is_integer() and abs(value) < TRIVIAL_BELOW
    return isinstance(value, (str, bytes)) and len(value) < MIN_STRING_LEN


def _literals(tree: ast.AST) -> list[tuple[int, Any]]:
    """(line, value) for every number, string and bytes literal; `-5` counts as -5."""
    negated: set[int] = set()
    out: list[tuple[int, Any]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            v = node.operand.value
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((node.lineno, -v))
                negated.add(id(node.operand))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in negated:
            v = node.value
            if isinstance(v, (int, float, str, bytes)) and not isinstance(v, bool):
                out.append((node.lineno, v))
    return out


def _mask(canary: str) -> str:
    return canary[:6] + "…" if len(canary) > 6 else canary


def find_canaries(text: str, canaries: Iterable[str]) -> list[str]:
    """The canaries that occur verbatim in `text`, in order of first appearance."""
    found = [(text.find(c), c) for c in dict.fromkeys(str(c) for c in canaries) if c and c in text]
    return [c for _, c in sorted(found)]


def check_text(where: str, text: str, canaries: Iterable[str]) -> GuardResult:
    """Fail when any holdout canary occurs in `text` (a trace, a prompt, a log, an artifact)."""
    found = find_canaries(text, canaries)
    if not found:
        return GuardResult(GuardName.CONTAMINATION, True,
                           f"no holdout canary in {where}", {"where": where, "canaries": 0})
    pos = text.find(found[0])
    line = text.count("\n", 0, pos) + 1
    noun = "canary" if len(found) == 1 else "canaries"
    return GuardResult(GuardName.CONTAMINATION, False, f"{len(found)} holdout {noun} found in {where} (first, "
                       f"{_mask(found[0])}, at line {line}): holdout rows leaked into it",
                       {"where": where, "canaries": len(found), "first_line": line})


def check_outgoing(where: str, text: str, *, canaries: Iterable[str], holdout_ids: frozenset[str],
                   min_matches: int = 3) -> GuardResult:
    """Text about to leave the process (a model prompt): no canary, and fewer than `min_matches`
    distinct holdout ids among its tokens (small integers are never counted as ids)."""
    canary = check_text(where, text, canaries)
    if not canary.passed:
        return canary
    tokens = {t for t in re.findall(r"[A-Za-z0-9_.:-]+", text) if not (t.isdigit() and int(t) < TRIVIAL_BELOW)
              and len(t) >= MIN_STRING_LEN}
    hits = len({_key(t) for t in tokens} & holdout_ids)
    if hits >= min_matches:
        return GuardResult(GuardName.CONTAMINATION, False,
                           f"{hits} holdout ids found in {where}: holdout rows leaked into it",
                           {"where": where, "holdout_ids": hits})
    return GuardResult(GuardName.CONTAMINATION, True, f"no holdout canary or ids in {where}", {"where": where})


def scan_literals(source: str, *, holdout_ids: set[Any] | frozenset[str], holdout_values: set[Any] | None = None,
                  min_matches: int = 3, canaries: Iterable[str] = (),
                  dev_values: RowValues | None = None) -> GuardResult:
    """Fail on >= min_matches distinct literals that are holdout ids (or values), on any canary, and (given
    `dev_values`, from `row_values`) on >= min_matches distinct literals copied from dev rows' feature values
    beyond what chance explains (see DEV_MIN_DIGITS for the rule)."""
    canaries = [str(c) for c in canaries]
    hits = find_canaries(source, canaries)
    if hits:
        line = source.count("\n", 0, source.find(hits[0])) + 1
        return GuardResult(GuardName.CONTAMINATION, False, f"policy source contains {len(hits)} holdout canary id(s) "
                           f"(first, {_mask(hits[0])}, at line {line}): it was built from holdout rows",
                           {"canaries": len(hits), "first_line": line})
    try:
        tree = parse_tree(source)
    except SyntaxError as exc:
        return GuardResult(GuardName.CONTAMINATION, False, f"policy source does not parse (line {exc.lineno}); "
                           "literals cannot be checked", {"line": int(exc.lineno or 0)})
    ids = (holdout_ids if isinstance(holdout_ids, frozenset) else id_keys(holdout_ids)) | set(canaries)
    values = {k for k in map(_key, holdout_values or ()) if k is not None}
    id_hits: set[str] = set()
    value_hits: set[str] = set()
    literals = _literals(tree)
    for _, v in literals:
        if _is_trivial(v):
            continue
        k = _key(v)
        if k is None:
            continue
        if k in ids:
            id_hits.add(k)
        elif k in values:
            value_hits.add(k)
    figures: dict[str, Any] = {"literals": len(literals), "id_matches": len(id_hits),
                               "value_matches": len(value_hits), "min_matches": int(min_matches)}
    problems = []
    if len(id_hits) >= min_matches:
        problems.append(f"{len(id_hits)} distinct literals are holdout identifiers")
    if len(value_hits) >= min_matches:
        problems.append(f"{len(value_hits)} distinct literals are holdout values")
    memorised = ""
    if dev_values is not None:
        dev_hits, expected = _dev_matches((v for _, v in literals), dev_values)
        chance = _poisson_tail(dev_hits, expected)
        figures.update(dev_matches=dev_hits, dev_expected=round(expected, 4), dev_chance=chance)
        if dev_hits >= min_matches and chance < DEV_ALPHA:
            # As for the holdout, which literals matched is not said: the count is enough to act on.
            memorised = (f"policy source memorises dev rows: {dev_hits} distinct literals equal feature values of "
                         f"dev rows (limit {min_matches - 1}; chance alone would match about {expected:.2g})")
    if problems or memorised:
        # Which literals matched is withheld on purpose (see the module docstring).
        held = (f"policy source memorises holdout rows: {' and '.join(problems)} (limit {min_matches - 1})"
                if problems else "")
        return GuardResult(GuardName.CONTAMINATION, False, "; ".join(x for x in (held, memorised) if x), figures)
    dev = "" if dev_values is None else ", nor copies of dev rows' feature values,"
    return GuardResult(GuardName.CONTAMINATION, True,
                       f"no holdout canary and fewer than {min_matches} holdout ids or values"
                       f"{dev} among {len(literals)} literals", figures)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """Symmetric ROC-AUC: the Mann-Whitney U over n1 x n0 (ties count half), max(AUC, 1 - AUC).

    The same figure as sklearn's roc_auc_score, from one sort of one class and a binary search per row of the
    other, without its input checks and threshold curve (the leakage check scores every column twice)."""
    positive = y == 1
    pos, neg = score[positive], score[~positive]
    neg.sort()  # in place: the selection is already a copy
    if not len(pos) or not len(neg):
        raise ValueError("ROC-AUC needs both label classes among the rows")
    below = np.searchsorted(neg, pos, side="left").sum() + np.searchsorted(neg, pos, side="right").sum()
    auc = float(below) / 2 / (len(pos) * len(neg))
    return max(auc, 1.0 - auc)  # a column that ranks the label backwards leaks just as much


def _raw_score(series: pd.Series) -> np.ndarray | None:
    """The column as numbers (missing values ranked lowest), or None for non-numeric columns."""
    if pd.api.types.is_datetime64_any_dtype(series):
        values = datetime_seconds(series)
    elif pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype(float).to_numpy(dtype=float, na_value=np.nan)
    else:
        return None
    missing = np.isnan(values)
    if missing.all():
        return None
    return np.where(missing, np.nanmin(values) - 1.0, values) if missing.any() else values


def _one_per_row(series: pd.Series) -> bool:
    """Whether every value occurs once (missing values count as one value, as factorize has them). Numbers are
    sorted rather than hashed: a hash table of 10M distinct ids took about 0.4 GiB, a sorted copy takes 80 MB."""
    if series.isna().sum() > 1:
        return False
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan) if series.hasnans else series.to_numpy()
        ordered = values if series.is_monotonic_increasing else np.sort(values)  # ids often come in order
        return not (ordered[1:] == ordered[:-1]).any()
    return bool(series.is_unique)


def _out_of_fold_encoding(series: pd.Series, y: np.ndarray, fold_rows: Sequence[np.ndarray]) -> np.ndarray:
    """Each row's value replaced by the label mean of that value in the OTHER folds (prior if unseen).

    The other folds' sums are the whole column's minus the fold's own: exact, since y is 0/1. A column with a
    value per row (an id) is the other folds' prior everywhere, without the per-value tables."""
    out, total = np.empty(len(y), dtype=float), y.sum()
    distinct = _one_per_row(series)  # then no row's value occurs in another fold: the prior everywhere
    if not distinct:
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
        k = len(uniques)
        del uniques
        all_sums, all_counts = np.bincount(codes, weights=y, minlength=k), np.bincount(codes, minlength=k)
    for rows in fold_rows:
        labels = y[rows]
        prior = (total - labels.sum()) / (len(y) - len(rows))
        if distinct:
            out[rows] = prior
            continue
        held = codes[rows]
        sums = all_sums - np.bincount(held, weights=labels, minlength=k)
        counts = all_counts - np.bincount(held, minlength=k)
        c = counts[held]
        out[rows] = np.where(c > 0, sums[held] / np.maximum(c, 1), prior)
    return out


def label_leakage(frame: pd.DataFrame, label: str, columns: Sequence[str], *, threshold: float = 0.98,
                  folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Single-column predictive power for the label: symmetric ROC-AUC per column.

    Each column is scored by its raw value (numeric columns) and by an out-of-fold per-value label
    mean (every column; catches ids and categories that map to the label). A label with more than
    two classes is taken one class against the rest, and a column's figure is its worst case over
    the classes. Returns "auc" (the larger of the two), "raw_auc", "encoded_auc", "leaking"
    (columns with auc >= threshold, worst first), "threshold" and "rows".
    """
    if label not in frame.columns:
        raise ValueError(f"label_leakage: label column {label!r} is not in the frame")
    y_raw = frame[label]
    if y_raw.isna().any():
        raise ValueError(f"label_leakage: label column {label!r} has {int(y_raw.isna().sum())} missing values")
    classes = sorted(pd.unique(y_raw), key=str)
    if len(classes) < 2:
        raise ValueError(f"label_leakage: label column {label!r} must have at least 2 classes; found {len(classes)}")
    targets = [classes[-1]] if len(classes) == 2 else classes
    raw_auc: dict[str, float | None] = {}
    encoded_auc: dict[str, float] = {}
    auc: dict[str, float] = {}
    fold_of = np.random.default_rng(seed).permutation(len(frame)) % folds  # the same folds for every column
    index = np.int32 if len(frame) < 2**31 else np.int64  # half the memory for the row numbers at 10M rows
    fold_rows = [np.flatnonzero(fold_of == f).astype(index) for f in range(folds)]
    del fold_of
    for col in columns:
        if col not in frame.columns:
            raise ValueError(f"label_leakage: column {col!r} is not in the frame")
        raw = _raw_score(frame[col])
        for target in targets:
            y = (y_raw == target).to_numpy(dtype=float)
            r = _auc(y, raw) if raw is not None else None
            e = _auc(y, _out_of_fold_encoding(frame[col], y, fold_rows))
            if col not in auc or max(e, r or 0.0) > auc[col]:
                raw_auc[col], encoded_auc[col], auc[col] = r, e, max(e, r or 0.0)
    leaking = sorted((c for c in auc if auc[c] >= threshold), key=lambda c: -auc[c])
    return {"auc": auc, "raw_auc": raw_auc, "encoded_auc": encoded_auc, "leaking": leaking,
            "threshold": float(threshold), "rows": int(len(frame))}
