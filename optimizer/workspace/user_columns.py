"""The user's own column names, as `ratchet init DOMAIN --data FILE --map KEY=COLUMN` recorded them (ratchet.yaml
`data.mapping`), read as ratchet's: live rows (`serve`, shadow events, outcomes) may name a mapped column either
way, never both. Unmapped feature columns kept their names at import, so they need nothing."""
from __future__ import annotations

import importlib
from typing import Any, Mapping

import pandas as pd

from optimizer.base.errors import RatchetError


def key_columns(domain: Any) -> dict[str, str]:
    """The domain's `--map` key -> the column its importer writes (time -> ts). Every domain reads time, id and entity
    into its `columns`; the other keys come from the importer's MAPPING_KEYS, which the adapter module imports."""
    cols = domain.columns
    out = {k: v for k, v in (("id", cols.id), ("time", cols.time), ("entity", cols.entity)) if v}
    keys = getattr(importlib.import_module(type(domain).__module__), "MAPPING_KEYS", None)
    return {**out, **(dict(keys) if isinstance(keys, Mapping) else {})}


def renames(ctx: Any) -> dict[str, str]:
    """The user's column -> ratchet's, for each mapped column whose names differ; empty for generated data."""
    data = ctx.config.data
    if data.source != "file":
        return {}
    ours = key_columns(ctx.domain)
    return {user: ours[key] for key, user in data.mapping.items() if user and key in ours and user != ours[key]}


def both(names: Any, renamed: Mapping[str, str]) -> tuple[str, str] | None:
    """A (user's, ratchet's) pair of names of one column that `names` both hold. A ratchet name that is itself a mapped
    user name (columns swapped at import) is read as the user's, so it is no clash."""
    present = set(names)
    for user, ours in renamed.items():
        if user in present and ours in present and ours not in renamed:
            return user, ours
    return None


def to_ours(frame: pd.DataFrame, renamed: Mapping[str, str], *, source: str) -> pd.DataFrame:
    """`frame` with the user's mapped columns under ratchet's names; RatchetError naming `source` and both names
    when one column arrives under both."""
    if not renamed:
        return frame
    clash = both(frame.columns, renamed)
    if clash:
        raise RatchetError(f"{source}: holds both {clash[0]!r} (your column, mapped at init) and {clash[1]!r} "
                           "(ratchet's name for it); keep one of them.")
    return frame.rename(columns={c: renamed[c] for c in frame.columns if c in renamed})


def shown(column: str, renamed: Mapping[str, str]) -> str:
    """`column` as the person knows it: the user's name with ratchet's beside it when it was mapped."""
    user = next((u for u, ours in renamed.items() if ours == column), None)
    return column if user is None else f"{user} ({column})"
