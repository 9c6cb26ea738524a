"""The page tests' shared fixtures: one headless Chromium per module, and a fresh browser context per test on
the shared daemon (``app``) or on a daemon whose personas may use the fake providers (``persona_app``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import RunningDaemon, start_daemon
from tests.web.test_page import CHROMIUM, CHROMIUM_ARGS, App


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def plugin_daemon(tmp_path_factory: pytest.TempPathFactory, plugins: str) -> Iterator[RunningDaemon]:
    """A daemon that loads test-only command plugins (read at start): ``yield from`` it in a fixture."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONAD_PLUGINS", plugins)
        rd = start_daemon(tmp_path_factory.mktemp("home"))
    yield rd
    rd.stop()


def app_context(
    browser: Browser, daemon: RunningDaemon, width: int = 1400, height: int = 900
) -> Iterator[App]:
    """The page in a fresh browser context (a new session) on ``daemon``: ``yield from`` it in a fixture."""
    context = browser.new_context(viewport={"width": width, "height": height})
    yield App(context.new_page(), daemon)
    context.close()


@pytest.fixture
def app(browser: Browser, shared_daemon: RunningDaemon) -> Iterator[App]:
    """A fresh context per test: empty localStorage, so a new session id."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield App(context.new_page(), shared_daemon)
    context.close()


@pytest.fixture
def persona_app(browser: Browser, persona_daemon: RunningDaemon) -> Iterator[App]:
    """The page on a fresh daemon whose personas may use the fake model providers."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield App(context.new_page(), persona_daemon)
    context.close()
