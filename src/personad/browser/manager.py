"""One shared Chromium, started lazily; one isolated context and page per session."""

from __future__ import annotations

import asyncio
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
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from personad.config import DEFAULT_CHROMIUM_ARGS
from personad.errors import UnavailableError

log = logging.getLogger(__name__)

CONSOLE_BUFFER = 1000


@dataclass
class SessionBrowser:
    """A session's private browser state: its own context (cookies, storage) and page."""

    context: BrowserContext
    page: Page
    console: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CONSOLE_BUFFER))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _cdp: CDPSession | None = field(default=None, init=False, repr=False)

    async def cdp(self) -> CDPSession:
        """A DevTools-protocol session on this page (created once), for what Playwright does not expose."""
        if self._cdp is None:
            self._cdp = await self.context.new_cdp_session(self.page)
        return self._cdp

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
        self.console.append(
            {"type": "pageerror", "text": str(error), "url": self.page.url, "ts": time.time()}
        )


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
        if existing is not None and not existing.page.is_closed():
            return existing
        browser = await self._ensure_browser()
        context = await browser.new_context(
            viewport={"width": self.viewport[0], "height": self.viewport[1]}, accept_downloads=False
        )
        page = await context.new_page()
        state = SessionBrowser(context, page)
        page.on("console", state._on_console)
        page.on("pageerror", state._on_page_error)
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
