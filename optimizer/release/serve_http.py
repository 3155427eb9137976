"""`ratchet serve`'s HTTP face: the Starlette app over one Service (optimizer.release.serve), request bodies read
within their limit, and every refusal or crash answered as one JSON line.

    POST /decide  {"rows": [{column: value, ...}, ...]}  ->  {"decisions", "policy", "latency_ms"[, "blocked"]}
    GET  /health  ->  {"status": "ok", "policy", "trial" (with the shadow counts), "sandbox"}
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from optimizer.base.errors import RatchetError
from optimizer.release.serve import Service, log
from optimizer.release.serve_rows import Refused, _one_line, parse_rows

MAX_ROWS = 10_000  # rows per request
MAX_BYTES = 8 * 1024 * 1024  # request body


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) as soon as it passes `max_bytes`, declared or streamed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Refused(413, f"body of {int(declared):,} bytes; at most {max_bytes:,}: split it into batches")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Refused(413, f"body over {max_bytes:,} bytes: split it into batches")
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(path: Path | str, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> Starlette:
    """The Starlette app serving workspace `path`; its lifespan opens the sandbox and fits, and closes it at exit."""
    service = Service(Path(path))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.startup_error = None
        try:
            await run_in_threadpool(service.start)
        except RatchetError as exc:
            app.state.startup_error = exc
            raise
        app.state.service = service
        champion = service.acting_policy
        log.info("ratchet serve: %s %s (%s) acts%s; sandbox layers: %s", champion.chosen_by,
                 champion.ref.experiment, champion.ref.commit[:12],
                 f", trial {service.trial.trial} shadowed" if service.shadowing else "",
                 ", ".join(service.sandbox.layers) or "none")
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    async def decide(request: Request) -> JSONResponse:
        service.counts["requests"] += 1
        try:
            rows = parse_rows(await read_body(request, max_bytes), max_rows)
            assert service.schema is not None, "the lifespan started the service (start() reads the schema)"
            frame = service.schema.frame(rows)
        except Refused:
            service.counts["refused"] += 1
            raise
        try:
            decided = await run_in_threadpool(service.decide_request, frame)
        except Refused:
            service.counts["sandbox_failures"] += 1
            raise
        service.counts["rows"] += len(frame)
        if service.lane is not None:
            service.shadow(frame, decided)  # queued for the challenger's thread: the answer does not wait on it
        return JSONResponse(service.answer(decided))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(service.health())

    return Starlette(routes=[Route("/decide", decide, methods=["POST"]), Route("/health", health, methods=["GET"])],
                     exception_handlers={Refused: _refused, HTTPException: _http_error, Exception: _crashed},
                     lifespan=lifespan)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    what = {404: f"no such endpoint {request.url.path}: use POST /decide or GET /health",
            405: f"{request.method} not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": what}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _crashed(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {_one_line(exc)}"}, status_code=500)
