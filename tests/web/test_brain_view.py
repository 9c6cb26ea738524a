"""The brain view (#/brain/<persona>) in real headless Chromium: search with scores and ranks, filters, browse
and paging, superseded facts, skills, goals, emotions, the evolution timeline, the remember form, and the
view at phone width."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

from .shots import save_shot
from .test_page import CHROMIUM, App, _unique

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]

# The daemon's first recall loads the embedding model (seconds on a loaded CPU).
LOAD_MS = 60_000
SCORE = re.compile(r"^score \d+\.\d{3}$")
DASH = "\u2013"  # the page writes ranges and missing ranks with an en dash


def _new_app(browser: Browser, daemon: RunningDaemon, width: int = 1400, height: int = 900) -> App:
    return App(browser.new_context(viewport={"width": width, "height": height}).new_page(), daemon)


def _call(daemon: RunningDaemon, command: str, **params: Any) -> dict[str, Any]:
    with daemon.http() as client:
        response = client.post(f"/api/commands/{command}", json=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"], body
    return body["result"]


def _remember(daemon: RunningDaemon, persona: str, **memory: Any) -> dict[str, Any]:
    return _call(daemon, "remember", persona=persona, memory=memory)


@pytest.fixture(scope="module")
def brain_persona(shared_daemon: RunningDaemon) -> str:
    """A persona whose brain holds memories of several types, a superseded fact, goals, a skill, emotions and
    evolution steps."""
    persona = _unique("brainy")
    PersonaStore(shared_daemon.home).create({"id": persona, "name": "Ada Brain", "model_provider": "fake"})
    _remember(shared_daemon, persona, type="preference", content="The user prefers green tea over coffee",
              importance=0.8)  # fmt: skip
    _remember(shared_daemon, persona, type="episode", content="Visited the quantum optics lab with the user")
    _remember(shared_daemon, persona, type="note", content="Old note about the 2020 harvest festival",
              timestamp="2020-06-15T10:00:00Z")  # fmt: skip
    first = _remember(
        shared_daemon, persona, type="fact", key="user.city", content="The user lives in Lisbon"
    )
    second = _remember(
        shared_daemon, persona, type="fact", key="user.city", content="The user lives in Porto"
    )
    assert second["closed"] == [first["id"]]
    goal = _call(
        shared_daemon, "goal_set", persona=persona, description="Learn quantum mechanics", priority=0.8
    )
    _call(shared_daemon, "goal_update", persona=persona, goal_id=goal["id"], progress=0.4)
    _call(shared_daemon, "goal_set", persona=persona, description="Write the field guide", priority=0.3)
    brain = shared_daemon.daemon.brain(persona)
    brain.save_achievement("academy:quantum", "sha256:" + "ab" * 32, 0.975, ["quantum_mechanics"])
    brain.use_skill("academy:quantum")
    brain.use_skill("academy:quantum")
    brain.feel("proud", 0.8, 0.6, "passed the Academy")
    brain.feel("worried", -0.4, 0.7, "a held-out attack got through")
    brain.record_evolution("academy:quantum:round1", "defense-quantum-r1", 0.55)
    brain.record_evolution("learning_experience:optics:12", None, 0.0)
    brain.record_evolution("academy:quantum:round2", "defense-quantum-r2", 0.975)
    return persona


def _open(app: App, persona: str) -> Page:
    page = app.page
    page.goto(f"{app.daemon.url}/?token={app.daemon.token}#/brain/{persona}")
    app.wait_connected()
    expect(page.locator("#brain-view")).to_be_visible()
    expect(page.locator("#brain-view-body")).to_have_attribute("data-state", "ready", timeout=LOAD_MS)
    expect(page.locator("#brain-persona")).to_have_value(persona)
    return page


def _search(page: Page, query: str) -> None:
    page.fill("#brain-query", query)
    page.press("#brain-query", "Enter")  # Enter searches
    expect(page.locator(".brain-memories")).to_have_attribute("data-state", "search", timeout=LOAD_MS)


def test_search_shows_scores_and_ranks_and_filters(
    browser: Browser, shared_daemon: RunningDaemon, brain_persona: str
) -> None:
    app = _new_app(browser, shared_daemon)
    page = _open(app, brain_persona)
    expect(page.locator("#brain-view-title")).to_have_text(f"Brain — {brain_persona}")

    _search(page, "green tea")
    results = page.locator("#brain-results li.brain-memory")
    top = results.first
    expect(top).to_contain_text("The user prefers green tea over coffee", timeout=LOAD_MS)
    expect(top).to_have_attribute("data-type", "preference")
    expect(top.locator(".brain-score-value")).to_have_text(SCORE)
    expect(top.locator('.brain-rank[data-signal="fts"]')).to_have_text("fts #1")
    expect(top.locator('.brain-rank[data-signal="vector"]')).to_have_text(re.compile(r"^vector #\d+$"))
    expect(page.locator("#brain-results-summary")).to_contain_text("for “green tea” (hybrid)")
    save_shot(page, "brain-search")

    # Keyword mode: only full-text hits, so no vector rank.
    page.select_option("#brain-mode", "fts")
    page.click("#brain-search")
    expect(page.locator("#brain-results-summary")).to_contain_text("(fts)", timeout=LOAD_MS)
    expect(top.locator('.brain-rank[data-signal="vector"]')).to_have_text(f"vector {DASH}")
    page.select_option("#brain-mode", "hybrid")

    # The type filter applies at once: a search for "user" among facts finds only the current city.
    _search(page, "where does the user live")
    page.select_option("#brain-type", "fact")
    expect(page.locator(".brain-memories")).to_have_attribute("data-state", "search", timeout=LOAD_MS)
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("The user lives in Porto")
    expect(results.first).to_have_attribute("data-type", "fact")
    # Including superseded facts brings Lisbon back, marked.
    page.check("#brain-closed")
    expect(results).to_have_count(2, timeout=LOAD_MS)
    lisbon = results.filter(has_text="Lisbon")
    expect(lisbon).to_have_class(re.compile(r"\bclosed\b"))
    expect(lisbon.locator(".badge.superseded")).to_contain_text("superseded")
    expect(results.filter(has_text="Porto").locator(".badge.superseded")).to_have_count(0)
    page.uncheck("#brain-closed")
    page.select_option("#brain-type", "")

    # Time filters: "until" the end of 2020 finds only the 2020 note.
    _search(page, "festival")
    page.fill("#brain-until", "2020-12-31")
    expect(results).to_have_count(1, timeout=LOAD_MS)
    expect(results.first).to_contain_text("harvest festival")
    page.fill("#brain-until", "")
    page.fill("#brain-since", "2021-01-01")
    expect(results.filter(has_text="harvest festival")).to_have_count(0, timeout=LOAD_MS)
    assert app.errors == []
    page.context.close()


def test_facts_records_and_the_evolution_timeline(
    browser: Browser, shared_daemon: RunningDaemon, brain_persona: str
) -> None:
    app = _new_app(browser, shared_daemon)
    page = _open(app, brain_persona)

    fact = page.locator('#brain-facts .brain-fact[data-key="user.city"]')
    versions = fact.locator(".brain-fact-versions li")
    expect(versions).to_have_count(2)
    expect(versions.nth(0)).to_have_attribute("data-state", "current")
    expect(versions.nth(0)).to_contain_text("The user lives in Porto")
    expect(versions.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
    expect(versions.nth(1)).to_have_attribute("data-state", "superseded")
    expect(versions.nth(1).locator(".badge")).to_have_text("superseded")
    expect(versions.nth(1)).to_contain_text("The user lives in Lisbon")
    expect(versions.nth(1).locator(".brain-fact-validity time")).to_have_count(2)  # valid from … to …
    expect(versions.nth(0).locator(".brain-fact-validity")).to_contain_text("— now")
    fact.scroll_into_view_if_needed()
    save_shot(page.locator("#brain-facts"), "brain-facts")

    skill = page.locator('#brain-skills tr[data-skill="academy:quantum"]')
    expect(skill.locator(".brain-effectiveness")).to_contain_text("97.5%")
    expect(skill.locator(".brain-uses")).to_have_text("2")
    expect(skill).to_contain_text("quantum_mechanics")

    goals = page.locator("#brain-goals .brain-goal")
    expect(goals).to_have_count(2)
    learn = goals.filter(has_text="Learn quantum mechanics")
    expect(learn).to_have_attribute("data-status", "active")
    expect(learn).to_contain_text("priority 0.80")
    expect(learn).to_contain_text("40%")
    assert learn.locator("progress").evaluate("p => p.value") == pytest.approx(0.4)

    emotions = page.locator("#brain-emotions .brain-emotion")
    expect(emotions).to_have_count(2)
    expect(emotions.first).to_contain_text("worried")  # newest first
    expect(emotions.first).to_contain_text("valence -0.40 · arousal 0.70")
    expect(emotions.first).to_contain_text("a held-out attack got through")
    expect(emotions.nth(1)).to_contain_text("proud")
    expect(emotions.nth(1)).to_have_attribute("data-mood", "positive")

    steps = page.locator("#brain-evolution li.brain-step")
    expect(steps).to_have_count(3)
    expect(steps.locator(".brain-step-tried")).to_have_text(
        ["academy:quantum:round2", "learning_experience:optics:12", "academy:quantum:round1"]
    )
    expect(steps.locator(".brain-step-measured")).to_have_text(
        ["success 97.5%", "success 0.0%", "success 55.0%"]
    )
    expect(steps.locator(".brain-step-kept")).to_have_text(
        ["defense-quantum-r2", "nothing (discarded)", "defense-quantum-r1"]
    )
    expect(steps.nth(1)).to_have_attribute("data-kept", "false")
    chart = page.locator("#brain-evolution-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("canvas")).to_have_count(1)
    page.locator("#brain-timeline").scroll_into_view_if_needed()
    save_shot(page.locator("#brain-timeline"), "brain-timeline")
    assert app.errors == []
    page.context.close()


def test_browse_pages_and_remember_then_find(browser: Browser, shared_daemon: RunningDaemon) -> None:
    persona = _unique("browse")
    PersonaStore(shared_daemon.home).create({"id": persona, "model_provider": "fake"})
    brain = shared_daemon.daemon.brain(persona)
    notes = [
        {"type": "note", "content": f"Numbered note {i:02d} about walrus {i}", "timestamp": 1_700_000_000 + i}
        for i in range(25)
    ]
    brain.remember_many(
        [
            *notes,
            {"type": "episode", "content": "Watched the walrus colony at dawn", "timestamp": 1_600_000_000},
        ]
    )
    app = _new_app(browser, shared_daemon)
    page = _open(app, persona)

    # No query: the newest memories, 20 a page.
    results = page.locator("#brain-results li.brain-memory")
    expect(results).to_have_count(20)
    expect(results.first).to_contain_text("Numbered note 24")
    expect(results.first.locator(".brain-score")).to_have_count(0)
    expect(page.locator("#brain-results-summary")).to_have_text(f"Newest memories: 1{DASH}20 of 26.")
    expect(page.locator("#brain-page")).to_have_text("page 1 of 2")
    expect(page.locator("#brain-prev")).to_be_disabled()
    page.click("#brain-next")
    expect(page.locator("#brain-results-summary")).to_have_text(f"Newest memories: 21{DASH}26 of 26.")
    expect(results).to_have_count(6)
    expect(results.last).to_contain_text("Watched the walrus colony at dawn")
    expect(page.locator("#brain-next")).to_be_disabled()

    # Filtered by type, back on the first page.
    expect(page.locator("#brain-type option")).to_have_text(["all types", "note (25)", "episode (1)"])
    page.select_option("#brain-type", "episode")
    expect(page.locator("#brain-results-summary")).to_have_text(f"Newest memories: 1{DASH}1 of 1.")
    expect(results).to_have_count(1)
    expect(results.first).to_have_attribute("data-type", "episode")
    expect(page.locator(".brain-pager")).to_be_hidden()
    page.select_option("#brain-type", "")

    # Remember a new memory through the form (keyboard: labelled fields), then find it by search.
    form = page.get_by_role("form", name="Remember something")
    form.get_by_label("Memory type").fill("preference")
    form.get_by_label("Content").fill("Ada likes to drink chamomile before sleeping")
    form.get_by_label("Importance").fill("0.9")
    form.get_by_label("Key").fill("ada.evening_drink")
    page.click("#brain-new-submit")
    expect(page.locator("#brain-new-status")).to_contain_text("Remembered (mem", timeout=LOAD_MS)
    expect(page.locator("#brain-results-summary")).to_have_text(f"Newest memories: 1{DASH}20 of 27.")
    expect(results.first).to_contain_text("chamomile")  # the browse list reloaded
    expect(page.locator('#brain-facts .brain-fact[data-key="ada.evening_drink"]')).to_contain_text(
        "chamomile"
    )
    _search(page, "chamomile tea at night")
    expect(results.first).to_contain_text("Ada likes to drink chamomile before sleeping", timeout=LOAD_MS)
    expect(results.first).to_contain_text(f"user:{page.locator('#display-name').input_value()}")
    # A second evening drink under the same key supersedes the first one.
    form.get_by_label("Memory type").fill("preference")
    form.get_by_label("Content").fill("Ada now drinks warm milk before sleeping")
    form.get_by_label("Key").fill("ada.evening_drink")
    page.click("#brain-new-submit")
    expect(page.locator("#brain-new-status")).to_contain_text("superseded 1 older fact", timeout=LOAD_MS)
    versions = page.locator('#brain-facts .brain-fact[data-key="ada.evening_drink"] li')
    expect(versions).to_have_count(2)
    expect(versions.first).to_have_attribute("data-state", "current")
    expect(versions.first).to_contain_text("warm milk")
    # An invalid type is refused on the page, with a message.
    form.get_by_label("Memory type").fill("Not A Type")
    form.get_by_label("Content").fill("anything")
    page.click("#brain-new-submit")
    expect(page.locator("#brain-new-error")).to_contain_text("Type")
    assert app.errors == []
    page.context.close()


def test_the_picker_and_the_plain_route(
    browser: Browser, shared_daemon: RunningDaemon, brain_persona: str
) -> None:
    other = _unique("other")
    PersonaStore(shared_daemon.home).create({"id": other, "model_provider": "fake"})
    _remember(shared_daemon, other, type="note", content="Only the other persona knows about kumquats")
    app = _new_app(browser, shared_daemon)
    page = _open(app, brain_persona)
    page.select_option("#brain-persona", other)
    page.wait_for_function(f"location.hash === '#/brain/{other}'")
    expect(page.locator("#brain-view-title")).to_have_text(f"Brain — {other}")
    expect(page.locator("#brain-results li.brain-memory")).to_have_text(
        [re.compile("kumquats")], timeout=LOAD_MS
    )
    # #/brain alone (the tab) shows a persona's brain and names it in the hash.
    page.click('#view-tabs a[data-view="chat"]')
    page.click('#view-tabs a[data-view="brain"]')
    expect(page.locator("#brain-view-body")).to_have_attribute("data-state", "ready", timeout=LOAD_MS)
    chosen = page.locator("#brain-persona").input_value()
    assert chosen and page.evaluate("location.hash") == f"#/brain/{chosen}"
    # An unknown persona says so.
    page.goto(f"{shared_daemon.url}/?token={shared_daemon.token}#/brain/nobody-here")
    app.wait_connected()
    expect(page.locator("#brain-error")).to_contain_text("persona_not_found", timeout=LOAD_MS)
    assert app.errors == []
    page.context.close()


def test_the_view_fits_a_phone(browser: Browser, shared_daemon: RunningDaemon, brain_persona: str) -> None:
    app = _new_app(browser, shared_daemon, 390, 844)
    page = _open(app, brain_persona)
    _search(page, "green tea")
    expect(page.locator("#brain-results li.brain-memory").first).to_contain_text("green tea")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for card in ("#brain-facts", "#brain-skills", "#brain-goals", "#brain-emotions", "#brain-timeline"):
        box = page.locator(card).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, card
    save_shot(page, "brain-mobile")
    assert app.errors == []
    page.context.close()
