"""Using a page as a person does: snapshot, click, type, fill a form, keys, options, hover, drag, waits,
history and file uploads. Each acting command returns the page's new snapshot with what it did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personad.browser.elements import (
    Target,
    action_failure,
    action_timeout,
    locate,
    perform,
    refuse_if_dialog,
    session_browser,
    settle,
)
from personad.browser.snapshot import SnapshotParams, take_snapshot
from personad.bus.processor import CommandContext
from personad.errors import BadRequestError, CommandFailedError, NotFoundError
from personad.files.confine import resolve_inside

Modifier = Literal["Alt", "Control", "ControlOrMeta", "Meta", "Shift"]
_TRUE = {"true", "1", "yes", "on", "checked"}
_FALSE = {"false", "0", "no", "off", "unchecked", ""}


async def browser_snapshot(ctx: CommandContext, params: SnapshotParams) -> dict[str, Any]:
    """An accessibility snapshot of this session's current tab, with a ref for each element to act on.

    One line per node: `- role "accessible name" [checked] [selected] [disabled] [ref=e5]: value`, nested
    by indentation; links add `- /url: …`, text shows as `- text: …`. A ref (`e5`) names the element in
    browser_click, browser_type, browser_fill_form, …; it stays the same in later snapshots while the
    element lives, and is never reused for another element, so a ref from a page that changed is
    `ref_not_found` (take a new snapshot). Frames are not entered. Returns `{"url", "title",
    "snapshot", "refs" (how many refs it shows), "truncated"}`; an open dialog is `dialog_pending`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        refuse_if_dialog(state)
        try:
            return await take_snapshot(state, max_chars=params.max_chars, timeout_ms=params.timeout_ms)
        except (PlaywrightError, TimeoutError) as exc:
            raise action_failure("snapshot", exc) from None


class ClickParams(Target):
    button: Literal["left", "right", "middle"] = "left"
    double_click: bool = False
    modifiers: list[Modifier] = Field(default_factory=list, max_length=5, description="keys held down")
    timeout_ms: int = action_timeout()


async def browser_click(ctx: CommandContext, params: ClickParams) -> dict[str, Any]:
    """Click an element (by `ref` from browser_snapshot, or `selector`) on this session's current tab.

    `button` left/right/middle, `double_click`, `modifiers` (Alt, Control, ControlOrMeta, Meta, Shift).
    Returns the page afterwards: `{"clicked", "url", "title", "snapshot", …}`; when the click opens an
    alert/confirm/prompt, `snapshot` is null and `dialog` says what it asks (answer it with
    browser_handle_dialog). Errors: `ref_not_found` (take a new snapshot), `element_not_found`,
    `invalid_selector`, `element_not_interactable` (hidden, disabled, covered), `timeout`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params)

        async def click() -> None:
            options: dict[str, Any] = {"button": params.button, "timeout": params.timeout_ms}
            if params.modifiers:
                options["modifiers"] = params.modifiers
            if params.double_click:
                await element.dblclick(**options)
            else:
                await element.click(**options)

        after = await perform(state, click, what="click", target=params, timeout_ms=params.timeout_ms)
        return {"clicked": params.key(), **after}


class TypeParams(Target):
    text: str = Field(max_length=100_000, description="the text to type")
    submit: bool = Field(default=False, description="press Enter afterwards")
    slowly: bool = Field(default=False, description="one key at a time (fires key events), not a fill")
    timeout_ms: int = action_timeout(15_000)


async def browser_type(ctx: CommandContext, params: TypeParams) -> dict[str, Any]:
    """Type text into an editable element (by `ref` or `selector`), replacing its value.

    `slowly` types key by key (for pages that react to each key), else the value is filled at once;
    `submit` presses Enter afterwards. Returns `{"typed", "url", "title", "snapshot", …}`. A non-editable
    element is `element_not_interactable`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params)

        async def type_text() -> None:
            if params.slowly:
                await element.fill("", timeout=params.timeout_ms)
                await element.press_sequentially(params.text, delay=20, timeout=params.timeout_ms)
            else:
                await element.fill(params.text, timeout=params.timeout_ms)
            if params.submit:
                await element.press("Enter", timeout=params.timeout_ms)

        after = await perform(state, type_text, what="type", target=params, timeout_ms=params.timeout_ms)
        return {"typed": {**params.key(), "chars": len(params.text), "submitted": params.submit}, **after}


