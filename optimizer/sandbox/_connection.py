"""The parent's connection to the fork server: start it, exchange JSON lines, relay model requests, notice its loss.

One per Sandbox. `launch` starts ``python -m optimizer.sandbox._server`` with the isolation plan's command and the
scrubbed environment, sends the configuration line and waits for {"ready": ...}; after that each request is one
JSON line out and one back (see _server). While a phase runs, the lines the server relays from the child's model
broker pipe ({"broker": seq, "line": ...}) are answered here by that phase's broker session (see _channel). A server
that dies or stays silent past the budget plus a grace period is stopped and reported, and the Sandbox starts a
fresh one for its next request; `generation` counts the servers, so a worker knows when its own is gone. Nothing
here reads a file a child wrote: the server's replies are process facts, and the workdir is the Sandbox's affair.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import IO

from optimizer.base.errors import RatchetError
from optimizer.sandbox import _isolation
from optimizer.sandbox._channel import Broker, BrokerSession

GRACE_S = 15.0  # beyond the budget, how long the parent waits before it declares the server lost
START_S = 180.0  # a cold start imports the whole scientific stack


def _stop(process: subprocess.Popen | None, base: str | None) -> None:
    if process is not None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its children follow (parent-death signal)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        for pipe in (process.stdin, process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
    if base:
        shutil.rmtree(base, ignore_errors=True)


def _send(stdin: IO[bytes], message: dict) -> bool:
    """Write one JSON line to the server; False when its pipe is closed (the server is gone)."""
    try:
        stdin.write(json.dumps(message).encode() + b"\n")
        stdin.flush()
    except OSError:
        return False
    return True


def _pipes(process: subprocess.Popen) -> tuple[IO[bytes], IO[bytes]]:
    """The server's stdin and stdout (launch starts it with both piped)."""
    assert process.stdin is not None and process.stdout is not None, "the server is started with both pipes"
    return process.stdin, process.stdout


class Connection:
    """The server process of one Sandbox and the JSON lines to and from it; the Sandbox's lock guards every call
    but kill()."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.generation = 0  # bumped at each server start and close: workers of an earlier server are gone
        self._pending = b""
        self._finalizer: weakref.finalize | None = None
        self._session: BrokerSession | None = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, owner: object, plan: _isolation.Plan, base: str, config: dict) -> dict:
        """Start a server in `base` and configure it; its ready line. When `owner` is collected (or at exit), the
        server is killed and `base` removed. RatchetError, with the server log's tail, when it does not start."""
        if self._finalizer is not None:
            self._finalizer.detach()
        package_root = str(Path(__file__).resolve().parents[2])  # the server imports us from here
        command = _isolation.server_command(plan, (package_root, base))
        with open(f"{base}/server.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env=_isolation.server_env(base), cwd=base, start_new_session=True, close_fds=True)
        self._finalizer = weakref.finalize(owner, _stop, self.process, base)
        self.generation += 1
        self._pending = b""
        ready = self.exchange(config, START_S)
        if not ready or not ready.get("ready"):
            tail = Path(base, "server.log").read_text(errors="replace")[-2000:]
            _stop(self.process, None)
            raise RatchetError(f"the sandbox server did not start (log {base}/server.log): {tail}")
        return ready

    def close(self) -> None:
        """Ask the server to stop, then kill what is left and remove the base folder (models too)."""
        if self.process is not None and self.process.poll() is None:
            try:
                stdin, _ = _pipes(self.process)
                stdin.write(b'{"op": "stop"}\n')
                stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self._finalizer is not None:
            self._finalizer()
        self.process, self._finalizer = None, None
        self.generation += 1  # its workers are gone

    def kill(self) -> None:
        """End the server and its children now; a request in flight (another thread's) returns as a crash."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def exchange(self, message: dict, wait_s: float) -> dict | None:
        """Send one JSON line and read one back; None when the server died or went silent."""
        process = self.process
        assert process is not None, "exchange runs on a launched server"
        stdin, stdout = _pipes(process)
        if not _send(stdin, message):
            return None
        deadline = time.monotonic() + wait_s
        fd = stdout.fileno()
        while True:
            line, newline, rest = self._pending.partition(b"\n")
            if newline:
                self._pending = rest
                if not line.startswith(b"{"):
                    continue  # a library printed at import, before the server took over stdout
                message = json.loads(line)
                if "broker" not in message:
                    return message
                if not self._relay(process, message):
                    return None
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._pending += chunk

    def _relay(self, process: subprocess.Popen, message: dict) -> bool:
        """Answer one model request a child made through the server; False if the server is gone."""
        line = message.get("line")
        if self._session is None or not isinstance(line, str):
            reply, stop = {"error": "no model broker for this phase"}, None
        else:
            reply, stop = self._session.handle(line)
        answer = {"op": "broker_reply", "seq": message.get("broker"), "reply": reply, "stop": stop}
        return _send(_pipes(process)[0], answer)

    def phase(self, broker: Broker | None, phase: str, row_sets: tuple[str, ...], budget_s: float) -> None:
        """Open the broker session that answers this phase's model requests (none without a broker)."""
        self._session = (broker.session(phase, row_sets, time.monotonic() + budget_s)
                         if broker is not None else None)

    def end_phase(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def request(self, request: dict, budget_s: float) -> tuple[dict | None, str]:
        """One request to the running server: (its reply, "") or, when the server was lost, (None, why); a lost
        server is stopped, so the next request starts a fresh one."""
        reply = self.exchange(request, budget_s + GRACE_S)
        if reply is not None:
            return reply, ""
        assert self.process is not None, "a request runs on a launched server"
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        why = (f"the sandbox server died (exit code {code})" if code is not None
               else "the sandbox server stopped answering")
        _stop(self.process, None)  # the next request starts a fresh one
        return None, why + f" during {request['phase']}; it restarts for the next request"
