"""Great Expectations plumbing shared by the domains' data contracts.

A domain lists its expectations; `check` validates a frame against them and raises one
RatchetError naming each failing column, expectation and row count. Great Expectations is
imported inside the functions: it takes seconds to import and only `init` needs it.
"""
from __future__ import annotations

import datetime as dt
import logging
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from domains.errors import RatchetError

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation import Expectation

TS_MIN, TS_MAX = dt.datetime(1990, 1, 1), dt.datetime(2100, 1, 1)  # plausible event times
# GX matches a pandas dtype against numpy dtype names or pandas dtype class names.
INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOAT_TYPES = ["float16", "float32", "float64"]
ID_TYPES = [*INT_TYPES, "StringDtype"]  # text ids as pandas "string" dtype, as the importers make them
TIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]  # tz-naive


NUMBER_TYPES = [*FLOAT_TYPES, *INT_TYPES]


def present(E: ModuleType, columns: Sequence[str]) -> list[Expectation]:
    """At least one row; each of `columns` exists and has no nulls."""
    out = [E.ExpectTableRowCountToBeBetween(min_value=1)]
    for col in columns:
        out += [E.ExpectColumnToExist(column=col), E.ExpectColumnValuesToNotBeNull(column=col)]
    return out


def id_and_time(E: ModuleType, id_col: str, time_col: str = "ts") -> list[Expectation]:
    """A unique id of an id type, and tz-naive event times in a plausible range."""
    return [E.ExpectColumnValuesToBeInTypeList(column=id_col, type_list=ID_TYPES),
            E.ExpectColumnValuesToBeUnique(column=id_col),
            E.ExpectColumnValuesToBeInTypeList(column=time_col, type_list=TIME_TYPES),
            E.ExpectColumnValuesToBeBetween(column=time_col, min_value=TS_MIN, max_value=TS_MAX)]


def features(E: ModuleType, columns: Sequence[str], types: Sequence[str]) -> list[Expectation]:
    """Each feature column exists, has no nulls and is one of `types`."""
    out: list[Expectation] = []
    for col in columns:
        out += [E.ExpectColumnToExist(column=col), E.ExpectColumnValuesToNotBeNull(column=col),
                E.ExpectColumnValuesToBeInTypeList(column=col, type_list=list(types))]
    return out


def import_gx() -> ModuleType:
    # Quiet before the import: GX logs and warns while it loads.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
    return gx


def suite(gx: ModuleType, name: str, expectations: Sequence[Expectation]) -> ExpectationSuite:
    # Passed to the constructor: add_expectation() would try to save into a data context.
    made: ExpectationSuite = gx.ExpectationSuite(name=name, expectations=list(expectations))
    return made


def check(gx: ModuleType, frame: pd.DataFrame, name: str, expectations: Sequence[Expectation], *, source: str,
          fix: str = "Fix the data and run init again.") -> None:
    """Validate `frame` against `expectations`; raise RatchetError naming each failing column,
    expectation and row count."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = no_progress_bars()
    asset = context.data_sources.add_pandas("ratchet").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("whole frame").get_batch(
        batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GX's own deprecation chatter is not the user's problem
        result = batch.validate(suite(gx, name, expectations), result_format="BASIC")
    if result.success:
        return
    found = problems(result.results, len(frame))
    raise RatchetError(f"data contract failed for {source!r}: {'; '.join(found)}. {fix}")


def check_suite(frame: pd.DataFrame, suite_json: dict[str, Any], *, source: str) -> None:
    """Validate a later batch (shadow events, a new import) against the suite a workspace sealed: the same
    expectations the data passed at init, read back from their JSON."""
    gx = import_gx()
    stored = gx.ExpectationSuite(**{k: v for k, v in suite_json.items() if k in ("name", "expectations", "meta")})
    check(gx, frame, stored.name, stored.expectations, source=source,
          fix="Fix the batch: it must meet the contract the workspace's data met at init.")


def no_progress_bars() -> ProgressBarsConfig:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return ProgressBarsConfig(globally=False, metric_calculations=False)


def problems(results: Sequence[Any], n_rows: int) -> list[str]:
    """One phrase per failing expectation, in suite order; a missing column is reported once. `results`: GX's
    ExpectationValidationResult, whose expectation_config GX types as optional though a validation always sets it."""
    failed = [r for r in results if not r.success]
    missing = {r.expectation_config.kwargs["column"] for r in failed
               if r.expectation_config.type == "expect_column_to_exist"}
    mistyped = {r.expectation_config.kwargs["column"] for r in failed
                if r.expectation_config.type == "expect_column_values_to_be_in_type_list"} - missing
    out = []
    for r in failed:
        kind, kwargs = r.expectation_config.type, r.expectation_config.kwargs
        col = kwargs.get("column")
        res = r.result or {}
        if col in missing and kind != "expect_column_to_exist":
            continue  # everything else about a missing column fails for that one reason
        if col in mistyped and kind != "expect_column_values_to_be_in_type_list" and "unexpected_count" not in res:
            continue  # a range check that cannot run on the wrong type adds nothing
        where = f"column {col!r}" if col else "table"
        what = f"{kind}{describe(kind, kwargs)}"
        if "unexpected_count" in res:
            total = res.get("element_count", n_rows)
            out.append(f"{where}: {what} failed on {res['unexpected_count']} of {total} rows")
        elif kind == "expect_column_to_exist":
            out.append(f"{where}: {what} failed (the column is missing)")
        elif "observed_value" in res:
            out.append(f"{where}: {what} failed (observed {res['observed_value']})")
        else:
            reason = (r.exception_info or {}).get("exception_message") or "could not be evaluated"
            out.append(f"{where}: {what} failed ({str(reason).splitlines()[0]})")
    return out


def describe(kind: str, kwargs: Mapping[str, Any]) -> str:
    """The expectation's parameters in a few words, for the one-line error."""
    if kind == "expect_column_values_to_be_between":
        strict = " strictly" if kwargs.get("strict_min") else ""
        return f" (min {value(kwargs.get('min_value'))}{strict}, max {value(kwargs.get('max_value'))})"
    if kind == "expect_column_values_to_be_in_set":
        return " {" + ",".join(str(v) for v in kwargs["value_set"]) + "}"
    if kind == "expect_column_values_to_be_in_type_list":
        return f" ({', '.join(kwargs['type_list'])})"
    if kind == "expect_table_row_count_to_be_between":
        return f" (at least {kwargs.get('min_value')} row)"
    return ""


def value(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v == dt.datetime.combine(v.date(), dt.time()) else v.isoformat()
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)