class FormField(Target):
    value: str | bool = Field(
        description="text for a text field, true/false for a checkbox or radio, an option's value or label"
        " for a select"
    )


class FillFormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[FormField] = Field(min_length=1, max_length=100)
    timeout_ms: int = action_timeout()


_KIND_JS = """e => {
  const tag = e.localName, type = (e.getAttribute('type') || '').toLowerCase();
  if (tag === 'select') return 'select';
  if (tag === 'input' && (type === 'checkbox' || type === 'radio')) return type;
  if (tag === 'input' && type === 'file') return 'file';
  if (tag === 'input' || tag === 'textarea' || e.isContentEditable) return 'text';
  const role = e.getAttribute('role');
  return role === 'checkbox' || role === 'radio' || role === 'switch' ? 'checkbox' : 'other';
}"""


def _flag(field: FormField, index: int) -> bool:
    if isinstance(field.value, bool):
        return field.value
    text = field.value.strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise BadRequestError(
        f"fields[{index}] ({field.describe()}) is a checkbox or radio: its value is true or false,"
        f" not {field.value!r}",
        code="invalid_value",
    )


async def _fill_one(element: Locator, field: FormField, index: int, timeout_ms: int) -> str:
    kind = await element.evaluate(_KIND_JS)
    if kind in ("checkbox", "radio"):
        await element.set_checked(_flag(field, index), timeout=timeout_ms)
    elif kind == "select":
        await element.select_option(str(field.value), timeout=timeout_ms)
    elif kind == "text" and not isinstance(field.value, bool):
        await element.fill(field.value, timeout=timeout_ms)
    elif kind == "text":
        raise BadRequestError(
            f"fields[{index}] ({field.describe()}) is a text field: give its value as text",
            code="invalid_value",
        )
    else:
        raise CommandFailedError(
            f"fields[{index}] ({field.describe()}) is not a form field (use browser_file_upload for a file"
            " input, browser_click for other elements)",
            code="element_not_interactable",
        )
    return str(kind)


async def browser_fill_form(ctx: CommandContext, params: FillFormParams) -> dict[str, Any]:
    """Fill several form fields at once: text inputs and textareas, checkboxes, radios and selects.

    Each field is `{ref | selector, value}`; the kind is read from the element (a checkbox or radio takes
    true/false, a select an option's value or label). Fields are filled in order and it stops at the
    first failure, whose error says which (`fields[i]`). Returns `{"filled": [{ref|selector, kind}],
    "url", "title", "snapshot", …}`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        refuse_if_dialog(state)
        filled: list[dict[str, str]] = []
        elements = [await locate(state, field) for field in params.fields]

        async def fill() -> None:
            for index, (field, element) in enumerate(zip(params.fields, elements, strict=True)):
                try:
                    kind = await _fill_one(element, field, index, params.timeout_ms)
                except (PlaywrightError, TimeoutError) as exc:
                    raise action_failure(f"fill fields[{index}]", exc, field) from None
                filled.append({**field.key(), "kind": kind})

        after = await perform(state, fill, what="fill form", timeout_ms=params.timeout_ms)
        return {"filled": filled, **after}


class PressKeyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(
        min_length=1,
        max_length=100,
        description="a key name (`Enter`, `ArrowDown`, `a`) or chord (`Control+a`), as Playwright names keys",
    )
    target: Target | None = Field(
        default=None, description="focus this element first (else: the focused one)"
    )
    timeout_ms: int = action_timeout()


async def browser_press_key(ctx: CommandContext, params: PressKeyParams) -> dict[str, Any]:
    """Press a key (or chord such as `Control+a`) on the focused element, or on `target` after focusing it.

    Returns `{"pressed", "url", "title", "snapshot", …}`; an unknown key name is `invalid_key`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params.target) if params.target is not None else None

        async def press() -> None:
            if element is not None:
                await element.press(params.key, timeout=params.timeout_ms)
            else:
                await state.page.keyboard.press(params.key)

        after = await perform(
            state, press, what="press key", target=params.target, timeout_ms=params.timeout_ms
        )
        return {"pressed": params.key, **after}


