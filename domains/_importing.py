"""Helpers shared by the domains' importers of a user's CSV/Parquet.

Each domain maps the user's columns onto its own names; these functions read the file, check
the mapping and convert the common column kinds (ids, times, money amounts, 0/1 labels,
features). Every refusal is a one-line RatchetError naming the file, the column and the fix.
`role` is how the user named the column's purpose on the command line (e.g. "--time").
"""
from __future__ import annotations

import keyword
import logging
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from domains._times import START_EPOCH as START_EPOCH  # re-exported: the importers reach them here
from domains._times import TimeReading as TimeReading
from domains._times import times as times
from domains.errors import RatchetError as RatchetError
from domains.errors import examples as examples
from domains.errors import listing as listing

log = logging.getLogger(__name__)
# (raw frame, file name, mapping, the converted time column) -> our columns in order, "ts" among them
Convert = Callable[[pd.DataFrame, str, Mapping[str, str], pd.Series], Mapping[str, pd.Series]]


def map_flag(key: str) -> str:
    """How `ratchet init ... --map KEY=COLUMN` names a mapped column's purpose."""
    return f"--map {key}"


def load_mapped(file: Path, mapping: Mapping[str, str], *, keys: Sequence[str], required: Sequence[str],
                meaning: Mapping[str, str], ours: Sequence[str], convert: Convert,
                refusals: Mapping[str, str] | None = None, reading: TimeReading | None = None) -> pd.DataFrame:
    """A user's file under a `--map` mapping: check the mapping, read the time column as `reading` says,
    convert our columns with `convert`, keep every other numeric or text column as a feature, sort by time.
    `refusals`: a required key's own message. How the times were read is in `frame.attrs["import_notes"]`, the
    format a text time column was read with in `frame.attrs["time_format"]`."""
    file = Path(file)
    mapping = {k: v for k, v in mapping.items() if v}  # an option left unset arrives as None or ""
    raw = read(file)
    name = file.name
    unknown_keys(name, mapping, list(keys))
    for key in required:
        if key not in mapping:
            raise RatchetError(f"{name}: " + ((refusals or {}).get(key) or
                                              f"no column given for {key} ({meaning[key]}); pass --map {key}=COLUMN."))
    mapped_columns(name, mapping, list(raw.columns), role=map_flag, roles="--map " + "/".join(keys))
    notes: list[str] = []
    formats: dict[str, str] = {}
    ts = times(raw[mapping["time"]], name, mapping["time"], role=map_flag("time"), reading=reading or TimeReading(),
               notes=notes, formats=formats)
    out = convert(raw, name, mapping, ts)
    extra, dropped = features(raw, name, used=list(mapping.values()), ours=ours, text=True, notes=notes)
    frame = assemble({**out, **extra}, dropped, notes=notes, time_format=formats.get(mapping["time"]))
    if dropped:
        log.info("%s: dropped columns that are neither numbers nor text: %s", name, ", ".join(dropped))
    return frame


def read(file: Path) -> pd.DataFrame:
    """The file as a frame with text column names."""
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise RatchetError(f"{file.name}: unsupported file type {file.suffix or '(none)'!r}; "
                           "give a .csv, .parquet or .pq file.")
    if not file.is_file():
        raise RatchetError(f"{file}: no such file; check the path.")
    if file.stat().st_size == 0:
        raise RatchetError(f"{file.name}: empty file (0 bytes); export the data with its header row.")
    if suffix == ".csv":
        _text(file)
    fits_in_memory(file)
    try:
        raw = pd.read_csv(file) if suffix == ".csv" else pd.read_parquet(file, to_pandas_kwargs=FREE_AS_CONVERTED)
    except UnicodeDecodeError as exc:  # past the bytes _text looked at
        raise RatchetError(f"{file.name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} after the first "
                           f"{TEXT_PROBE // 1024} KiB); {NOT_UTF8}") from None
    except Exception as exc:  # any reader failure is the user's file, not our bug
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RatchetError(f"{file.name}: cannot be read as {suffix[1:]}: {first}") from exc
    raw.columns = [str(c) for c in raw.columns]
    return raw


TEXT_PROBE = 1 << 16
FREE_AS_CONVERTED = {"self_destruct": True}  # Arrow frees each column once converted: one copy in memory, not two
NOT_UTF8 = "save it as UTF-8 CSV (a spreadsheet's \"CSV UTF-8\"), or convert it, e.g. iconv -f latin1 -t utf-8."


