"""One evaluation with its wall time, as an executor reports it."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from optimizer.loop.stages import Evaluation, evaluate


def timed(inputs: Any, sandbox: Any, source: str) -> Evaluation:
    """evaluate(), its wall seconds added as timings["evaluate"] (the record's total counts them)."""
    t0 = time.perf_counter()
    evaluation = evaluate(inputs, sandbox, source)
    return dataclasses.replace(evaluation, timings={**evaluation.timings, "evaluate": time.perf_counter() - t0})
