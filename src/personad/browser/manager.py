"""One shared Chromium, started lazily; one isolated context and page per session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    Request,
    Response,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from personad.config import DEFAULT_CHROMIUM_ARGS
from personad.errors import UnavailableError

log = logging.getLogger(__name__)

CONSOLE_BUFFER = 1000
NETWORK_BUFFER = 1000
MAX_TABS = 16


@dataclass
class SessionBrowser:
    """A session's private browser state: its own context (cookies, storage) and a few tabs.

    ``page`` is the current tab; every single-page command acts on it. Dialogs, the network log and the
    element-ref counter belong to the session, so refs stay unique across its tabs and pages.
    """

    context: BrowserContext
    pages: list[Page] = field(default_factory=list)
    console: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CONSOLE_BUFFER))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: int = 0
    ref_counter: int = 0
    # A dialog nobody has answered yet, and the answer armed for the next one (accept, prompt text).
    pending_dialog: Dialog | None = None
    armed_dialog: tuple[bool, str | None] | None = None
    last_dialog: dict[str, Any] | None = None
    # An action blocked by the dialog it opened; it finishes once the dialog is handled.
    blocked_action: asyncio.Future[Any] | None = None
    navigations: int = 0
    network: dict[Page, deque[dict[str, Any]]] = field(default_factory=dict)
    _dialog_waiters: list[asyncio.Future[Dialog]] = field(default_factory=list, repr=False)
    _cdp: CDPSession | None = field(default=None, init=False, repr=False)
    _cdp_page: Page | None = field(default=None, init=False, repr=False)

    @property
    def page(self) -> Page:
        """The current tab (the last open one when the current one closed itself)."""
        self.pages = [p for p in self.pages if not p.is_closed()]
        if not self.pages:
            raise PlaywrightError("the session's page is closed")
        self.current = min(self.current, len(self.pages) - 1)
        return self.pages[self.current]

    def is_closed(self) -> bool:
        return all(p.is_closed() for p in self.pages)

    async def cdp(self) -> CDPSession:
        """A DevTools-protocol session on the current page (one per page), for what Playwright lacks."""
        page = self.page
        if self._cdp is None or self._cdp_page is not page:
            self._cdp = await self.context.new_cdp_session(page)
            self._cdp_page = page
        return self._cdp

    def adopt(self, page: Page) -> None:
        """Track a tab: opened by a command, by the page (window.open, target=_blank) or the first one."""
        if page in self.pages:
            return
        self.pages.append(page)
        self.network[page] = deque(maxlen=NETWORK_BUFFER)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("dialog", self._on_dialog)
        page.on("request", lambda request: self._on_request(page, request))
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        page.on("close", self._on_close)

    def _on_close(self, page: Page) -> None:
        self.network.pop(page, None)

    def wait_dialog(self) -> asyncio.Future[Dialog]:
        """A future resolved when a dialog opens and stays pending (no armed answer took it)."""
        future: asyncio.Future[Dialog] = asyncio.get_running_loop().create_future()
        self._dialog_waiters.append(future)
        return future

    async def _on_dialog(self, dialog: Dialog) -> None:
        info = {"type": dialog.type, "message": dialog.message, "default_value": dialog.default_value}
        if self.armed_dialog is not None:
            accept, text = self.armed_dialog
            self.armed_dialog = None
            self.last_dialog = {**info, "accepted": accept, "prompt_text": text}
            with contextlib.suppress(PlaywrightError):
                if accept and text is not None:
                    await dialog.accept(text)
                elif accept:
                    await dialog.accept()
                else:
                    await dialog.dismiss()
            return
        self.pending_dialog = dialog
        waiters, self._dialog_waiters = self._dialog_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(dialog)

    def _on_request(self, page: Page, request: Request) -> None:
        log_ = self.network.get(page)
        if log_ is None:
            return
        if request.is_navigation_request() and request.frame == page.main_frame:
            # A new document: the log is of the requests the current page made since it started loading.
            log_.clear()
            self.navigations += 1
        log_.append(
            {
                "method": request.method,
                "url": request.url,
                "resource_type": request.resource_type,
                "status": None,
                "failure": None,
                "ts": time.time(),
                "_request": request,
            }
        )

    def _entry(self, request: Request) -> dict[str, Any] | None:
        for entries in self.network.values():
            for entry in reversed(entries):
                if entry["_request"] is request:
                    return entry
        return None

    def _on_response(self, response: Response) -> None:
        entry = self._entry(response.request)
        if entry is not None:
            entry["status"] = response.status

    def _on_request_failed(self, request: Request) -> None:
        entry = self._entry(request)
        if entry is not None:
            entry["failure"] = request.failure or "failed"

    def _on_console(self, message: ConsoleMessage) -> None:
        location = message.location
        self.console.append(
            {
                "type": message.type,
                "text": message.text,
                "url": location.get("url") if location else None,
                "line": location.get("lineNumber") if location else None,
                "ts": time.time(),
            }
        )

    def _on_page_error(self, error: PlaywrightError | Exception) -> None:
        url = next((p.url for p in self.pages if not p.is_closed()), None)
        self.console.append({"type": "pageerror", "text": str(error), "url": url, "ts": time.time()})


class BrowserManager:
    def __init__(
        self,
        executable: str,
        *,
        headless: bool = True,
        args: tuple[str, ...] = DEFAULT_CHROMIUM_ARGS,
        viewport: tuple[int, int] = (1280, 720),
    ) -> None:
        self.executable = executable
        self.headless = headless
        self.args = args
        self.viewport = viewport
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._sessions: dict[str, SessionBrowser] = {}
        self._launch_lock = asyncio.Lock()

    async def _ensure_browser(self) -> Browser:
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if not Path(self.executable).exists():
                raise UnavailableError(
                    f"Chromium not found at {self.executable}; install it with 'apt-get install -y chromium'"
                    " or set PERSONAD_BROWSER_EXECUTABLE",
                    code="browser_unavailable",
                )
            # A crashed browser leaves dead contexts behind; forget them so sessions get fresh ones.
            self._sessions.clear()
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            try:
                self._browser = await self._playwright.chromium.launch(
                    executable_path=self.executable, headless=self.headless, args=list(self.args)
                )
            except PlaywrightError as exc:
                raise UnavailableError(
                    f"Chromium failed to start: {exc}", code="browser_unavailable"
                ) from exc
            log.info("browser started: %s", self._browser.version)
            return self._browser

    async def for_session(self, session_id: str) -> SessionBrowser:
        """The session's context and page, created on first use."""
        existing = self._sessions.get(session_id)
        if existing is not None and not existing.is_closed():
            return existing
        browser = await self._ensure_browser()
        context = await browser.new_context(
            viewport={"width": self.viewport[0], "height": self.viewport[1]}, accept_downloads=False
        )
        state = SessionBrowser(context)
        # Pages the page opens itself (window.open, target=_blank) become tabs of the session too.
        context.on("page", state.adopt)
        state.adopt(await context.new_page())
        self._sessions[session_id] = state
        return state

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    async def close_session(self, session_id: str) -> None:
        state = self._sessions.pop(session_id, None)
        if state is not None:
            try:
                await state.context.close()
            except PlaywrightError:
                log.debug("context of %s already gone", session_id)

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.close_session(session_id)
        if self._browser is not None:
            try:
                await self._browser.close()
            except PlaywrightError:
                log.debug("browser already closed")
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
