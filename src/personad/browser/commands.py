"""Browser commands on the session's own Chromium page: navigate, run JS, screenshot, console."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from PIL import Image
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personad.browser.manager import SessionBrowser
from personad.bus.commands import CommandRegistry
from personad.bus.processor import CommandContext
from personad.errors import BadRequestError, CommandFailedError, ConflictError
from personad.files.confine import relative_name, resolve_inside

# Local files and browser-internal pages stay out of reach: a session sees the web, not the host.
ALLOWED_SCHEMES = ("http", "https", "data", "about")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


def _check_url(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BadRequestError(
            f"URL scheme {scheme or '(none)'!r} refused; use one of {', '.join(ALLOWED_SCHEMES)}",
            code="invalid_url",
        )
    return url


class NavigateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=1 << 16, description="http(s), data: or about: URL")
    wait_until: Literal["load", "domcontentloaded", "networkidle", "commit"] = "load"
    timeout_ms: int = Field(default=15_000, ge=100, le=120_000)


class BrowserJsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str = Field(min_length=1, description="a JS expression or function source, evaluated in the page")
    encoding: Literal["utf8", "base64"] = Field(default="utf8", description="base64 if script is encoded")
    timeout_ms: int = Field(default=30_000, ge=100, le=300_000)


class ScreenshotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, description="navigate here first")
    selector: str | None = Field(default=None, description="capture only this element")
    full_page: bool = False
    format: Literal["png", "jpeg"] = "png"
    quality: int | None = Field(default=None, ge=0, le=100, description="JPEG quality")
    filename: str | None = Field(default=None, description="file name under artifacts/screenshots/")
    timeout_ms: int = Field(default=15_000, ge=100, le=120_000)

    @model_validator(mode="after")
    def _check(self) -> ScreenshotParams:
        if self.quality is not None and self.format != "jpeg":
            raise ValueError("quality applies only to format 'jpeg'")
        if self.selector is not None and self.full_page:
            raise ValueError("full_page and selector cannot be combined")
        if self.filename is not None and not _FILENAME.match(self.filename):
            raise ValueError("filename: letters, digits, '_', '-', '.'; no folders")
        return self


class ConsoleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clear: bool = Field(default=False, description="empty the buffer after reading")
    limit: int = Field(default=200, ge=1, le=1000)


async def _page(ctx: CommandContext) -> SessionBrowser:
    return await ctx.daemon.browser.for_session(ctx.session.id)


def _failure(action: str, exc: Exception) -> CommandFailedError:
    if isinstance(exc, PlaywrightTimeoutError | asyncio.TimeoutError):
        return CommandFailedError(f"{action} timed out", code="timeout")
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CommandFailedError(f"{action} failed: {message}", code="browser_error")


async def browser_navigate(ctx: CommandContext, params: NavigateParams) -> dict[str, Any]:
    """Load a URL in this session's page.

    Returns `{"url", "title", "status"}`. Only http(s), data: and about: URLs (`invalid_url` otherwise).
    """
    state = await _page(ctx)
    async with state.lock:
        response = await _goto(state, params.url, params.wait_until, params.timeout_ms)
        return {
            "url": state.page.url,
            "title": await state.page.title(),
            "status": response.status if response is not None else None,
        }


async def _goto(state: SessionBrowser, url: str, wait_until: Any, timeout_ms: int) -> Any:
    _check_url(url)
    try:
        return await state.page.goto(url, wait_until=wait_until, timeout=timeout_ms)
    except PlaywrightError as exc:
        raise _failure(f"navigating to {url}", exc) from None


async def browser_js(ctx: CommandContext, params: BrowserJsParams) -> dict[str, Any]:
    """Evaluate JavaScript in this session's page and return its JSON-serialisable value.

    Returns `{"value", "url"}`; a thrown error is `browser_error`, a hang past timeout_ms is `timeout`.
    """
    script = params.script
    if params.encoding == "base64":
        try:
            script = base64.b64decode(script, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error, or a non-ASCII str
            raise BadRequestError(f"script is not valid base64 UTF-8: {exc}", code="invalid_params") from None
    state = await _page(ctx)
    async with state.lock:
        try:
            value = await asyncio.wait_for(state.page.evaluate(script), params.timeout_ms / 1000)
        except (TimeoutError, PlaywrightError) as exc:
            raise _failure("script", exc) from None
    return {"value": value, "url": state.page.url}


async def screenshot(ctx: CommandContext, params: ScreenshotParams) -> dict[str, Any]:
    """Capture this session's page (or one element) into artifacts/screenshots/.

    Returns `{"path" (absolute), "artifact" (relative), "url" (HTTP, needs the token), "width", "height",
    "bytes", "format", "page_url"}`.
    """
    state = await _page(ctx)
    async with state.lock:
        if params.url is not None:
            await _goto(state, params.url, "load", params.timeout_ms)
        options: dict[str, Any] = {"type": params.format, "timeout": params.timeout_ms}
        if params.quality is not None:
            options["quality"] = params.quality
        try:
            if params.selector is not None:
                element = await state.page.wait_for_selector(params.selector, timeout=params.timeout_ms)
                if element is None:
                    raise CommandFailedError(
                        f"selector {params.selector!r} matched nothing", code="not_found"
                    )
                data = await element.screenshot(**options)
            else:
                data = await state.page.screenshot(full_page=params.full_page, **options)
        except PlaywrightError as exc:
            raise _failure("screenshot", exc) from None
    root = ctx.session.artifacts_dir
    extension = "jpg" if params.format == "jpeg" else "png"
    filename = params.filename or f"screenshot-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    if "." not in filename:
        filename = f"{filename}.{extension}"
    target = resolve_inside(root, f"screenshots/{filename}")
    _write_artifact(target, data)
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    relative = relative_name(root, target)
    return {
        "path": str(target),
        "artifact": relative,
        "url": f"/api/sessions/{ctx.session.id}/artifacts/{quote(relative)}",
        "width": width,
        "height": height,
        "bytes": len(data),
        "format": params.format,
        "page_url": state.page.url,
    }


def _write_artifact(target: Path, data: bytes) -> None:
    """Save a screenshot; a file or folder in the way (sessions write artifacts too) is a clear error."""
    folder = target.parent
    if folder.exists() and not folder.is_dir():
        raise ConflictError(
            f"artifacts/{folder.name} is a file, not a folder; move it to save screenshots",
            code="not_a_directory",
        )
    if target.is_dir():
        raise ConflictError(
            f"screenshots/{target.name} is a folder; pick another filename", code="is_a_directory"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise CommandFailedError(
            f"could not save the screenshot: {exc.strerror or exc}", code="write_failed"
        ) from None


async def browser_console(ctx: CommandContext, params: ConsoleParams) -> dict[str, Any]:
    """Console messages and page errors captured on this session's page (the devtools view).

    Returns `{"entries": [{type, text, url, line, ts}], "count"}`; `type` is log, warning, error, …,
    or `pageerror` for an uncaught exception. The last 1000 are kept.
    """
    state = await _page(ctx)
    entries = list(state.console)[-params.limit :]
    if params.clear:
        state.console.clear()
    return {"entries": entries, "count": len(entries)}


def register_commands(registry: CommandRegistry) -> None:
    registry.add("browser_navigate", browser_navigate, params=NavigateParams, capability="browser")
    registry.add("browser_js", browser_js, params=BrowserJsParams, capability="browser_js")
    registry.add("screenshot", screenshot, params=ScreenshotParams, capability="screenshot")
    registry.add("browser_console", browser_console, params=ConsoleParams, capability="devtools")
