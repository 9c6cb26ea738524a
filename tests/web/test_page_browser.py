"""A human runs the browser form flow from the page's command form (real Chromium driving the page, which
drives the session's own Chromium page through the bus): navigate, snapshot, type into two fields by ref,
click submit by ref, and read the result."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.site import ref, serve
from tests.conftest import RunningDaemon
from tests.web.test_page import App

pytestmark = pytest.mark.browser


@pytest.fixture
def site() -> Iterator[str]:
    with serve() as url:
        yield url


def test_the_form_flow_from_the_command_form(app: App, shared_daemon: RunningDaemon, site: str) -> None:
    page = app.open()
    app.pick_command("browser_navigate")
    page.fill("#param-url", f"{site}/form")
    assert app.run_command()["title"] == "form"

    app.pick_command("browser_snapshot")
    snapshot = app.run_command()["snapshot"]
    for name, text in (("First name", "Ada"), ("Email", "ada.example.org")):
        app.pick_command("browser_type")
        page.fill("#param-ref", ref(snapshot, "textbox", name))
        page.fill("#param-text", text)
        typed = app.run_command()
        expect(page.locator("#command-result")).to_have_attribute("data-state", "ok")
        assert text in typed["snapshot"]
    app.pick_command("browser_click")
    page.fill("#param-ref", ref(snapshot, "button", "Submit"))
    clicked = app.run_command()
    assert clicked["title"] == "Result: Ada|ada.example.org|r|false"
    assert "Result: Ada|ada.example.org|r|false" in clicked["snapshot"]

    # A stale ref is shown as the bus's error, with its code.
    app.pick_command("browser_click")
    page.fill("#param-ref", "e999999")
    app.run_command()
    expect(page.locator("#command-result")).to_have_attribute("data-state", "error")
    expect(page.locator("#command-error-code")).to_have_text("ref_not_found")
    assert app.errors == []
