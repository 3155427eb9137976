"""HTML rendering for the run report and the audit document: Jinja2 templates with autoescaping, one page each,
self-contained (styles, images and the table sorter inline; nothing is fetched when the page is opened)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("optimizer.report", "templates"), autoescape=select_autoescape(["j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    return env


def _num(value: Any, digits: int = 4) -> str:
    """A figure as the tables show it: fixed digits, small ones in scientific notation, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if value and abs(value) < 10 ** -(digits - 1) else f"{value:.{digits}f}"


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)