def _text(file: Path) -> None:
    """Refuse a .csv whose first bytes are binary (a NUL byte, or more than 1% control bytes) or not UTF-8."""
    import codecs

    with open(file, "rb") as fh:
        head = fh.read(TEXT_PROBE)
    control = sum(b < 32 and b not in (9, 10, 13) for b in head)
    if b"\0" in head or control > len(head) // 100:
        raise RatchetError(f"{file.name}: binary content, not a CSV text file ({control:,} control bytes in the first "
                           f"{len(head):,}); export the data as comma-separated UTF-8 text, or as Parquet.")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError as exc:
        line = head[:exc.start].count(b"\n") + 1
        raise RatchetError(f"{file.name}: not UTF-8 text (byte 0x{head[exc.start]:02x} on line {line:,}); "
                           f"{NOT_UTF8}") from None


def fits_in_memory(file: Path, available: int | None = None) -> None:
    """Refuse a file whose import would need more memory than is free (rather than the kernel killing init).

    The estimate: a CSV's frame and its converted, split copies take about MEMORY_FACTOR times the text; a
    Parquet file's about MEMORY_FACTOR times rows x columns x 8 bytes (its metadata, not its compressed size)."""
    import psutil

    available = psutil.virtual_memory().available if available is None else available
    if file.suffix.lower() == ".csv":
        raw_bytes = file.stat().st_size
    else:
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(file).metadata
        except Exception:  # unreadable: read() says why
            return
        raw_bytes = meta.num_rows * meta.num_columns * 8
    needed = MEMORY_FACTOR * raw_bytes
    if needed > available:
        raise RatchetError(f"{file.name}: importing it needs about {needed / 2**30:.1f} GiB of memory and "
                           f"{available / 2**30:.1f} GiB are free; import a shorter history (e.g. the latest months) "
                           "or run init on a machine with more memory.")


MEMORY_FACTOR = 4


def unknown_keys(name: str, mapping: Mapping[str, str], keys: Sequence[str]) -> None:
    unknown = sorted(set(mapping) - set(keys))
    if unknown:
        raise RatchetError(f"{name}: unknown mapping key(s) {', '.join(unknown)}; use {', '.join(keys)}.")


def mapped_columns(name: str, mapping: Mapping[str, str], columns: Sequence[str], *,
                   role: Callable[[str], str], roles: str) -> None:
    """Every mapped column exists in the file and is mapped once; `roles` lists all roles for the error."""
    for key, col in mapping.items():
        if col not in columns:
            hint = next((f" The file looks {d!r}-delimited: ratchet reads comma-separated CSV, so save it with commas."
                         for d in (";", "\t", "|") if len(columns) == 1 and d in columns[0]), "")
            raise RatchetError(f"{name}: no column {col!r} for {role(key)}; columns are: {listing(columns)}.{hint}")
    used = list(mapping.values())
    twice = sorted({c for c in used if used.count(c) > 1})
    if twice:
        raise RatchetError(f"{name}: column {twice[0]!r} is mapped to more than one of {roles}; "
                           "map each column once.")


def row_key(raw: pd.DataFrame, name: str, mapping: Mapping[str, str], *, role: str) -> pd.Series:
    """The mapped id column as ids (one per row, or a refusal naming the repeated ones), else the row numbers."""
    col = mapping.get("id")
    if not col:
        return row_ids(len(raw))
    twice = (raw[col].duplicated(keep=False) & raw[col].notna()).to_numpy()  # nulls: the contract's
    if twice.any():
        raise RatchetError(f"{name}: column {col!r} for {role} must hold one id per row; {int(twice.sum()):,} rows "
                           f"share an id (e.g. {examples(raw[col], twice)}); fix the export or leave {role} out to "
                           "number the rows.")
    return ids(raw[col])


def row_ids(n: int) -> pd.Series:
    return pd.Series(np.arange(n, dtype=np.int64))  # file order


def ids(series: pd.Series) -> pd.Series:
    """Integer ids stay int64; anything else is kept as text (nulls are left to the contract)."""
    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        return series.astype(np.int64)
    if pd.api.types.is_float_dtype(series) and not series.isna().any() and (series == np.floor(series)).all():
        return series.astype(np.int64)
    return series.astype("string")


