"""How a refused setting is said: the flag or key a person gave, what is allowed, and the value or setting they
probably meant. What is accepted is decided by the models in optimizer.workspace.config; `root` is its RunConfig."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

# Words people write for a closed set's values (`--time-unit seconds`), read only to suggest the value meant.
_SYNONYMS = {"sec": "s", "secs": "s", "second": "s", "seconds": "s", "milli": "ms", "millis": "ms", "msec": "ms",
             "millisecond": "ms", "milliseconds": "ms", "micro": "us", "micros": "us", "usec": "us", "µs": "us",
             "microsecond": "us", "microseconds": "us", "nano": "ns", "nanos": "ns", "nsec": "ns",
             "nanosecond": "ns", "nanoseconds": "ns"}


def closest(word: Any, options: Any) -> str | None:
    """The option `word` most probably meant (difflib, after common spellings of units), or None."""
    import difflib

    options = [str(o) for o in options]
    text = str(word).strip()
    meant = _SYNONYMS.get(text.lower(), text.lower())
    if meant in options and meant != text:
        return meant
    by_lower = {o.lower(): o for o in options}
    found = difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (itself, or the members of an Optional or a Union)."""
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _at(loc: tuple, root: Any) -> tuple[Any, Any]:
    """(the annotation, the FieldInfo or None) at a location of an error; (None, None) when it is no declared field.
    The scoring section's location names the domain's model (scoring.fraud.decline_cost)."""
    from typing import get_args, get_origin

    current: Any = root
    info = None
    for part in loc:
        models = _models(current)
        if len(models) > 1:  # the scoring union: the tag names the model
            tagged = [m for m in models if "domain" in m.model_fields and m.model_fields["domain"].default == part]
            if tagged:
                current, info = tagged[0], None
                continue
        if len(models) == 1 and part in models[0].model_fields:
            info = models[0].model_fields[part]
            current = info.annotation
        elif get_origin(current) is dict:
            current, info = get_args(current)[1], None
        else:
            return None, None
    return current, info


def _choices(annotation: Any) -> list[Any]:
    """The values of the Literal(s) in an annotation (a closed set), in order; [] for an open one."""
    from typing import get_args, get_origin

    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [c for arg in get_args(annotation) for c in _choices(arg)]


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, (int, float)) and float(value).is_integer() else str(value)


def _bounds(info: Any) -> dict[str, Any]:
    """{ge, gt, le, lt: limit} of a field (annotated_types metadata)."""
    return {k: getattr(m, k) for m in (info.metadata if info is not None else ()) for k in ("ge", "gt", "le", "lt")
            if getattr(m, k, None) is not None}


_BOUND_WORDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
_UNITS = {("data", "rows"): " rows"}  # the unit a bound is said in, where it helps


def friendly(error: Mapping[str, Any], loc: tuple, root: Any) -> str:
    """What is wrong with a value a person gave on the command line, and what is allowed (no pydantic wording)."""
    annotation, info = _at(loc, root)
    kind, ctx = error["type"], error.get("ctx") or {}
    unit = _UNITS.get(tuple(loc), "")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        key = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}[kind]
        other = {k: v for k, v in _bounds(info).items() if k[0] != key[0]}
        also = "".join(f" (and {_BOUND_WORDS[k]} {_number(v)})" for k, v in other.items())
        return f"{_BOUND_WORDS[key]} {_number(ctx.get(key))}{unit}{also}"
    if kind == "literal_error" or (kind == "value_error" and _choices(annotation)):
        options = _choices(annotation)
        if options:
            meant = closest(error.get("input"), options)
            return (f"not one of {', '.join(str(o) for o in options)}" +
                    (f"; did you mean {meant!r}?" if meant is not None else ""))
    if kind == "extra_forbidden":
        return "no such setting" + _meant(loc, root)
    return error["msg"].removeprefix("Value error, ")


def _meant(loc: tuple, root: Any) -> str:
    """'; did you mean <the closest setting>?' for an unknown key at `loc`, or ''."""
    parent = tuple(loc[:-1])
    models = _models(_at(parent, root)[0]) if parent else [root]
    if len(models) != 1:
        return ""
    names = [n for n in models[0].model_fields if not (parent[:1] == ("scoring",) and n == "domain")]
    meant = closest(loc[-1], names)
    if meant is None:
        return ""
    shown = [p for i, p in enumerate(parent) if not (parent[:1] == ("scoring",) and i == 1)]  # no domain tag
    return f"; did you mean {'.'.join(str(p) for p in (*shown, meant))}?"


def problem(error: Mapping[str, Any], root: Any) -> str:
    """One validation error as `field: message`; a whole-config check (no location) names its own fields. A value
    outside a closed set and an unknown key also say which one was probably meant."""
    msg = error["msg"].removeprefix("Value error, ")
    loc = tuple(error["loc"])
    if error["type"] == "literal_error":
        meant = closest(error.get("input"), _choices(_at(loc, root)[0]))
        msg += f"; did you mean {meant!r}?" if meant is not None else ""
    elif error["type"] == "extra_forbidden":
        msg += _meant(loc, root)
    return f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg


def given_as(loc: tuple, given: dict[str, str]) -> str | None:
    """The way a person gave the setting at `loc` (a flag and its value), from the longest dotted key that holds it."""
    parts = [str(p) for p in loc]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in given:
            return given[".".join(parts[:n])]
    return None
