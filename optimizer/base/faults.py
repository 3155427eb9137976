"""Named points where a crash-safety test makes the process kill itself, as a power cut or `kill -9` would.

`RATCHET_FAULT=<point>` in the environment makes `fault(<point>)` SIGKILL this process there (no cleanup, no
atexit, no finally); `RATCHET_FAULT_SIGNAL=INT` sends SIGINT instead, a Ctrl-C at that exact point. Unset, a fault
point costs one dictionary lookup. Points are listed in FAULT_POINTS so a test
can walk all of them.
"""
from __future__ import annotations

import os
import signal

FAULT_POINTS = (
    "init:before-move",  # the staged workspace is whole, sealed and in the ledger; not moved into place
    "baseline:saved",  # the baseline state files are written, not yet bound by the ledger
    "baseline:recorded",  # the baseline is in the ledger, not yet in MLflow
    "evaluate:fitted",  # a candidate's fit returned (the sandbox holds its model)
    "gate:answered",  # the holdout query is in the ledger, the experiment is not
    "keep:intent", "keep:commit", "keep:state", "keep:swap", "keep:complete", "keep:cleanup",  # records/keep.py
    "record:before-folder",  # the experiment is in the ledger, its record folder is not written
    "record:before-mlflow",  # the folder is written, the MLflow run is not
    "mlflow:experiment",  # the experiment's MLflow run is open and half logged
)


def fault(point: str) -> None:
    if os.environ.get("RATCHET_FAULT") == point:
        os.environ.pop("RATCHET_FAULT")  # once: one Ctrl-C, even when several threads pass the point
        os.kill(os.getpid(), signal.Signals[f"SIG{os.environ.get('RATCHET_FAULT_SIGNAL', 'KILL')}"])
