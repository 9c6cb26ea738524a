"""What the acting browser commands share: element targets (ref or selector), structured errors, and
running an action so that the caller gets the page's new snapshot, or the dialog the action opened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personad.browser.manager import SessionBrowser
from personad.browser.snapshot import REF_ATTRIBUTE, take_snapshot
from personad.bus.processor import CommandContext
from personad.errors import (
    BadRequestError,
    CommandFailedError,
    ConflictError,
    NotFoundError,
    PersonadError,
)

# Local files and browser-internal pages stay out of reach: a session sees the web, not the host.
ALLOWED_SCHEMES = ("http", "https", "data", "about")
REF_PATTERN = r"^e[0-9]{1,9}$"
ACTION_TIMEOUT_MS = 5_000
MAX_ACTION_TIMEOUT_MS = 60_000
# Playwright's call log says why an element it found could not be acted on.
_NOT_INTERACTABLE = (
    "element is not visible",
    "element is not enabled",
    "element is not editable",
    "intercepts pointer events",
    "element is outside of the viewport",
    "element is not stable",
    "not an <input>",
    "not a <select>",
    "not a checkbox or radio",
    "not a file input",
    "element is not attached",
)


class Target(BaseModel):
    """One element of the page: a ref from browser_snapshot (preferred) or a selector."""

    model_config = ConfigDict(extra="forbid")
    ref: str | None = Field(
        default=None, pattern=REF_PATTERN, description="an element ref from browser_snapshot"
    )
    selector: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="a CSS or Playwright selector, instead of ref",
    )
    element: str | None = Field(default=None, max_length=500, description="what the element is, in words")

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        if (self.ref is None) == (self.selector is None):
            raise ValueError("give exactly one of ref (from browser_snapshot) or selector")
        return self

    def describe(self) -> str:
        what = f"ref {self.ref}" if self.ref is not None else f"selector {self.selector!r}"
        return f"{self.element} ({what})" if self.element else what

    def key(self) -> dict[str, str]:
        return {"ref": self.ref} if self.ref is not None else {"selector": str(self.selector)}


def check_url(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BadRequestError(
            f"URL scheme {scheme or '(none)'!r} refused; use one of {', '.join(ALLOWED_SCHEMES)}",
            code="invalid_url",
        )
    return url


def action_timeout(default: int = ACTION_TIMEOUT_MS) -> Any:
    return Field(default=default, ge=100, le=MAX_ACTION_TIMEOUT_MS, description="milliseconds")


async def session_browser(ctx: CommandContext) -> SessionBrowser:
    return await ctx.daemon.browser.for_session(ctx.session.id)


def refuse_if_dialog(state: SessionBrowser) -> None:
    """While a dialog is open the page's scripts are frozen: everything but answering it would hang."""
    dialog = state.pending_dialog
    if dialog is not None:
        raise ConflictError(
            f"a {dialog.type} dialog is open ({dialog.message!r}); answer it with browser_handle_dialog"
            " (accept or dismiss) first",
            code="dialog_pending",
            details={"dialog": dialog_info(state)},
        )


def dialog_info(state: SessionBrowser) -> dict[str, Any] | None:
    dialog = state.pending_dialog
    if dialog is None:
        return None
    return {"type": dialog.type, "message": dialog.message, "default_value": dialog.default_value}


