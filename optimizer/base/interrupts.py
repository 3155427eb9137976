"""Ctrl-C while an experiment is being recorded: the record is finished first, then the interrupt is raised.

An interrupt that lands inside an MLflow or ledger write leaves that write's database transaction open in this
process, and whatever the unwinding code writes next (MLflow ending the run) fails with "database is locked",
replacing the interrupt with an error. Recording takes a second or two; `deferred()` holds SIGINT for that long.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT for the body; an interrupt that arrived meanwhile is raised as KeyboardInterrupt at its end.

    Outside the main thread (where Python delivers signals) it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    except BaseException as exc:
        signal.signal(signal.SIGINT, previous)
        if caught and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from exc
        raise
    signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
