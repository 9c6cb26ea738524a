"""The one shared inference worker: a process holding the single copy of the local model.

    PERSONAD_WORKER_TOKEN=... python -m personad.models.local.worker --socket PATH

Every local persona talks to it over a Unix domain socket (mode 0600) with a bearer token:

* ``GET /health`` → ``{"ok": true, "model": ..., "load_seconds": ...}``. The model loads before the socket
  is bound, so a worker that answers at all is ready.
* ``POST /v1/generate`` with ``ChatRequest.to_dict()`` → NDJSON lines ``{"text": ...}``, then
  ``{"finish_reason": ..., "usage": {...}, "timings": {...}}``, or ``{"error": {...}, "status": 4xx}``.
  Problems found before streaming (bad JSON, unknown adapter, bad params) are a plain 4xx
  ``{"error": {...}}`` instead.

Generations run one at a time in arrival order; a client that disconnects cancels its generation. SIGTERM
(or the parent daemon going away) shuts the worker down and removes the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from personad.errors import (
    BadRequestError,
    InternalError,
    PersonadError,
    UnauthorizedError,
    UnavailableError,
)
from personad.models.base import ChatRequest
from personad.models.local.runner import GenerationRunner

log = logging.getLogger("personad.inference")

TOKEN_ENV = "PERSONAD_WORKER_TOKEN"
UDS_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the terminating NUL


def _error_body(exc: PersonadError) -> dict[str, Any]:
    return {"error": exc.to_dict()}


def build_app(token: str, engine: Any) -> FastAPI:
    """The worker's app around an already loaded engine (``LocalEngine`` or a test double)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    # A real engine batches concurrent requests; a test double without one runs them in turn.
    make_runner = getattr(engine, "make_runner", None)
    app.state.runner = make_runner() if make_runner is not None else GenerationRunner(engine)
    expected = f"Bearer {token}".encode()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        given = request.headers.get("authorization", "").encode()
        if not secrets.compare_digest(given, expected):
            error = UnauthorizedError(
                "missing or wrong bearer token for the inference worker", code="unauthorized"
            )
            return JSONResponse(_error_body(error), status_code=error.http_status)
        return await call_next(request)

    @app.exception_handler(PersonadError)
    async def personad_error(request: Request, exc: PersonadError) -> JSONResponse:
        return JSONResponse(_error_body(exc), status_code=exc.http_status)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        engine = request.app.state.engine
        runner: GenerationRunner = request.app.state.runner
        describe_adapters = getattr(getattr(engine, "adapter_manager", None), "describe", None)
        return {
            "ok": True,
            "model": engine.model_id,
            "load_seconds": round(engine.load_seconds, 3),
            "convert_seconds": engine.convert_seconds,
            "threads": engine.threads,
            "precision": getattr(getattr(engine, "decoder", None), "precision", None),
            "busy": runner.busy,
            "waiting": runner.waiting,
            "pid": os.getpid(),
            "active": getattr(runner, "active", int(runner.busy)),
            "max_batch_seen": getattr(runner, "max_rows_seen", None),
            "adapters": describe_adapters() if describe_adapters is not None else None,
        }

    @app.post("/v1/generate")
    async def generate(request: Request) -> StreamingResponse:
        try:
            body = await request.json()
            chat = ChatRequest.from_dict(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadRequestError(
                f"the body must be a ChatRequest as JSON ({type(exc).__name__}: {exc})",
                code="invalid_request",
            ) from None
        engine = request.app.state.engine
        engine.validate(chat)  # unknown adapter, bad params: a plain 4xx before any streaming
        runner: GenerationRunner = request.app.state.runner
        return StreamingResponse(_ndjson(runner, chat), media_type="application/x-ndjson")

    return app


async def _ndjson(runner: GenerationRunner, chat: ChatRequest) -> AsyncIterator[str]:
    # Starlette cancels this generator when the client disconnects; the runner then cancels the
    # generation thread and frees the model for the next request.
    try:
        async for event in runner.stream(chat):
            yield json.dumps(event.to_dict()) + "\n"
    except PersonadError as exc:
        yield json.dumps({**_error_body(exc), "status": exc.http_status}) + "\n"
    except Exception as exc:
        log.exception("generation failed")
        error = InternalError(f"generation failed: {type(exc).__name__}: {exc}", code="inference_failed")
        yield json.dumps({**_error_body(error), "status": error.http_status}) + "\n"


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind the socket ourselves: uvicorn would chmod it to 0666; ours is 0600 from the start."""
    if len(os.fsencode(path)) > UDS_PATH_MAX:
        raise UnavailableError(
            f"socket path {path} is longer than the {UDS_PATH_MAX} bytes a Unix socket allows;"
            " use a shorter PERSONAD_HOME",
            code="inference_unavailable",
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # a stale socket from a worker that did not exit cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


async def _watch_parent(parent_pid: int, server: uvicorn.Server) -> None:
    """Exit when the daemon that started us is gone, so a crashed daemon leaves no orphan holding RAM."""
    while not server.should_exit:
        if os.getppid() != parent_pid:
            log.warning("parent process %d is gone; shutting down", parent_pid)
            server.should_exit = True
            return
        await asyncio.sleep(2)


async def serve(
    socket_path: Path,
    token: str,
    load_engine: Callable[[], Any],
    *,
    parent_pid: int | None = None,
    log_level: str = "info",
) -> None:
    """Load the model, then bind the socket and serve until SIGTERM/SIGINT or the parent exits.

    Loading comes first, outside uvicorn, so the socket only exists once the model is ready: a client
    that can connect gets an answer instead of a connection that hangs for the length of the load.
    """
    engine = await asyncio.to_thread(load_engine)
    app = build_app(token, engine)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=5,  # an in-flight answer gets a moment; a long one is then cancelled
        access_log=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises a captured SIGTERM after its graceful shutdown, which with the default handler
    # would kill us before the socket is removed; this handler makes that re-raise a no-op.
    if threading.current_thread() is threading.main_thread():  # signal handlers are main-thread only
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
    sock = bind_unix_socket(socket_path)
    watcher = asyncio.create_task(_watch_parent(parent_pid, server)) if parent_pid else None
    try:
        log.info("serving %s on %s", engine.model_id, socket_path)
        await server.serve(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.cancel()
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personad.models.local.worker", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket path to listen on")
    parser.add_argument("--cache-dir", type=Path, default=None, help="converted-model cache folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument(
        "--adapters", type=Path, default=None, help="adapter registry folder (<home>/adapters)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"{TOKEN_ENV} must be set to the bearer token clients will present", file=sys.stderr)
        return 2
    # The GGUF conversion's bare tqdm bar ignores transformers' switch; tqdm reads this when imported,
    # which in this process happens later, inside the model load.
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from personad import privacy

    privacy.register_secret(os.environ.get(TOKEN_ENV))
    privacy.install_log_redaction()

    def load_engine() -> Any:
        from personad.models.local.engine import LocalEngine  # torch is imported here, not at startup

        engine = LocalEngine.load(args.cache_dir, threads=args.threads, inference_only=True)
        if args.adapters is not None:
            from personad.lora.manager import LoraAdapterManager

            LoraAdapterManager.for_engine(engine, args.adapters)
        return engine

    asyncio.run(serve(args.socket, token, load_engine, parent_pid=args.parent_pid, log_level=args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
