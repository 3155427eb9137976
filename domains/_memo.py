"""Values derived from one frame or array, computed once per object while it lives.

The scorer reads the same dev rows on every experiment (segments, customers' tenure): what depends only on those
rows is computed on the first experiment and reused, known by the object's identity. The cached arrays are made
read-only, so a caller that tried to change one would fail loudly instead of changing every later verdict; the
objects themselves must not be changed in place (a workspace's splits never are).
"""
from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")


def _frozen(value: T) -> T:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for item in value.values():
            _frozen(item)
    elif isinstance(value, tuple):
        for item in value:
            _frozen(item)
    return value


def by_identity(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """`fn(obj)` cached per object, dropped once the object is gone."""
    cache: dict[int, tuple[weakref.ref[Any], T]] = {}

    @functools.wraps(fn)
    def cached(obj: Any) -> T:
        hit = cache.get(id(obj))
        if hit is not None and hit[0]() is obj:
            return hit[1]
        for key in [k for k, (ref, _) in cache.items() if ref() is None]:
            del cache[key]
        value = _frozen(fn(obj))
        try:
            cache[id(obj)] = (weakref.ref(obj), value)
        except TypeError:  # not weak-referenceable: computed every time
            pass
        return value

    return cached
