"""`ratchet serve`: the acting policy answers decisions over HTTP (optimizer/release/serve.py), inside the sandbox."""
from __future__ import annotations

from pathlib import Path

import typer

from optimizer.base.errors import RatchetError
from optimizer.cli.app import app, err, fail


@app.command(epilog="Example: ratchet serve ws --port 8765")
def serve(
    workspace: Path = typer.Argument(..., help="The workspace whose acting policy answers."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface; there is no "
                             "authentication, so put a proxy in front of anything but localhost)."),
    port: int = typer.Option(8765, min=1, max=65535, help="TCP port to listen on."),
) -> None:
    """Answer POST /decide with the acting policy (the registry champion; before any promotion, the baseline),
    decided in a warm sandboxed worker; a running shadow trial's challenger decides the same rows off the request
    path, in a sandbox of its own, and both are logged. GET /health reports."""
    from optimizer.release.serve_run import serve as run_server

    err.print(f"loading {workspace} and fitting the acting policy in the sandbox; then listening on "
              f"http://{host}:{port} (Ctrl-C stops)", markup=False)
    try:
        run_server(workspace, host, port)
    except RatchetError as exc:
        fail(exc)
