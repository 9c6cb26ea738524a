"""The ASGI app: HTTP API, WebSocket bus, the browser page. Every route needs the daemon token."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from personad import __version__, wire
from personad.bus.sessions import Session, parse_capabilities, validate_session_id
from personad.daemon import Daemon
from personad.errors import (
    BadRequestError,
    InternalError,
    NotFoundError,
    PayloadTooLargeError,
    PersonadError,
    UnauthorizedError,
)
from personad.files.confine import resolve_inside
from personad.server.mcp import MCP_PATH, McpTransport
from personad.server.openai_api import create_router as create_openai_router
from personad.server.openai_api import openai_error
from personad.server.websocket import WebSocketConnection

SESSION_HEADER = "x-personad-session"
KIND_HEADER = "x-personad-kind"
CAPABILITIES_HEADER = "x-personad-capabilities"
DEFAULT_HTTP_SESSION = "api"
PUBLIC_PATHS = ("/healthz", "/static/", "/favicon.ico")

STATIC_DIR = resources.files("personad.web") / "static"

log = logging.getLogger(__name__)


class StrictJSONResponse(JSONResponse):
    """JSON as :mod:`personad.wire` writes it (no NaN/Infinity, ASCII-safe): a result always sends."""

    def render(self, content: Any) -> bytes:
        return wire.dumps(content).encode("ascii")


def _error_response(error: PersonadError) -> JSONResponse:
    return StrictJSONResponse({"ok": False, "error": error.to_dict()}, status_code=error.http_status)


def request_token(scope: Scope) -> str | None:
    """The bearer token from ``Authorization`` or the ``token`` query parameter."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class TokenAuthMiddleware:
    """Refuses every HTTP request without the daemon token (WebSocket checks it after accept)."""

    def __init__(self, app: ASGIApp, daemon: Daemon) -> None:
        self.app = app
        self.daemon = daemon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PATHS):
            await self.app(scope, receive, send)
            return
        if self.daemon.check_token(request_token(scope)):
            await self.app(scope, receive, send)
            return
        error = UnauthorizedError(
            "missing or bad token: send 'Authorization: Bearer <token>' or ?token=<token>;"
            " the token is in <home>/daemon.json"
        )
        if scope["path"].startswith("/v1/"):
            response: Any = openai_error(error)
        elif scope["path"] == "/":
            response = HTMLResponse(
                "<!doctype html><title>personad</title><h1>401</h1><p>Open the URL that "
                "<code>personad serve</code> printed (it carries <code>?token=…</code>).</p>",
                status_code=401,
            )
        else:
            response = _error_response(error)
        await response(scope, receive, send)


async def _read_json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"body exceeds the {limit}-byte limit")
    if not body.strip():
        return {}
    return wire.loads(bytes(body))


def http_session(daemon: Daemon, request: Request) -> Session:
    """HTTP callers name their session in ``X-Personad-Session`` (default: the shared ``api`` session)."""
    session_id = request.headers.get(SESSION_HEADER, DEFAULT_HTTP_SESSION)
    live = daemon.sessions.find(session_id)
    default_kind = live.kind if live is not None else "console" if session_id == "console" else "api"
    kind = request.headers.get(KIND_HEADER, default_kind)
    if kind not in ("api", "console", "browser"):
        raise BadRequestError(f"{KIND_HEADER} must be api, console or browser", code="invalid_kind")
    capabilities = parse_capabilities(request.headers.get(CAPABILITIES_HEADER))
    return daemon.sessions.open(kind=kind, session_id=session_id, capabilities=capabilities)


def create_app(daemon: Daemon) -> FastAPI:
    """Build the app around ``daemon``; the app's lifespan starts and stops it."""

    mcp = McpTransport(daemon)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await daemon.start()
        try:
            async with mcp.run():
                yield
        finally:
            await daemon.stop()

    app = FastAPI(
        title="personad",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        default_response_class=StrictJSONResponse,
        description="PersonaDaemon: one command bus for humans, programs and AI personas.",
    )
    app.state.daemon = daemon
    app.add_middleware(TokenAuthMiddleware, daemon=daemon)
    limit = daemon.settings.max_message_bytes

    @app.exception_handler(PersonadError)
    async def on_personad_error(request: Request, exc: PersonadError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"ok": False, "error": {"code": code, "message": str(exc.detail), "status": exc.status_code}}
        return StrictJSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(BadRequestError(f"invalid request: {exc.errors()}", code="invalid_params"))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug of ours still answers in the protocol's shape; the traceback stays in the daemon log.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(InternalError("the daemon failed to answer this request; see its log"))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/api/commands", summary="List every command with its params JSON schema")
    async def list_commands(request: Request) -> dict[str, Any]:
        result = await daemon.processor.execute(http_session(daemon, request), "commands", {})
        return {"ok": True, "result": result}

    @app.post("/api/commands/{name}", summary="Run a command (params as the JSON body)")
    async def run_command(name: str, request: Request) -> dict[str, Any]:
        params = await _read_json_body(request, limit)
        session = http_session(daemon, request)
        client_id = f"http-{request.client.host if request.client else 'local'}"
        result = await daemon.processor.execute(session, name, params, client_id=client_id)
        return {"ok": True, "result": result}

    @app.get("/api/sessions/{session_id}/artifacts/{path:path}", summary="Fetch a session artifact")
    async def artifact(session_id: str, path: str) -> FileResponse:
        validate_session_id(session_id)
        live = daemon.sessions.find(session_id)
        if live is not None:
            root = live.artifacts_dir
        else:
            kind = "persona" if daemon.persona_identity(session_id) is not None else "api"
            root = daemon.sessions.directory_for(kind, session_id) / "artifacts"
        target = resolve_inside(root, path)
        if not target.is_file():
            raise NotFoundError(f"no artifact {path!r} in session {session_id!r}", code="file_not_found")
        return FileResponse(target)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await WebSocketConnection(daemon, websocket).run()

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    app.include_router(create_openai_router(daemon))
    # MCP over streamable HTTP; the token check above covers it like /api (see personad.server.mcp).
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, include_in_schema=False))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.openapi = lambda: _openapi(app, daemon)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, daemon: Daemon) -> dict[str, Any]:
    """OpenAPI with one documented path per registered command, its params schema as the body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    schema["security"] = [{"bearer": []}]
    models = components.setdefault("schemas", {})
    for command in daemon.registry:
        params_schema = command.params.model_json_schema(ref_template="#/components/schemas/{model}")
        models.update(params_schema.pop("$defs", {}))
        schema["paths"][f"/api/commands/{command.name}"] = {
            "post": {
                "summary": command.description,
                "operationId": f"command_{command.name}",
                "tags": ["commands"],
                "description": f"Needs capability: {command.capability or '(none)'}",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": params_schema}},
                },
                "responses": {
                    "200": {"description": '{"ok": true, "result": {...}}'},
                    "4XX": {"description": '{"ok": false, "error": {"code", "message"}}'},
                },
            }
        }
    app.openapi_schema = schema
    return schema