async def locate(state: SessionBrowser, target: Target) -> Locator:
    """The element a target names, or ref_not_found / element_not_found / invalid_selector."""
    refuse_if_dialog(state)
    page = state.page
    if target.ref is not None:
        locator = page.locator(f'[{REF_ATTRIBUTE}="{target.ref}"]')
    else:
        locator = page.locator(str(target.selector))
    try:
        count = await asyncio.wait_for(locator.count(), ACTION_TIMEOUT_MS / 1000)
    except (PlaywrightError, TimeoutError) as exc:
        if target.selector is not None and isinstance(exc, PlaywrightError):
            raise BadRequestError(
                f"selector {target.selector!r} is not valid: {_first_line(exc)}", code="invalid_selector"
            ) from None
        raise action_failure("finding the element", exc, target) from None
    if count == 0 and target.ref is not None:
        raise NotFoundError(
            f"ref {target.ref} is not on the page (the element is gone or the page changed); take a new"
            " browser_snapshot and use a ref from it",
            code="ref_not_found",
            details={"ref": target.ref},
        )
    if count == 0:
        raise NotFoundError(
            f"selector {target.selector!r} matches nothing on the page; take a browser_snapshot and use"
            " a ref from it",
            code="element_not_found",
        )
    return locator.first


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def action_failure(action: str, exc: BaseException, target: Target | None = None) -> PersonadError:
    """A Playwright failure as a structured error with a code a model or client can act on."""
    if isinstance(exc, PersonadError):
        return exc
    text = str(exc)
    lowered = text.lower()
    where = f" {target.describe()}" if target is not None else ""
    if "did not find some options" in lowered:
        return NotFoundError(f"{action}:{where} has no such option", code="option_not_found")
    if "unknown key" in lowered:
        return BadRequestError(f"{action}: {_first_line(exc)}", code="invalid_key")
    reason = next((r for r in _NOT_INTERACTABLE if r in lowered), None)
    if reason is not None:
        return CommandFailedError(
            f"{action}:{where} cannot be acted on ({reason.removeprefix('element ')}); take a"
            " browser_snapshot and pick a visible, enabled element",
            code="element_not_interactable",
            details={"reason": reason},
        )
    if isinstance(exc, PlaywrightTimeoutError | TimeoutError):
        return CommandFailedError(f"{action} timed out", code="timeout")
    return CommandFailedError(f"{action} failed: {_first_line(exc)}", code="browser_error")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an action a dialog blocked may fail later; nobody is waiting for it then


async def until_dialog(state: SessionBrowser, work: Awaitable[Any]) -> tuple[bool, Any]:
    """Await work unless a dialog opens first: (True, result), or (False, None) with work left running."""
    task = asyncio.ensure_future(work)
    opened = state.wait_dialog()
    try:
        await asyncio.wait({task, opened}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        opened.cancel()
    if task.done():
        return True, task.result()
    task.add_done_callback(_retrieve)
    return False, task


async def page_state(state: SessionBrowser, timeout_ms: int = 10_000) -> dict[str, Any]:
    """The snapshot after an action, or what the dialog it opened says (the page is frozen until answered)."""
    if state.pending_dialog is None:
        done, snapshot = await until_dialog(state, take_snapshot(state, timeout_ms=timeout_ms))
        if done:
            return dict(snapshot)
        snapshot.cancel()
    return {
        "url": state.page.url,
        "title": None,
        "snapshot": None,
        "dialog": dialog_info(state),
        "hint": "a dialog is open and the page waits for it: answer it with browser_handle_dialog",
    }


async def perform(
    state: SessionBrowser,
    action: Callable[[], Awaitable[Any]],
    *,
    what: str,
    target: Target | None = None,
    timeout_ms: int = ACTION_TIMEOUT_MS,
) -> dict[str, Any]:
    """Run an action on the current tab and return the page afterwards (its snapshot, or the dialog)."""
    refuse_if_dialog(state)
    navigations = state.navigations
    try:
        done, task = await until_dialog(state, action())
    except (PlaywrightError, TimeoutError) as exc:
        raise action_failure(what, exc, target) from None
    if not done:
        state.blocked_action = task
        return await page_state(state, timeout_ms)
    return await settle(state, navigations, timeout_ms)


async def settle(state: SessionBrowser, navigations: int, timeout_ms: int) -> dict[str, Any]:
    """Give a navigation the action started time to load, then snapshot the page."""
    await asyncio.sleep(0.1)  # a click's navigation request is issued just after the click returns
    if state.navigations != navigations and state.pending_dialog is None:
        with contextlib.suppress(PlaywrightError):
            await state.page.wait_for_load_state("load", timeout=min(timeout_ms, 10_000))
    try:
        return await page_state(state, timeout_ms)
    except (PlaywrightError, TimeoutError) as exc:
        raise action_failure("snapshot", exc) from None