class SelectOptionParams(Target):
    values: list[str] = Field(min_length=1, max_length=100, description="options' values or labels")
    timeout_ms: int = action_timeout()


async def browser_select_option(ctx: CommandContext, params: SelectOptionParams) -> dict[str, Any]:
    """Select option(s) of a `<select>` by value or label (several for a multiple select).

    Returns `{"selected" (the values now selected), "url", "title", "snapshot", …}`; a missing option is
    `option_not_found`, an element that is not a select `element_not_interactable`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params)
        selected: list[str] = []

        async def select() -> None:
            kind = await element.evaluate(_KIND_JS)
            if kind != "select":
                raise CommandFailedError(
                    f"select option: {params.describe()} is not a <select>; use browser_click for custom"
                    " drop-downs",
                    code="element_not_interactable",
                )
            labels = await element.evaluate("e => Array.from(e.options).flatMap(o => [o.value, o.label])")
            missing = [v for v in params.values if v not in labels]
            if missing:
                raise NotFoundError(
                    f"select option: {params.describe()} has no option {missing[0]!r}; its options are"
                    f" {sorted(set(labels))[:50]}",
                    code="option_not_found",
                )
            selected.extend(await element.select_option(params.values, timeout=params.timeout_ms))

        after = await perform(
            state, select, what="select option", target=params, timeout_ms=params.timeout_ms
        )
        return {"selected": selected, **after}


class HoverParams(Target):
    timeout_ms: int = action_timeout()


async def browser_hover(ctx: CommandContext, params: HoverParams) -> dict[str, Any]:
    """Move the mouse over an element (by `ref` or `selector`); returns `{"hovered", "snapshot", …}`."""
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params)

        async def hover() -> None:
            await element.hover(timeout=params.timeout_ms)

        after = await perform(state, hover, what="hover", target=params, timeout_ms=params.timeout_ms)
        return {"hovered": params.key(), **after}


class DragParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: Target = Field(description="the element to drag: {ref} or {selector}")
    end: Target = Field(description="the element to drop it on: {ref} or {selector}")
    timeout_ms: int = action_timeout()


async def browser_drag(ctx: CommandContext, params: DragParams) -> dict[str, Any]:
    """Drag one element onto another (mouse down, move, up; HTML drag-and-drop events fire too).

    Returns `{"dragged": {"start", "end"}, "url", "title", "snapshot", …}`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        start = await locate(state, params.start)
        end = await locate(state, params.end)

        async def drag() -> None:
            await start.drag_to(end, timeout=params.timeout_ms)

        after = await perform(state, drag, what="drag", target=params.start, timeout_ms=params.timeout_ms)
        return {"dragged": {"start": params.start.key(), "end": params.end.key()}, **after}


class WaitForParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, min_length=1, max_length=1000, description="wait until it shows")
    text_gone: str | None = Field(default=None, min_length=1, max_length=1000, description="until it is gone")
    time: float | None = Field(default=None, ge=0, le=60, description="seconds to wait first")
    timeout_ms: int = action_timeout(10_000)

    @model_validator(mode="after")
    def _something(self) -> WaitForParams:
        if self.text is None and self.text_gone is None and self.time is None:
            raise ValueError("give text, text_gone or time")
        return self


