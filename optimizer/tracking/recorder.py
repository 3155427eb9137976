"""Experiment runs written to MLflow by a second process while the loop goes on to the next candidate.

An experiment's MLflow run (tags, parameters, about a hundred metrics, the record files) costs 30-45 ms of
SQLAlchemy work on a sqlite store, about a fifth of what the loop adds to a trivial candidate. The ledger entry and
the record folder are written first, in the loop, and are the truth; the run is a view of them, so a second
process can write it from the same record while the loop evaluates the next candidate. (A thread in the loop's own
process gained nothing measurable: its Python work competed with the loop's for the interpreter lock.)

Only runs that keep nothing are written here: a kept policy's run registers its fitted model, so the loop waits
for the runs queued before it and writes that one itself, in order. Used for local sqlite stores: against a
tracking server each run is written in turn, so an outage is noticed on the experiment that met it.

Protocol: one JSON line per run on the process's stdin ({"record": ..., "diff": ..., "folder": ...}); one line back
per run ({"experiment": ..., "error": null or why}). End of input: the process writes what it has and exits. It
dies with the loop (a kill loses at most the runs still queued; the ledger holds them and `ratchet sync` writes
them), ignores Ctrl-C (the loop finishes the queue first), and never sees RATCHET_FAULT (kill points are the loop's).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from optimizer.base.errors import RatchetError


@contextmanager
def behind(tracker: Any, parent_run: Any, seal: str, workspace: Path) -> Iterator[None]:
    """Within the block, on a local sqlite store, experiment runs that keep nothing are written by a second process
    while the loop goes on (`tracker.recorder` is it meanwhile); the block's end waits for them, Ctrl-C included."""
    if not tracker.uri.startswith("sqlite:///"):
        yield
        return
    recorder = tracker.recorder = Recorder(tracker.uri, tracker.experiment, seal, parent_run.info.run_id, workspace)
    try:
        yield
    except BaseException:
        tracker.recorder = None
        with suppress(RatchetError):  # the block's own error is the one to tell; the ledger holds every run
            recorder.close()
        raise
    tracker.recorder = None
    recorder.close()


class Recorder:
    """The loop's end: queue a run, collect the answers, wait for all of them."""

    def __init__(self, uri: str, experiment: str, seal: str, parent_run: str, workspace: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_FAULT")}
        self.uri, self.workspace = uri, workspace
        self._process = subprocess.Popen(
            [sys.executable, "-m", "optimizer.tracking.recorder", uri, experiment, seal, parent_run, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None, "the process is started with both pipes"
        self._stdin, self._stdout = stdin, stdout
        self._waiting: list[str] = []  # experiments queued and not answered yet, oldest first
        self._pending = b""

    def submit(self, record: dict[str, Any], diff: str, folder: Path) -> None:
        """Queue the run of `record` (as its folder's record.json holds it; the ledger entry and `folder` are
        written); RatchetError if an earlier run failed."""
        self._collect(block=False)
        line = {"record": record, "diff": diff, "folder": str(folder)}
        try:
            self._stdin.write(json.dumps(line, default=str).encode() + b"\n")
            self._stdin.flush()
        except OSError:
            self._lost([record["experiment"]])
        self._waiting.append(record["experiment"])

    def drain(self) -> None:
        """Wait until every queued run is written; RatchetError naming the first that failed."""
        while self._waiting:
            self._collect(block=True)

    def close(self) -> None:
        """Write what is queued, then end the process."""
        try:
            self.drain()
        finally:
            try:
                self._stdin.close()
                self._process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
            self._stdout.close()

    def _collect(self, *, block: bool) -> None:
        fd = self._stdout.fileno()
        while self._waiting:
            if b"\n" not in self._pending:
                if not select.select([fd], [], [], None if block else 0)[0]:
                    return
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._lost(self._waiting)
                self._pending += chunk
                continue
            line, _, self._pending = self._pending.partition(b"\n")
            answer = json.loads(line)
            self._waiting.remove(answer["experiment"])
            if answer["error"]:
                raise RatchetError(f"MLflow at {self.uri}: writing the run of {answer['experiment']} failed "
                                   f"({answer['error']}); the ledger and experiments/{answer['experiment']} hold it. "
                                   f"Run `ratchet sync {self.workspace}` once the store is writable.")
            if block:
                return

    def _lost(self, experiments: list[str]) -> None:
        code = self._process.poll()
        raise RatchetError(f"MLflow at {self.uri}: the process writing experiment runs ended (exit code {code}) "
                           f"before {', '.join(experiments)} were written; the ledger and their record folders hold "
                           f"them. Run `ratchet sync {self.workspace}` to write them.")


def main() -> None:
    import ctypes
    from types import SimpleNamespace

    uri, experiment, seal, parent_run, loop_pid = sys.argv[1:6]
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: ends with the loop
    if os.getppid() != int(loop_pid):
        return  # the loop ended before the death signal was armed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what a library prints goes to stderr, never into the answers
    from optimizer.records.experiment_record import ExperimentRecord
    from optimizer.tracking.runs import Tracker, record_experiment

    tracker = Tracker(experiment, uri)
    ctx = SimpleNamespace(manifest_sha256=seal)  # all a run that keeps nothing reads of its workspace
    for line in sys.stdin:
        item = json.loads(line)
        error = None
        try:
            record = ExperimentRecord.from_payload(item["record"], diff=item["diff"])
            record_experiment(tracker, ctx, record, Path(item["folder"]), nested=False, parent_run=parent_run)
        except Exception as exc:  # noqa: BLE001 - answered; the loop says it and stops
            error = f"{type(exc).__name__}: {exc}"
        answers.write(json.dumps({"experiment": item["record"]["experiment"], "error": error}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