def amounts(series: pd.Series, name: str, col: str, *, role: str) -> pd.Series:
    """Money amounts as float64; nulls are left to the contract."""
    if pd.api.types.is_bool_dtype(series):
        raise RatchetError(f"{name}: column {col!r} for {role} holds booleans; give a money amount.")
    values = pd.to_numeric(series, errors="coerce")
    bad = (values.isna() & series.notna()).to_numpy()
    if bad.any():
        text = series[bad].astype(str)
        grouped = int(text.str.fullmatch(r"\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*").sum())
        how = (f"; {grouped:,} of them have thousands separators: export amounts as plain numbers (1234.50, not "
               "1,234.50)") if grouped else "; fix them or map another column"
        raise RatchetError(f"{name}: column {col!r} for {role} has {int(bad.sum()):,} non-numeric values "
                           f"(e.g. {examples(series, bad)}){how}.")
    return values.astype(np.float64)


def labels(series: pd.Series, name: str, col: str, *, role: str) -> pd.Series:
    """0/1 as numbers, booleans or strings -> int8; anything else (nulls included) is refused."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.astype(np.int8)
    if pd.api.types.is_numeric_dtype(series):
        ok = series.isin([0, 1]).to_numpy()
        values = series
    else:
        text = series.astype("string").str.strip().str.lower()
        values = text.map({"0": 0, "1": 1, "true": 1, "false": 0}, na_action="ignore")
        ok = values.notna().to_numpy()
    if not ok.all():
        raise RatchetError(f"{name}: column {col!r} for {role} must hold 0/1 (or true/false); "
                           f"{int((~ok).sum())} rows hold e.g. {examples(series, ~ok)}.")
    return values.astype(np.int8)


MANY_LEVELS = 100  # a text feature with more distinct values than this is reported


def features(raw: pd.DataFrame, name: str, *, used: Sequence[str], ours: Sequence[str],
             text: bool, notes: list[str] | None = None) -> tuple[dict[str, pd.Series], list[str]]:
    """Unmapped columns as features under safe names, and the names of the columns dropped.

    Numeric columns are kept (booleans as int8); with `text`, text columns are kept as pandas
    "string" dtype (categorical features), otherwise dropped like every other kind. A text column
    with more than MANY_LEVELS distinct values is reported in `notes` (one with a value per row
    looks like an identifier).
    """
    out: dict[str, pd.Series] = {}
    dropped: list[str] = []
    origin: dict[str, str] = {}
    for col in raw.columns:
        if col in used:
            continue
        series = raw[col]
        kept = _feature(series, text)
        if kept is None:
            dropped.append(col)
            continue
        safe = identifier(col)
        if safe in ours or safe in origin:
            first = origin.get(safe, safe)
            raise RatchetError(f"{name}: column {col!r} would become feature {safe!r}, which clashes with "
                               f"{first!r}; rename or remove one of them.")
        origin[safe] = col
        out[safe] = kept
        if notes is not None and str(kept.dtype) == "string":
            levels = int(kept.nunique())
            if levels > MANY_LEVELS:
                what = ("nearly one per row: it looks like an identifier, map it with --id or drop it"
                        if levels > 0.5 * len(kept) else "too many levels to learn from the rare ones; group "
                        "them, or expect a policy to keep only the most frequent (the fraud baseline keeps 50)")
                notes.append(f"{col}: text feature with {levels:,} distinct values, {what}")
    return out, dropped


def _feature(series: pd.Series, text: bool) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(np.int8)
    if pd.api.types.is_numeric_dtype(series):
        return series
    textual = (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
               or isinstance(series.dtype, pd.CategoricalDtype))
    return series.astype("string") if text and textual else None


def assemble(columns: Mapping[str, pd.Series], dropped: Sequence[str], *, time: str = "ts",
             notes: Sequence[str] = (), time_format: str | None = None) -> pd.DataFrame:
    """One frame, sorted by time (stable, so file order breaks ties), with the dropped names, the notes on how the
    file was read and the format text times were read with (None: not text) in attrs. Columns are not copied
    (copy-on-write) and ordered rows not sorted again."""
    frame = pd.DataFrame({k: v.reset_index(drop=True) for k, v in columns.items()}, copy=False)
    notes = list(notes)
    if not frame[time].is_monotonic_increasing:
        notes.append("rows were not in time order: sorted by time (rows with equal times keep their file order)")
        frame = frame.sort_values(time, kind="stable").reset_index(drop=True)
    frame.attrs["dropped_columns"] = list(dropped)
    frame.attrs["import_notes"] = notes
    frame.attrs["time_format"] = time_format
    return frame


def identifier(col: str) -> str:
    """A safe Python identifier for a feature name: policies may use it as an attribute."""
    safe = re.sub(r"\W", "_", col.strip(), flags=re.ASCII) or "feature"
    if safe[0].isdigit():
        safe = "f_" + safe
    return safe + "_" if keyword.iskeyword(safe) else safe