async def browser_wait_for(ctx: CommandContext, params: WaitForParams) -> dict[str, Any]:
    """Wait for `time` seconds, then until `text` is visible and/or `text_gone` is not.

    Text waits give up after timeout_ms (at most 60 s) with `timeout`. Returns `{"waited", "url",
    "title", "snapshot", …}`.
    """
    state = await session_browser(ctx)
    async with state.lock:
        refuse_if_dialog(state)
        page = state.page
        navigations = state.navigations
        if params.time:
            await asyncio.sleep(params.time)
        for text, wanted in ((params.text, "visible"), (params.text_gone, "hidden")):
            if text is None:
                continue
            try:
                await page.get_by_text(text).first.wait_for(state=wanted, timeout=params.timeout_ms)  # type: ignore[arg-type]
            except (PlaywrightError, TimeoutError) as exc:
                failure = action_failure("wait", exc)
                if failure.code == "timeout":
                    shown = "appear" if wanted == "visible" else "go away"
                    failure = CommandFailedError(
                        f"text {text!r} did not {shown} within {params.timeout_ms} ms", code="timeout"
                    )
                raise failure from None
        waited = {"text": params.text, "text_gone": params.text_gone, "time": params.time}
        return {"waited": waited, **await settle(state, navigations, params.timeout_ms)}


class HistoryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_ms: int = action_timeout(15_000)


async def _history(ctx: CommandContext, params: HistoryParams, forward: bool) -> dict[str, Any]:
    state = await session_browser(ctx)
    async with state.lock:
        refuse_if_dialog(state)
        page = state.page
        navigations = state.navigations
        try:
            go = page.go_forward if forward else page.go_back
            response = await go(timeout=params.timeout_ms)
        except (PlaywrightError, TimeoutError) as exc:
            raise action_failure("forward" if forward else "back", exc) from None
        # None: no entry that way, or a same-document move (a #hash); the URL says which.
        return {"navigated": response is not None, **await settle(state, navigations, params.timeout_ms)}


async def browser_back(ctx: CommandContext, params: HistoryParams) -> dict[str, Any]:
    """Go back in this tab's history; returns `{"navigated", "url", "title", "snapshot", …}`."""
    return await _history(ctx, params, forward=False)


async def browser_forward(ctx: CommandContext, params: HistoryParams) -> dict[str, Any]:
    """Go forward in this tab's history; returns `{"navigated", "url", "title", "snapshot", …}`."""
    return await _history(ctx, params, forward=True)


class FileUploadParams(Target):
    paths: list[str] = Field(
        max_length=20, description="files relative to the session's artifacts; an empty list clears the input"
    )
    timeout_ms: int = action_timeout(10_000)


def _upload_files(root: Path, paths: list[str]) -> list[Path]:
    files = []
    for relative in paths:
        path = resolve_inside(root, relative)  # path_escape for absolute paths, '..' and symlinks out
        if not path.is_file():
            raise NotFoundError(
                f"no file {relative!r} in the session's artifacts (write it there first, e.g. with"
                " file_write)",
                code="file_not_found",
            )
        files.append(path)
    return files


async def browser_file_upload(ctx: CommandContext, params: FileUploadParams) -> dict[str, Any]:
    """Put files from this session's artifacts into a file input (or the chooser an element opens).

    `paths` are relative to the session's artifacts; absolute paths, `..` and symlinks leading out are
    `path_escape`, a missing file `file_not_found`. Returns `{"uploaded", "url", "title", "snapshot", …}`.
    """
    files = _upload_files(ctx.session.artifacts_dir, params.paths)
    state = await session_browser(ctx)
    async with state.lock:
        element = await locate(state, params)

        async def upload() -> None:
            if await element.evaluate(_KIND_JS) == "file":
                await element.set_input_files(files, timeout=params.timeout_ms)
                return
            async with state.page.expect_file_chooser(timeout=params.timeout_ms) as chooser:
                await element.click(timeout=params.timeout_ms)
            await (await chooser.value).set_files(files, timeout=params.timeout_ms)

        after = await perform(state, upload, what="file upload", target=params, timeout_ms=params.timeout_ms)
        return {"uploaded": [p.name for p in files], **after}
