"""Business domains: each a package domains/<name>/ with an adapter (the scorer side), data and a baseline policy.

The registry finds them by folder: a package with an adapter.py that defines one Domain subclass whose `name`
is the folder's. Adding a domain is adding that folder (and configs/<name>.yaml): nothing else is edited.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

from domains.conformance import check_domain
from domains.contract import (
    Columns,
    Decisions,
    DemoSettings,
    Domain,
    GuardrailSpec,
    ImportKeys,
    ScoreReport,
    ScoringSettings,
)
from domains.errors import RatchetError

DOMAINS: tuple[str, ...] = tuple(sorted(p.parent.name for p in Path(__file__).parent.glob("*/adapter.py")
                                        if p.parent.name.isidentifier() and not p.parent.name.startswith("_")))

DEFAULT_DOMAIN = "fraud"  # what a config that names no domain, and `ratchet demo`, mean


@functools.cache
def domain_class(name: str) -> type[Domain]:
    """The Domain subclass of domains/<name>/adapter.py (imported on first use)."""
    if name not in DOMAINS:
        raise RatchetError(f"unknown domain {name!r}; available: {', '.join(DOMAINS)}.")
    module = importlib.import_module(f"domains.{name}.adapter")
    found = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Domain)
             and c.__module__ == module.__name__ and not inspect.isabstract(c)]
    if len(found) != 1:
        raise RatchetError(f"domains/{name}/adapter.py defines {len(found)} Domain subclasses "
                           f"({', '.join(c.__name__ for c in found) or 'none'}); a domain's adapter defines exactly one.")
    cls = found[0]
    if getattr(cls, "name", None) != name:
        raise RatchetError(f"domains/{name}/adapter.py: {cls.__name__}.name is {getattr(cls, 'name', None)!r}; a "
                           f"domain's name is its folder's: set name = {name!r}.")
    return cls


def get_domain(name: str) -> Domain:
    return domain_class(name)()


__all__ = ["Columns", "Decisions", "DEFAULT_DOMAIN", "DemoSettings", "Domain", "DOMAINS", "GuardrailSpec", "ImportKeys", "ScoreReport",
           "ScoringSettings", "check_domain", "domain_class", "get_domain"]
