"""Running `ratchet serve`'s app (optimizer.release.serve_http) under uvicorn: the port checked first, a startup refusal
said in one line."""
from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from optimizer.base.errors import RatchetError
from optimizer.release.serve_http import make_app


class _StartupTraceback(logging.Filter):
    """Drops the traceback uvicorn logs for a startup refused with a RatchetError: `serve` says it in one line."""

    def __init__(self, app: Starlette) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        refused = getattr(self.app.state, "startup_error", None) is not None
        return not (refused and str(record.msg).startswith("Traceback"))


def check_port(host: str, port: int) -> None:
    """Refuse a port already taken before minutes of loading and fitting are spent."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RatchetError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); pick another with "
                           "--port or --host.") from None


def server_for(app: Starlette, host: str, port: int, **options: Any) -> Any:
    """A uvicorn server for `app` (run it, or start it in a thread and set `should_exit` to stop it)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", **options))


def serve(path: Path | str, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the workspace until interrupted (Ctrl-C or SIGTERM close the sandbox); RatchetError if it cannot start."""
    check_port(host, port)
    app = make_app(path)
    server = server_for(app, host, port)
    quiet = _StartupTraceback(app)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run()  # uvicorn exits (SystemExit 3) when the lifespan's startup failed
    except SystemExit:
        if getattr(app.state, "startup_error", None) is not None:
            raise app.state.startup_error from None
        raise
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
