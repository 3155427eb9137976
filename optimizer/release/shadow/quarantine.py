"""Live events against the workspace's data contract: each bad row is set aside with its reason, never decided.

Whole-file problems (a missing column, a label or outcome-only column in the events) refuse the file; row
problems (a null, a value out of range, a duplicate id, a value of the wrong type) quarantine the row. The
expectations are the Great Expectations suite the workspace sealed (contract/suite.json), validated with GX on
the whole batch, every row (COMPLETE result format: the failing rows' indices). On a workspace imported with
`--map KEY=COLUMN` the events may use the user's mapped column names; they are read as ratchet's first.

A trial decides new events only (`refuse_seen`): a file holding any event the workspace already has (an id, or the
same decision-time values under another id, of train, dev, the holdout with its canaries or a retired holdout), or
timed at or before the end of the sealed data, is refused whole. Otherwise the holdout's own rows, sent as live
events with its labels as outcomes, would read any policy's holdout metrics with no gate answer spent.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from domains.errors import listing
from holdout.hashing import hashes_in, row_hashes
from optimizer.base.errors import RatchetError
from optimizer.workspace.user_columns import renames, shown, to_ours


@dataclass(frozen=True)
class Checked:
    valid: pd.DataFrame  # the rows a policy may decide, in file order, typed like the workspace's dev split
    quarantined: pd.DataFrame  # row_number (1 = first data row), event_id (text or None), reason
    dropped_columns: tuple[str, ...]  # columns no policy reads, ignored


def check_events(ctx, events: pd.DataFrame, *, source: str) -> Checked:
    """Split `events` into valid rows and quarantined ones; RatchetError for a file that cannot be used at all."""
    cols = ctx.domain.columns
    view = ctx.domain.policy_view(ctx.dev, with_label=False)
    renamed = renames(ctx)
    events = to_ours(events, renamed, source=source)
    hidden = sorted(set(events.columns) & {cols.label, *cols.outcome_only, *cols.train_only})
    if hidden:
        raise RatchetError(f"{source}: holds {', '.join(shown(c, renamed) for c in hidden)}, which a policy must never "
                           "see at decision time; remove the label and outcome columns (outcomes go to `ratchet "
                           "shadow outcomes`).")
    missing = [c for c in view.columns if c not in events.columns]
    if missing:
        need = ", ".join(shown(c, renamed) for c in view.columns)
        raise RatchetError(f"{source}: missing column(s) {', '.join(shown(c, renamed) for c in missing)} that the "
                           f"workspace's policy reads; the events need {need}.")
    reasons: dict[int, list[str]] = {}
    typed = pd.DataFrame(index=events.index)
    for col in view.columns:
        typed[col], bad = _coerce(events[col], view[col].dtype)
        for i in bad[bad].index:
            reasons.setdefault(i, []).append(f"column {col!r}: wrong type ({str(events.at[i, col])[:40]!r})")
    ids = typed[cols.id]
    duplicate = ids.notna() & ids.duplicated(keep="first")
    for i in duplicate[duplicate].index:
        reasons.setdefault(i, []).append(f"column {cols.id!r}: duplicate id {str(ids.at[i])[:40]!r} (first one kept)")
    for i, why in _contract_failures(ctx, typed.drop(index=duplicate[duplicate].index), list(view.columns)).items():
        reasons.setdefault(i, []).extend(why)
    bad_rows = sorted(reasons)
    quarantined = pd.DataFrame({"row_number": [i + 1 for i in bad_rows],
                                "event_id": [None if pd.isna(events.at[i, cols.id]) else str(events.at[i, cols.id])
                                             for i in bad_rows],
                                "reason": ["; ".join(reasons[i]) for i in bad_rows]})
    valid = typed.drop(index=bad_rows).reset_index(drop=True)
    return Checked(valid, quarantined, tuple(c for c in events.columns if c not in view.columns))


def refuse_seen(ctx, valid: pd.DataFrame, *, source: str) -> None:
    """RatchetError, in one line, when any valid event is one the workspace has seen or predates its sealed data."""
    cols = ctx.domain.columns
    retired = [pd.read_parquet(p) for p in sorted((ctx.ws.root / "retired").glob("holdout-*/holdout.parquet"))]
    seen = pd.concat([ctx.train, ctx.dev, ctx.holdout_all, *retired], ignore_index=True)
    content = [c for c in valid.columns if c != cols.id and c in seen.columns]
    try:
        typed = seen[content].astype(valid[content].dtypes.to_dict())
    except (TypeError, ValueError):  # a retired holdout typed otherwise: compare as text
        typed, valid = seen[content].astype(str), valid.assign(**{c: valid[c].astype(str) for c in content})
    end = seen[cols.time].max()
    why = {"an id the workspace holds": valid[cols.id].astype(str).isin(set(seen[cols.id].astype(str))).to_numpy(),
           "decision-time values the workspace holds": hashes_in(row_hashes(valid, content), row_hashes(typed, content)),
           "a time at or before the sealed data's end": (pd.to_datetime(valid[cols.time]) <= end).to_numpy()}
    bad = np.logical_or.reduce(list(why.values()))
    if not bad.any():
        return
    counts = ", ".join(f"{int(mask.sum()):,} with {what}" for what, mask in why.items() if mask.any())
    raise RatchetError(f"{source}: {int(bad.sum()):,} of {len(valid):,} events are not new ({counts}; first ids: "
                       f"{listing(valid.loc[bad, cols.id].astype(str).tolist(), 5)}): a trial decides only events "
                       f"after {end} that train, dev and the holdouts never held; remove them and start again.")


def _coerce(values: pd.Series, dtype) -> tuple[pd.Series, pd.Series]:
    """`values` as `dtype`, and which non-null values could not be read as it."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        out = pd.to_datetime(values, errors="coerce")
        out = out.dt.tz_localize(None) if getattr(out.dt, "tz", None) is not None else out
        out = out.astype(dtype)
    elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        out = pd.to_numeric(values, errors="coerce")
        whole = out.dropna()
        if pd.api.types.is_integer_dtype(dtype) and (whole == whole.round()).all() and out.notna().all():
            out = out.astype(dtype)
    else:
        out = values.astype("string")
    return out, values.notna() & out.isna()


