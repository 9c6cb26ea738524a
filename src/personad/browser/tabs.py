"""The session's tabs, its dialogs, printing the page to PDF, and the page's network requests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Literal
from urllib.parse import quote

from playwright.async_api import Error as PlaywrightError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personad.browser.elements import (
    action_failure,
    check_url,
    dialog_info,
    refuse_if_dialog,
    session_browser,
    settle,
)
from personad.browser.manager import MAX_TABS, SessionBrowser
from personad.bus.processor import CommandContext
from personad.errors import CommandFailedError, ConflictError, NotFoundError
from personad.files.confine import relative_name, resolve_inside

_PDF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


class TabsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["list", "new", "select", "close"] = "list"
    index: int | None = Field(default=None, ge=0, description="the tab for select / close (close: current)")
    url: str | None = Field(default=None, max_length=1 << 16, description="load this in a new tab")
    timeout_ms: int = Field(default=15_000, ge=100, le=120_000)

    @model_validator(mode="after")
    def _check(self) -> TabsParams:
        if self.action == "select" and self.index is None:
            raise ValueError("select needs index (see browser_tabs action=list)")
        if self.url is not None and self.action != "new":
            raise ValueError("url is for action=new; use browser_navigate to load a page in the current tab")
        return self


async def _tab_list(state: SessionBrowser) -> list[dict[str, Any]]:
    current = state.page
    tabs = []
    for index, page in enumerate(state.pages):
        title = None
        if state.pending_dialog is None:
            with contextlib.suppress(PlaywrightError, TimeoutError):
                title = await asyncio.wait_for(page.title(), 2)
        tabs.append({"index": index, "url": page.url, "title": title, "current": page is current})
    return tabs


def _tab(state: SessionBrowser, index: int | None) -> int:
    if index is None:
        return state.current
    if index >= len(state.pages):
        raise NotFoundError(
            f"no tab {index}: this session has {len(state.pages)} (0-{len(state.pages) - 1});"
            " see browser_tabs action=list",
            code="tab_not_found",
        )
    return index


async def browser_tabs(ctx: CommandContext, params: TabsParams) -> dict[str, Any]:
    """List, open, select or close this session's tabs; the other browser commands act on the current one.

    `new` opens a tab (with `url` loaded: http(s), data: or about:) and makes it current; `select` makes
    tab `index` current; `close` closes tab `index` (default: the current one; the only tab cannot be
    closed, `last_tab`). Pages the page opens (window.open, target=_blank) become tabs too. At most
    16 tabs (`too_many_tabs`). Returns `{"tabs": [{index, url, title, current}], "current"}`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        state.pages = [p for p in state.pages if not p.is_closed()]
        if params.action == "new":
            if len(state.pages) >= MAX_TABS:
                raise ConflictError(
                    f"this session has {MAX_TABS} tabs already; close one", code="too_many_tabs"
                )
            if params.url is not None:
                check_url(params.url)
            try:
                page = await state.context.new_page()
                state.adopt(page)
                state.current = state.pages.index(page)
                if params.url is not None:
                    await page.goto(params.url, timeout=params.timeout_ms)
            except (PlaywrightError, TimeoutError) as exc:
                raise action_failure("opening a tab", exc) from None
        elif params.action == "select":
            state.current = _tab(state, params.index)
            with contextlib.suppress(PlaywrightError):
                await state.page.bring_to_front()
        elif params.action == "close":
            index = _tab(state, params.index)
            if len(state.pages) == 1:
                raise ConflictError(
                    "the only tab cannot be closed; navigate it to about:blank instead", code="last_tab"
                )
            page = state.pages.pop(index)
            if state.current > index or state.current >= len(state.pages):
                state.current = max(0, state.current - 1)
            if state.pending_dialog is not None and state.pending_dialog.page is page:
                state.pending_dialog = None
            try:
                await page.close()
            except PlaywrightError as exc:
                raise action_failure("closing the tab", exc) from None
        return {"tabs": await _tab_list(state), "current": state.current}


class DialogParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept: bool = Field(description="true: OK / accept; false: Cancel / dismiss")
    prompt_text: str | None = Field(default=None, max_length=10_000, description="the answer to a prompt()")
    timeout_ms: int = Field(default=10_000, ge=100, le=60_000)


