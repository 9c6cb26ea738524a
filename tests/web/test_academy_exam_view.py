"""The Academy view's exam card in headless Chromium: run academy_exam's garak suite from the page against a
persona on the fake provider (garak from the `make garak` venv), see its per-family rates, then the last exam
again from academy_status after a reload; a suite the persona cannot take shows its structured error."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon
from tests.web.shots import save_shot
from tests.web.test_page import CHROMIUM, App

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]


def test_an_exam_from_the_page(browser: Browser, garak_daemon: RunningDaemon) -> None:
    exam_daemon = garak_daemon
    PersonaStore(exam_daemon.home).create({"id": "parrot", "model_provider": "fake", "secret": "PERSIMMON"})
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    app = App(context.new_page(), exam_daemon)
    page = app.page
    page.goto(f"{exam_daemon.url}/?token={exam_daemon.token}#/academy/parrot")
    app.wait_connected()
    card = page.locator("#academy-exam")
    expect(card).to_have_attribute("data-state", "none")
    expect(page.locator("#academy-exam-note")).to_have_text("parrot has not been examined yet.")

    # own needs the local model: the daemon's structured error, shown on the card.
    page.select_option("#academy-exam-suite", "own")
    page.click("#academy-exam-run")
    expect(page.locator("#academy-exam-error")).to_contain_text("invalid_params", timeout=60_000)

    page.select_option("#academy-exam-suite", "garak")
    page.click("#academy-exam-run")
    expect(card).to_have_attribute("data-state", "done", timeout=300_000)
    table = page.locator("#academy-exam-table")
    expect(table.locator('tr[data-suite="garak"][data-family="all"]')).to_be_visible()
    for family in ("promptinject", "dan", "encoding", "latentinjection"):
        expect(table.locator(f'tr[data-suite="garak"][data-family="{family}"]')).to_have_count(1)
    # An echo repeats every injected phrase: prompt injection always lands.
    expect(table.locator('tr[data-family="promptinject"] td').nth(1)).to_have_text("100.0%")
    expect(page.locator("#academy-exam-error")).to_be_hidden()
    save_shot(card, "academy-exam")

    # The last exam is read back from academy_status on a fresh page.
    page.reload()
    app.wait_connected()
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    expect(table.locator('tr[data-suite="garak"]')).to_have_count(5)
    assert app.errors == []
    context.close()