def _contract_failures(ctx, frame: pd.DataFrame, columns: list[str]) -> dict[int, list[str]]:
    """Row index -> the sealed expectations it breaks, for the expectations on columns a policy reads."""
    from domains._gx import describe, import_gx, no_progress_bars

    suite_json = json.loads((ctx.ws.root / "contract" / "suite.json").read_text())
    gx = import_gx()
    stored = gx.ExpectationSuite(**{k: v for k, v in suite_json.items() if k in ("name", "expectations", "meta")})
    keep = [e for e in stored.expectations if getattr(e, "column", None) in columns
            and e.expectation_type != "expect_column_values_to_be_in_type_list"]  # types were coerced above
    if not keep or frame.empty:
        return {}
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = no_progress_bars()
    asset = context.data_sources.add_pandas("shadow").add_dataframe_asset("events")
    batch = asset.add_batch_definition_whole_dataframe("events").get_batch(batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = batch.validate(gx.ExpectationSuite(name=stored.name, expectations=keep), result_format="COMPLETE")
    out: dict[int, list[str]] = {}
    for r in result.results:
        if r.success:
            continue
        kind, kwargs = r.expectation_config.type, r.expectation_config.kwargs
        rows = (r.result or {}).get("unexpected_index_list")
        if rows is None:
            raise RatchetError(f"events: the contract's {kind} on column {kwargs.get('column')!r} failed for the whole "
                               "batch; fix the file and start the trial again.")
        for i in rows:
            out.setdefault(int(i), []).append(f"column {kwargs['column']!r}: {kind}{describe(kind, kwargs)}")
    return out
