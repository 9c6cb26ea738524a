"""Browser commands on the session's own Chromium page: navigate, run JS, screenshot, console; and the
registration of every browser command (those that use a page as a person does live in actions.py and
tabs.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from PIL import Image
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from personad.browser import actions, tabs
from personad.browser.elements import check_url as _check_url
from personad.browser.manager import SessionBrowser
from personad.browser.snapshot import SnapshotParams
from personad.bus.commands import CommandRegistry
from personad.bus.processor import CommandContext
from personad.errors import BadRequestError, CommandFailedError, ConflictError
from personad.files.confine import relative_name, resolve_inside

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


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


# Screenshot geometry, in CSS pixels (the page's device scale factor is 1, so also image pixels).
MIN_VIEWPORT = 16
MAX_VIEWPORT = 8192
MAX_CLIP = 16383  # WebP's largest side; Chromium's own capture limit is about the same
_EXTENSIONS: dict[str, tuple[str, ...]] = {"png": ("png",), "jpeg": ("jpg", "jpeg"), "webp": ("webp",)}
_FORMAT_OF_EXTENSION = {ext: fmt for fmt, exts in _EXTENSIONS.items() for ext in exts}
# The size Playwright trims a full-page clip to (its own fullPageSize), so the bounds check agrees with it.
_PAGE_SIZE_JS = """() => {
  const d = document.documentElement, b = document.body || d;
  const w = Math.max(b.scrollWidth, d.scrollWidth, b.offsetWidth, d.offsetWidth, b.clientWidth,
                     d.clientWidth);
  const h = Math.max(b.scrollHeight, d.scrollHeight, b.offsetHeight, d.offsetHeight, b.clientHeight,
                     d.clientHeight);
  return [w, h];
}"""


def _numbers(value: Any, names: tuple[str, ...], what: str, example: str) -> Any:
    """A list or "a,b,c" / "AxB" string of len(names) numbers as a dict; other values pass to the model."""
    if isinstance(value, str):
        text = value.strip()
        parts = re.split(r"\s*[,xX]\s*|\s+", text) if text else []
        if len(parts) != len(names):
            raise PydanticCustomError(
                f"invalid_{what}",
                "{what} as a string is {example}, got {value}",
                {"what": what, "example": example, "value": repr(value)},
            )
        value = parts
    if isinstance(value, list | tuple):
        if len(value) != len(names):
            raise PydanticCustomError(
                f"invalid_{what}",
                "{what} as a list is [{names}], got {count} item(s)",
                {"what": what, "names": ", ".join(names), "count": len(value)},
            )
        value = dict(zip(names, value, strict=True))
    if isinstance(value, dict) and any(isinstance(v, bool) for v in value.values()):
        raise PydanticCustomError(
            f"invalid_{what}", "{what} values are pixel counts, not booleans", {"what": what}
        )
    return value


class Clip(BaseModel):
    """A rectangle of the page in CSS pixels: from the viewport's top-left, or the page's with full_page."""

    model_config = ConfigDict(extra="forbid")
    x: int = Field(ge=0, le=MAX_CLIP)
    y: int = Field(ge=0, le=MAX_CLIP)
    width: int = Field(gt=0, le=MAX_CLIP)
    height: int = Field(gt=0, le=MAX_CLIP)

    @model_validator(mode="after")
    def _within_limit(self) -> Clip:
        if self.x + self.width > MAX_CLIP or self.y + self.height > MAX_CLIP:
            raise PydanticCustomError(
                "clip_too_large", "coords must end within {limit} px of the origin", {"limit": MAX_CLIP}
            )
        return self


class Viewport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(ge=MIN_VIEWPORT, le=MAX_VIEWPORT)
    height: int = Field(ge=MIN_VIEWPORT, le=MAX_VIEWPORT)


def _clip_input(value: Any) -> Any:
    return _numbers(value, ("x", "y", "width", "height"), "coords", "'x,y,width,height'")


def _viewport_input(value: Any) -> Any:
    return _numbers(value, ("width", "height"), "resolution", "'WIDTHxHEIGHT'")


def _format_input(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        return "jpeg" if value == "jpg" else value
    return value


def _forms(obj: dict[str, Any], items: int, string: str) -> Any:
    """The JSON schema of a field that takes an object, a list of numbers or a string."""
    return WithJsonSchema(
        {
            "anyOf": [
                obj,
                {"type": "array", "items": {"type": "integer"}, "minItems": items, "maxItems": items},
                {"type": "string", "description": string},
                {"type": "null"},
            ],
            "default": None,
        }
    )


_INT = {"type": "integer"}
ClipParam = Annotated[
    Clip | None,
    BeforeValidator(_clip_input),
    _forms(
        {"type": "object", "properties": {"x": _INT, "y": _INT, "width": _INT, "height": _INT}},
        4,
        "x,y,width,height",
    ),
]
ViewportParam = Annotated[
    Viewport | None,
    BeforeValidator(_viewport_input),
    _forms({"type": "object", "properties": {"width": _INT, "height": _INT}}, 2, "WIDTHxHEIGHT"),
]


class ScreenshotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, description="navigate here first")
    selector: str | None = Field(default=None, description="capture only this element")
    full_page: bool = Field(default=False, description="the whole scrollable page, not just the viewport")
    coords: ClipParam = Field(
        default=None,
        description='clip `{x, y, width, height}`, `[x, y, w, h]` or `"x,y,w,h"` (CSS px; the image is this'
        f" size; within the viewport, or the page with full_page; up to {MAX_CLIP})",
    )
    resolution: ViewportParam = Field(
        default=None,
        description=f'viewport `{{width, height}}`, `[w, h]` or `"WIDTHxHEIGHT"` for this shot only'
        f" ({MIN_VIEWPORT}-{MAX_VIEWPORT} px)",
    )
    format: Annotated[Literal["png", "jpeg", "webp"], BeforeValidator(_format_input)] = Field(
        default="png",
        description="`png`, `jpeg` (or `jpg`) or `webp`; default: the filename's extension, else png",
    )
    quality: int | None = Field(default=None, ge=0, le=100, description="jpeg / webp quality")
    filename: str | None = Field(default=None, description="file name under artifacts/screenshots/")
    timeout_ms: int = Field(default=15_000, ge=100, le=120_000)

    @model_validator(mode="after")
    def _check(self) -> ScreenshotParams:
        if self.filename is not None and not _FILENAME.match(self.filename):
            raise ValueError("filename: letters, digits, '_', '-', '.'; no folders")
        if self.filename is not None and "." in self.filename:
            extension = self.filename.rsplit(".", 1)[1].lower()
            implied = _FORMAT_OF_EXTENSION.get(extension)
            if "format" not in self.model_fields_set and implied is not None:
                self.format = implied  # type: ignore[assignment]
            elif implied is None:
                raise PydanticCustomError(
                    "extension_mismatch",
                    "filename {filename}: {extension} is not an image extension; end it in .png, .jpg,"
                    " .jpeg or .webp, or leave the extension off and the format's is added",
                    {"filename": repr(self.filename), "extension": repr(f".{extension}")},
                )
            elif implied != self.format:
                raise PydanticCustomError(
                    "extension_mismatch",
                    "filename {filename} does not end in the extension of format {format}: use {wanted},"
                    " or leave the extension off and it is added",
                    {
                        "filename": repr(self.filename),
                        "format": repr(self.format),
                        "wanted": " or ".join(f"'.{e}'" for e in _EXTENSIONS[self.format]),
                    },
                )
        if self.quality is not None and self.format == "png":
            raise ValueError("quality applies only to formats 'jpeg' and 'webp'")
        if self.selector is not None and self.full_page:
            raise ValueError("full_page and selector cannot be combined")
        if self.selector is not None and self.coords is not None:
            raise ValueError("coords and selector cannot be combined (coords clip the page, not the element)")
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
    """Capture this session's page (or one element, or a clip of it) into artifacts/screenshots/.

    - `coords` clips the shot to a rectangle in CSS pixels, measured from the top-left of the viewport (of
      the whole page with `full_page`); the image is exactly `width` x `height`. A clip that does not fit
      inside the viewport (the page) is refused with `clip_out_of_bounds`, whose `details` give the size it
      must fit in. It cannot be combined with `selector`.
    - `resolution` sets the page's viewport for this shot only: it is applied before `url` is loaded and
      the shot is taken, then the previous viewport (1280x720) is restored, also when the shot fails. The
      page sees both resizes (`resize` events, media queries); later commands see the usual size.
    - `format` is `png` (default), `jpeg` (`jpg`) or `webp` (encoded by Chromium); `quality` (0-100) is for
      jpeg and webp only.
    - `filename` names the file under artifacts/screenshots/ (default: a timestamped name). Without an
      extension the format's is added (`.png`, `.jpg`, `.webp`). An extension is never changed: when
      `format` is given it must match (`.jpeg` also works for jpeg), else the call is refused; when
      `format` is not given, the extension picks it (`filename=page.webp` is a webp).

    Bad params are `invalid_params`; `details` lists each problem with its `loc` and `type` (e.g.
    `extension_mismatch`, `invalid_coords`, `clip_too_large`, `invalid_resolution`). Returns `{"path"
    (absolute), "artifact" (relative), "url" (HTTP, needs the token), "width", "height", "bytes", "format",
    "viewport" (the `{width, height}` the shot was taken at), "page_url"}`.
    """
    state = await _page(ctx)
    async with state.lock:
        previous = state.page.viewport_size
        wanted = params.resolution.model_dump() if params.resolution is not None else None
        resized = wanted is not None and wanted != previous
        try:
            if resized:
                await state.page.set_viewport_size(wanted)  # type: ignore[arg-type]
            if params.url is not None:
                await _goto(state, params.url, "load", params.timeout_ms)
            viewport = state.page.viewport_size
            data = await _capture(state, params)
        except (PlaywrightError, TimeoutError) as exc:  # TimeoutError: the DevTools call for webp
            raise _failure("screenshot", exc) from None
        finally:
            if resized and previous is not None:
                # A page that is gone stays gone; the next command gets a fresh one at the default size.
                with contextlib.suppress(PlaywrightError):
                    await state.page.set_viewport_size(previous)
        page_url = state.page.url
    root = ctx.session.artifacts_dir
    filename = params.filename or f"screenshot-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    if "." not in filename:
        filename = f"{filename}.{_EXTENSIONS[params.format][0]}"
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
        "viewport": viewport,
        "page_url": page_url,
    }


async def _capture(state: SessionBrowser, params: ScreenshotParams) -> bytes:
    """The image bytes; PlaywrightError (and timeouts) propagate to the caller."""
    page = state.page
    clip = params.coords.model_dump() if params.coords is not None else None
    if clip is not None:
        await _check_clip(state, clip, params.full_page)
    element = None
    if params.selector is not None:
        element = await page.wait_for_selector(params.selector, timeout=params.timeout_ms)
        if element is None:
            raise CommandFailedError(f"selector {params.selector!r} matched nothing", code="not_found")
    if params.format == "webp":
        return await _capture_webp(state, params, clip, element)
    options: dict[str, Any] = {"type": params.format, "timeout": params.timeout_ms}
    if params.quality is not None:
        options["quality"] = params.quality
    if element is not None:
        return await element.screenshot(**options)
    if clip is not None:
        options["clip"] = clip
    return await page.screenshot(full_page=params.full_page, **options)


async def _check_clip(state: SessionBrowser, clip: dict[str, int], full_page: bool) -> None:
    """Refuse a clip Chromium would trim: the image must be exactly the size asked for."""
    if full_page:
        width, height = await state.page.evaluate(_PAGE_SIZE_JS)
        where = "page"
    else:
        size = state.page.viewport_size or {"width": 0, "height": 0}
        width, height = size["width"], size["height"]
        where = "viewport"
    if clip["x"] + clip["width"] > width or clip["y"] + clip["height"] > height:
        raise BadRequestError(
            f"coords {clip['x']},{clip['y']} {clip['width']}x{clip['height']} do not fit the {where}"
            f" ({width}x{height}); "
            + ("make them smaller" if full_page else "make them smaller, or add full_page or resolution"),
            code="clip_out_of_bounds",
            details={where: {"width": width, "height": height}},
        )


async def _capture_webp(
    state: SessionBrowser, params: ScreenshotParams, clip: dict[str, int] | None, element: Any
) -> bytes:
    """WebP through DevTools' Page.captureScreenshot (Playwright only encodes png and jpeg).

    The clip there is in document coordinates, so a viewport-relative rectangle is moved by the scroll offset.
    """
    page = state.page
    options: dict[str, Any] = {"format": "webp"}
    if params.quality is not None:
        options["quality"] = params.quality
    rect: dict[str, float] | None = None
    beyond = params.full_page
    if element is not None:
        await element.scroll_into_view_if_needed(timeout=params.timeout_ms)
        box = await element.bounding_box()
        if box is None:
            raise CommandFailedError(f"selector {params.selector!r} is not visible", code="not_visible")
        rect, beyond = dict(box), True
    elif clip is not None:
        rect = {k: float(v) for k, v in clip.items()}
    elif params.full_page:
        width, height = await page.evaluate(_PAGE_SIZE_JS)
        rect = {"x": 0.0, "y": 0.0, "width": float(width), "height": float(height)}
    if rect is not None:
        if not params.full_page:
            scroll_x, scroll_y = await page.evaluate("() => [window.scrollX, window.scrollY]")
            rect["x"] += scroll_x
            rect["y"] += scroll_y
        # Whole pixels covering the rectangle, as Playwright does for its own clips.
        left, top = math.floor(rect["x"]), math.floor(rect["y"])
        right, bottom = math.ceil(rect["x"] + rect["width"]), math.ceil(rect["y"] + rect["height"])
        options["clip"] = {"x": left, "y": top, "width": right - left, "height": bottom - top, "scale": 1}
        options["captureBeyondViewport"] = beyond
    cdp = await state.cdp()
    reply = await asyncio.wait_for(cdp.send("Page.captureScreenshot", options), params.timeout_ms / 1000)
    return base64.b64decode(reply["data"])


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
    registry.add("browser_snapshot", actions.browser_snapshot, params=SnapshotParams, capability="browser")
    acting: list[tuple[str, Any, type[BaseModel]]] = [
        ("browser_click", actions.browser_click, actions.ClickParams),
        ("browser_type", actions.browser_type, actions.TypeParams),
        ("browser_fill_form", actions.browser_fill_form, actions.FillFormParams),
        ("browser_press_key", actions.browser_press_key, actions.PressKeyParams),
        ("browser_select_option", actions.browser_select_option, actions.SelectOptionParams),
        ("browser_hover", actions.browser_hover, actions.HoverParams),
        ("browser_drag", actions.browser_drag, actions.DragParams),
        ("browser_wait_for", actions.browser_wait_for, actions.WaitForParams),
        ("browser_back", actions.browser_back, actions.HistoryParams),
        ("browser_forward", actions.browser_forward, actions.HistoryParams),
        ("browser_file_upload", actions.browser_file_upload, actions.FileUploadParams),
        ("browser_tabs", tabs.browser_tabs, tabs.TabsParams),
        ("browser_handle_dialog", tabs.browser_handle_dialog, tabs.DialogParams),
        ("browser_pdf", tabs.browser_pdf, tabs.PdfParams),
    ]
    for name, handler, params in acting:
        registry.add(name, handler, params=params, capability="browser")
    # What the page fetched is the devtools view, like its console: the same capability.
    registry.add(
        "browser_network_requests",
        tabs.browser_network_requests,
        params=tabs.NetworkParams,
        capability="devtools",
    )