async def browser_handle_dialog(ctx: CommandContext, params: DialogParams) -> dict[str, Any]:
    """Accept or dismiss the open alert/confirm/prompt (with `prompt_text` for a prompt), or, when none is
    open, the next one this session's pages show.

    A dialog nobody answered keeps the page frozen: the other browser commands say `dialog_pending` until
    it is answered. Returns `{"handled": {type, message, accepted, prompt_text}}` and the page's new
    snapshot, or `{"armed": {accepted, prompt_text}}` when it waits for the next dialog.
    """
    state = await session_browser(ctx)
    async with state.lock:
        dialog = state.pending_dialog
        if dialog is None:
            state.armed_dialog = (params.accept, params.prompt_text)
            return {"armed": {"accepted": params.accept, "prompt_text": params.prompt_text}}
        info = dialog_info(state) or {}
        navigations = state.navigations
        state.pending_dialog = None
        try:
            if params.accept and params.prompt_text is not None:
                await dialog.accept(params.prompt_text)
            elif params.accept:
                await dialog.accept()
            else:
                await dialog.dismiss()
        except PlaywrightError as exc:
            raise action_failure("handling the dialog", exc) from None
        state.last_dialog = {**info, "accepted": params.accept, "prompt_text": params.prompt_text}
        blocked, state.blocked_action = state.blocked_action, None
        if blocked is not None:
            # The action that opened the dialog finishes now; its own failure is not this command's.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(blocked), params.timeout_ms / 1000)
        return {"handled": state.last_dialog, **await settle(state, navigations, params.timeout_ms)}


class PdfParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str | None = Field(default=None, description="file name under artifacts/pdfs/ (.pdf is added)")
    format: Literal["A4", "Letter", "Legal", "A3", "A5", "Tabloid"] = "A4"
    landscape: bool = False
    print_background: bool = True
    timeout_ms: int = Field(default=30_000, ge=100, le=120_000)

    @model_validator(mode="after")
    def _check(self) -> PdfParams:
        if self.filename is not None and not _PDF_NAME.match(self.filename):
            raise ValueError("filename: letters, digits, '_', '-', '.'; no folders")
        return self


async def browser_pdf(ctx: CommandContext, params: PdfParams) -> dict[str, Any]:
    """Print this session's current tab to a PDF under artifacts/pdfs/ (headless Chromium's print).

    Returns `{"path" (absolute), "artifact" (relative), "url" (HTTP, needs the token), "bytes",
    "page_url"}`. A file or folder in the way is `not_a_directory` / `is_a_directory`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        refuse_if_dialog(state)
        try:
            pdf = state.page.pdf(
                format=params.format, landscape=params.landscape, print_background=params.print_background
            )
            data = await asyncio.wait_for(pdf, params.timeout_ms / 1000)
        except (PlaywrightError, TimeoutError) as exc:
            raise action_failure("pdf", exc) from None
        page_url = state.page.url
    root = ctx.session.artifacts_dir
    name = params.filename or f"page-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    if not name.lower().endswith(".pdf"):
        name += ".pdf"
    target = resolve_inside(root, f"pdfs/{name}")
    if target.parent.exists() and not target.parent.is_dir():
        raise ConflictError(
            "artifacts/pdfs is a file, not a folder; move it to save PDFs", code="not_a_directory"
        )
    if target.is_dir():
        raise ConflictError(f"pdfs/{name} is a folder; pick another filename", code="is_a_directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise CommandFailedError(
            f"could not save the PDF: {exc.strerror or exc}", code="write_failed"
        ) from None
    relative = relative_name(root, target)
    return {
        "path": str(target),
        "artifact": relative,
        "url": f"/api/sessions/{ctx.session.id}/artifacts/{quote(relative)}",
        "bytes": len(data),
        "page_url": page_url,
    }


_STATIC = ("image", "stylesheet", "font", "media")


class NetworkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_static: bool = Field(
        default=True, description="false: leave out images, stylesheets, fonts, media"
    )
    limit: int = Field(default=200, ge=1, le=1000)


async def browser_network_requests(ctx: CommandContext, params: NetworkParams) -> dict[str, Any]:
    """The requests the current tab made since its page started loading (the devtools network view).

    Returns `{"requests": [{method, url, status, resource_type, failure, ts}], "count", "url"}`; `status`
    is null while no response came, `failure` says why a request failed. The last 1000 are kept.
    """
    state = await session_browser(ctx)
    page = state.page
    entries = [
        {k: v for k, v in entry.items() if not k.startswith("_")}
        for entry in state.network.get(page, [])
        if params.include_static or entry["resource_type"] not in _STATIC
    ][-params.limit :]
    return {"requests": entries, "count": len(entries), "url": page.url}
