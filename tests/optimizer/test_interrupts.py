"""optimizer.base.interrupts.deferred: a SIGINT inside the body is held until the body is done."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from optimizer.base.interrupts import deferred


def test_an_interrupt_inside_is_raised_after_the_body_finishes():
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_no_interrupt_no_exception_and_a_body_error_keeps_its_type():
    before = signal.getsignal(signal.SIGINT)
    with deferred():
        pass
    with pytest.raises(ValueError):
        with deferred():
            raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt) as caught:  # both: the interrupt wins, the error is its cause
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("boom")
    assert isinstance(caught.value.__cause__, ValueError)
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_it_holds_nothing():
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def body():
        with deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [before]
