"""The Personas view (#/personas, #/personas/<id>) in real headless Chromium, driven end to end against a
daemon whose personas use the fake model provider: create from the form, start, edit, an adapter stack,
chat, recent commands and logs, per-field validation, delete, keyboard only, and a phone-width pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import RunningDaemon
from tests.web.shots import save_shot
from tests.web.test_page import (
    CHROMIUM,
    REPLY_MS,
    App,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]

START_MS = 60_000  # a persona process starts a Python interpreter and joins the bus


def _command(daemon: RunningDaemon, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    with daemon.http() as client:
        reply = client.post(f"/api/commands/{name}", json=params or {}).json()
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def _open_personas(app: App) -> Page:
    page = app.open()
    page.click('#view-tabs a[data-view="personas"]')
    expect(page.locator("#personas-view")).to_be_visible()
    expect(page.locator("#personas-new")).to_be_enabled()
    return page


def _detail(page: Page, persona: str) -> Any:
    return page.locator(f'.persona-detail[data-persona="{persona}"]')


def test_create_start_edit_stack_chat_and_logs(persona_app: App, tmp_path: Path) -> None:
    from tests.mesh.helpers import register_chain

    app, daemon = persona_app, persona_app.daemon
    register_chain(daemon.home, tmp_path, ["base-x", "base-x.child"])
    page = _open_personas(app)
    expect(page.locator("#personas-view-body")).to_contain_text("No personas yet")

    # Create from the form (the fake provider is typed into the provider field: any registered one goes).
    page.click("#personas-new")
    page.fill("#pf-id", "ada")
    page.fill("#pf-name", "Ada Lovelace")
    page.fill("#pf-model_provider", "fake")
    page.fill("#pf-model", "fake-1")
    page.fill("#pf-system_prompt", "You are Ada.")
    page.fill("#pf-secret", "canary-ada-42")
    save_shot(page, "personas-form")
    page.click("#persona-form button[type=submit]")
    detail = _detail(page, "ada")
    expect(detail).to_have_attribute("data-state", "stopped")
    assert page.evaluate("location.hash") == "#/personas/ada"
    created = _command(daemon, "persona_show", {"persona": "ada"})
    assert created["model_provider"] == "fake" and created["model_config"] == {"model": "fake-1"}
    assert created["secret"] == "***" and created["system_prompt"] == "You are Ada."
    expect(detail.locator(".persona-config")).to_contain_text("set (hidden)")
    expect(detail).not_to_contain_text("canary-ada-42")

    # Start it: running, with a pid.
    detail.locator(".persona-start").click()
    expect(detail).to_have_attribute("data-state", "running", timeout=START_MS)
    pid = _command(daemon, "persona_show", {"persona": "ada"})["process"]["pid"]
    assert isinstance(pid, int)
    expect(detail.locator(".persona-process")).to_contain_text(str(pid))

    # Edit: a new system prompt and a two-deep adapter stack, base first; the secret field left blank.
    detail.get_by_role("link", name="Edit").click()
    expect(page.locator("#persona-form")).to_be_visible()
    expect(page.locator("#pf-secret")).to_have_value("")
    page.fill("#pf-system_prompt", "You are Ada, terse.")
    for adapter in ("base-x", "base-x.child"):
        page.select_option("#pf-lora_adapters", adapter)
        page.click(".persona-stack-add")
    expect(page.locator(".persona-stack-edit li")).to_have_count(2)
    page.click("#persona-form button[type=submit]")
    detail = _detail(page, "ada")
    expect(detail.locator(".persona-stack li")).to_have_text(["base-x", "base-x.child"])
    notice = page.locator(".persona-notice")
    expect(notice).to_have_text("Saved: lora_adapters, system_prompt.")  # both apply live: no restart
    saved = _command(daemon, "persona_show", {"persona": "ada"})
    assert saved["system_prompt"] == "You are Ada, terse."
    assert saved["lora_adapters"] == ["base-x", "base-x.child"]
    assert saved["stack"]["resolved"] == ["base-x", "base-x.child"]
    stored = daemon.daemon.persona_store.load("ada")
    assert stored.secret == "canary-ada-42" and stored.model_config_ == {"model": "fake-1"}  # not clobbered
    expect(detail.locator(".persona-stack-card")).not_to_contain_text("null")

    # Restart: a new process.
    detail.locator(".persona-restart").click()
    expect(detail.locator(".persona-state")).to_have_text("restarting")
    expect(detail.locator(".persona-state")).to_have_text("running", timeout=START_MS)
    restarted = _command(daemon, "persona_show", {"persona": "ada"})["process"]["pid"]
    assert isinstance(restarted, int) and restarted != pid
    expect(detail.locator(".persona-process")).to_contain_text(str(restarted))

    # Chat from it: the running process answers with the new stack (it re-read its config).
    detail.locator(".persona-chat").click()
    expect(page.locator('main[data-view="chat"]')).to_be_visible()
    app.send("adapters?")
    reply = page.locator("#chat-log li.message.from-persona .message-text")
    expect(reply).to_have_text("adapters=base-x,base-x.child", timeout=REPLY_MS)

    # The exchange is in its brain: found from the Brain view by full-text search (the persona writes it
    # after answering, so the search is repeated until it is there).
    page.click('#view-tabs a[data-view="brain"]')
    expect(page.locator("#brain-persona")).to_have_value("ada", timeout=START_MS)
    page.select_option("#brain-persona", "ada")
    page.select_option("#brain-mode", "fts")
    page.fill("#brain-query", "adapters")
    found = page.locator("#brain-results li.brain-memory", has_text="adapters=base-x,base-x.child")
    for _ in range(20):
        page.press("#brain-query", "Enter")
        expect(page.locator(".brain-memories")).to_have_attribute("data-state", "search", timeout=START_MS)
        if found.count():
            break
        page.wait_for_timeout(500)
    expect(found).to_have_count(1)
    expect(page.locator("#brain-results li.brain-memory", has_text="adapters?")).to_have_count(1)

    # Back on its page: the commands it ran and its log tail.
    page.goto(f"{daemon.url}/?token={daemon.token}#/personas/ada")
    app.wait_connected()
    detail = _detail(page, "ada")
    commands = detail.locator(".persona-commands-table tbody tr")
    expect(detail.locator('.persona-commands-table tr[data-command="chat"]').first).to_be_visible()
    expect(commands.first).to_contain_text("ok")
    expect(detail.locator(".persona-log")).to_be_visible()
    logs = _command(daemon, "persona_logs", {"persona": "ada"})
    assert any(r["command"] == "chat" for r in logs["commands"])
    if logs["process_log"]:
        expect(detail.locator(".persona-log")).to_contain_text(logs["process_log"][-1][:40])
    save_shot(page, "persona-detail", full_page=True)

    # The list shows it running, with its stack.
    page.click('#view-tabs a[data-view="personas"]')
    row = page.locator('.personas-table tr[data-persona="ada"]')
    expect(row).to_have_attribute("data-state", "running")
    expect(row).to_contain_text("Ada Lovelace")
    expect(row).to_contain_text("base-x → base-x.child")
    expect(row).to_contain_text("fake-1")
    save_shot(page, "personas-list")

    # Stop from the list.
    row.locator(".persona-stop").click()
    expect(row).to_have_attribute("data-state", "stopped", timeout=START_MS)
    assert app.errors == []


def test_validation_errors_are_shown_per_field(persona_app: App) -> None:
    app, daemon = persona_app, persona_app.daemon
    page = _open_personas(app)
    page.click("#personas-new")
    page.fill("#pf-id", "Bad Id!")
    page.fill("#pf-model_provider", "fake")
    page.fill("#pf-temperature", "5")
    page.fill("#pf-secret", "abc")  # under 4 characters
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#pf-id-error")).to_contain_text("must match")
    expect(page.locator("#pf-temperature-error")).to_have_text("must be ≤ 2")
    expect(page.locator("#pf-secret-error")).to_contain_text("at least 4")
    expect(page.locator("#pf-temperature")).to_have_attribute("aria-invalid", "true")
    assert _command(daemon, "persona_list")["personas"] == []  # nothing was sent

    # Fixed, but a provider the daemon does not have: its error lands on that field.
    page.fill("#pf-id", "val")
    page.fill("#pf-temperature", "0.5")
    page.fill("#pf-secret", "")
    page.fill("#pf-model_provider", "no-such-provider")
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#pf-model_provider-error")).to_contain_text("unknown_provider")
    expect(page.locator("#pf-temperature-error")).to_be_hidden()
    page.fill("#pf-model_provider", "fake")
    page.click("#persona-form button[type=submit]")
    expect(_detail(page, "val")).to_be_visible()

    # Editing: the same checks, and the daemon's per-field details for what only it knows.
    _detail(page, "val").get_by_role("link", name="Edit").click()
    page.fill("#pf-max_tokens", "0")
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#pf-max_tokens-error")).to_have_text("must be ≥ 1")
    page.fill("#pf-max_tokens", "300")
    page.fill("#pf-rooms", "general, Not A Room")
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#pf-rooms-error")).to_contain_text("Not A Room")
    page.fill("#pf-rooms", "general")
    page.fill("#pf-model_provider", "nope")
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#pf-model_provider-error")).to_contain_text("unknown_provider")
    page.fill("#pf-model_provider", "fake")
    page.click("#persona-form button[type=submit]")
    expect(_detail(page, "val").locator(".persona-config")).to_contain_text("300")
    assert _command(daemon, "persona_show", {"persona": "val"})["max_tokens"] == 300
    assert app.errors == []


def test_keyboard_only_create_and_delete_with_confirm(persona_app: App) -> None:
    app, daemon = persona_app, persona_app.daemon
    page = _open_personas(app)
    page.focus("#personas-new")
    page.keyboard.press("Enter")
    expect(page.locator("#pf-id")).to_be_focused()  # the form opens with the focus in its first field
    page.keyboard.type("kb")
    page.keyboard.press("Tab")
    expect(page.locator("#pf-name")).to_be_focused()
    page.keyboard.type("Key Board")
    page.keyboard.press("Tab")
    expect(page.locator("#pf-model_provider")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("fake")
    page.keyboard.press("Enter")  # submits the form
    detail = _detail(page, "kb")
    expect(detail).to_be_visible()
    assert _command(daemon, "persona_show", {"persona": "kb"})["name"] == "Key Board"

    # Tab reaches the actions, and the focus is visible there.
    start = detail.locator(".persona-start")
    start.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    expect(start).to_be_focused()
    outline = start.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline != "none"

    # Delete asks first; Escape and Cancel keep it.
    detail.locator(".persona-delete").focus()
    page.keyboard.press("Enter")
    dialog = page.locator(".persona-delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".persona-delete-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert _command(daemon, "persona_list")["personas"][0]["id"] == "kb"
    detail.locator(".persona-delete").click()
    page.locator(".persona-delete-dialog .persona-delete-confirm").click()
    expect(page.locator("#personas-view-body")).to_contain_text("No personas yet")
    assert page.evaluate("location.hash") == "#/personas"
    assert _command(daemon, "persona_list")["personas"] == []
    assert app.errors == []


@pytest.fixture
def phone_app(browser: Browser, persona_daemon: RunningDaemon) -> Iterator[App]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    yield App(context.new_page(), persona_daemon)
    context.close()


def _no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )


def test_phone_width(phone_app: App) -> None:
    app, daemon = phone_app, phone_app.daemon
    _command(
        daemon,
        "persona_create",
        {
            "id": "phone-persona-with-a-long-id",
            "name": "A persona with a rather long name",
            "model_provider": "fake",
            "model_config": {"model": "a-model-name-that-is-long-too"},
            "system_prompt": "x" * 300,
        },
    )
    page = _open_personas(app)
    expect(page.locator('.personas-table tr[data-persona="phone-persona-with-a-long-id"]')).to_be_visible()
    _no_sideways_scroll(page)
    save_shot(page, "personas-mobile", full_page=True)
    page.click("#personas-new")
    expect(page.locator("#persona-form")).to_be_visible()
    _no_sideways_scroll(page)
    page.locator(".persona-open").click()
    detail = _detail(page, "phone-persona-with-a-long-id")
    expect(detail.locator(".persona-process")).to_be_visible()
    _no_sideways_scroll(page)
    assert app.errors == []


def test_the_sidebar_card_links_to_the_persona_page(persona_app: App) -> None:
    app, daemon = persona_app, persona_app.daemon
    _command(daemon, "persona_create", {"id": "linked", "name": "Linked", "model_provider": "fake"})
    page = app.open()
    card = page.locator('#persona-list li.persona[data-persona="linked"]')
    card.locator(".persona-page-link").click()
    expect(_detail(page, "linked")).to_be_visible()
    assert page.evaluate("location.hash") == "#/personas/linked"
    assert app.errors == []
