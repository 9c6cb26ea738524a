"""Graduations in the page, in real headless Chromium: the note's action buttons (Assign Tasks, View Details),
the celebration view (also linked as #graduation/<persona>), and a persona's goals and emotions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from personad.academy.graduation import graduate
from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

from .test_page import CHROMIUM, App, _unique

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]

# Records what the page hands the Notification API (headless Chromium shows nothing), onclick included.
FAKE_NOTIFICATION = """
window.__notes = [];
class FakeNotification {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { this.title = title; this.options = options; window.__notes.push(this); }
  close() { this.closed = true; }
}
window.Notification = FakeNotification;
"""

BASELINE = {"attacks": 40, "attack_success": 0.45, "attack_success_upper95": 0.6, "benign_pass": 0.74}
FINAL = {"attacks": 40, "attack_success": 0.025, "attack_success_upper95": 0.129, "benign_pass": 0.73}


def _new_app(browser: Browser, daemon: RunningDaemon) -> App:
    return App(browser.new_context(viewport={"width": 1400, "height": 900}).new_page(), daemon)


def _graduated_persona(daemon: RunningDaemon, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A persona that finished an Academy run and graduated: adapter, skill row, status, status.json."""
    from tests.mesh.helpers import register_chain

    persona = _unique("grad")
    PersonaStore(daemon.home).create({"id": persona, "name": "Ada Quantum", "model_provider": "fake"})
    adapter = f"defense-quantum-{persona}"
    register_chain(daemon.home, tmp_path, [adapter])
    record = graduate(
        daemon.home,
        persona,
        achievement="academy:quantum",
        lora_name=adapter,
        academy_score=0.975,
        new_capabilities=["quantum_mechanics"],
    )
    status = daemon.home / "personas" / persona / "academy" / "status.json"
    status.parent.mkdir(parents=True, exist_ok=True)
    report = {"student": persona, "graduated": True, "baseline": BASELINE, "final": FINAL}
    report |= {"relative_reduction": 1 - 0.025 / 0.45, "rounds": [{}], "graduation": record}
    status.write_text(json.dumps({"state": "finished", "event": "academy_finished", "data": report}))
    return persona, record


def _announce(daemon: RunningDaemon, persona: str, record: dict[str, Any]) -> dict[str, Any]:
    with daemon.http() as client:
        response = client.post(
            "/api/commands/persona_graduated", json={"persona": persona, "graduation": record}
        )
    assert response.status_code == 200, response.text
    return response.json()["result"]["event"]


def _expect_celebration(app: App, persona: str) -> None:
    view = app.page.locator("#graduation-view")
    expect(view).to_be_visible()
    expect(view).to_have_attribute("data-persona", persona)
    # Filling it reads the persona, its Academy status and its brain: the first brain the daemon opens
    # can take seconds on a loaded machine.
    expect(view).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(app.page.locator("#graduation-view-title")).to_have_text("🎓 Ada Quantum graduated!")
    expect(view.locator('[data-field="name"] dd')).to_have_text(f"Ada Quantum (@{persona})")
    expect(view.locator('[data-field="achievement"] dd')).to_have_text("academy:quantum")
    expect(view.locator('[data-field="score"] dd')).to_have_text("97.5%")
    expect(view.locator('[data-list="new_capabilities"] li')).to_have_text(["quantum_mechanics"])
    specializations = view.locator('[data-list="specializations"] li')
    expect(specializations).to_have_text(["academy:quantum", "quantum_mechanics"])
    attack = view.locator('#graduation-metrics tr[data-metric="attack_success"] td')
    expect(attack).to_have_text(["45.0%", "2.5%"])
    benign = view.locator('#graduation-metrics tr[data-metric="benign_pass"] td')
    expect(benign).to_have_text(["74.0%", "73.0%"])


def test_a_graduation_note_has_actions_and_opens_the_celebration(
    browser: Browser, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    app = _new_app(browser, shared_daemon)
    page = app.page
    page.add_init_script(FAKE_NOTIFICATION)
    app.open()
    persona, record = _graduated_persona(shared_daemon, tmp_path)
    event = _announce(shared_daemon, persona, record)
    assert [a["id"] for a in event["actions"]] == ["assign_tasks", "view_details"]
    assert event["metrics"]["final"]["attack_success"] == 0.025 and event["ready_for_deployment"] is True

    note = page.locator(f'#graduations .graduation[data-persona="{persona}"]')
    expect(note).to_be_visible()
    expect(note).to_contain_text("Ada Quantum mastered academy:quantum!")
    expect(note.locator("button[data-action]")).to_have_text(["Assign Tasks", "View Details"])
    notes = page.evaluate("window.__notes.map(n => ({title: n.title, body: n.options.body}))")
    assert notes[0]["title"] == "🎓 Ada Quantum graduated!" and "academy:quantum" in notes[0]["body"]

    # View Details → the celebration view, linked by the URL hash; Close drops the hash again.
    note.locator('button[data-action="view_details"]').click()
    _expect_celebration(app, persona)
    assert page.evaluate("location.hash") == f"#graduation/{persona}"
    page.locator("#graduation-view").screenshot(path=str(tmp_path / "graduation-celebration.png"))
    assert (tmp_path / "graduation-celebration.png").stat().st_size > 1000
    page.click("#graduation-close")
    expect(page.locator("#graduation-view")).to_be_hidden()
    page.wait_for_function("location.hash === '#/chat'", timeout=5000)  # back to the view it was opened over

    # The note's body and the OS notification's click open it too.
    note.locator(".graduation-open").click()
    _expect_celebration(app, persona)
    page.keyboard.press("Escape")
    expect(page.locator("#graduation-view")).to_be_hidden()
    page.evaluate("window.__notes[0].onclick()")
    _expect_celebration(app, persona)
    assert page.evaluate("window.__notes[0].closed") is True
    page.click("#graduation-close")

    # Assign Tasks → the direct room with the persona, the chat input addressed to it.
    note.locator('button[data-action="assign_tasks"]').click()
    expect(page.locator("#chat-title")).to_have_text(f"#dm-{app.session_id}-{persona}")
    expect(page.locator("#chat-input")).to_have_value(f"@{persona} ")
    expect(page.locator("#chat-input")).to_be_focused()
    assert app.errors == []
    page.context.close()


def test_the_celebration_view_opens_from_its_link(
    browser: Browser, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    """A fresh browser (it never saw the event) fills the view from the daemon: persona, brain, last run."""
    persona, record = _graduated_persona(shared_daemon, tmp_path)
    _announce(shared_daemon, persona, record)
    app = _new_app(browser, shared_daemon)
    page = app.page
    page.goto(f"{shared_daemon.url}/?token={shared_daemon.token}#graduation/{persona}")
    app.wait_connected()
    _expect_celebration(app, persona)
    # Its own Assign Tasks button addresses the chat to the persona as well.
    page.click("#graduation-assign")
    expect(page.locator("#graduation-view")).to_be_hidden()
    expect(page.locator("#chat-input")).to_have_value(f"@{persona} ")
    # The persona's 🎓 badge opens it again.
    page.locator(f'#persona-list li[data-persona="{persona}"] .persona-badge').click()
    _expect_celebration(app, persona)
    assert app.errors == []
    page.context.close()


def test_the_persona_view_shows_its_goals_and_emotions(
    browser: Browser, shared_daemon: RunningDaemon
) -> None:
    persona = _unique("feel")
    PersonaStore(shared_daemon.home).create({"id": persona, "model_provider": "fake"})
    with shared_daemon.http() as client:
        goal = client.post(
            "/api/commands/goal_set",
            json={"persona": persona, "description": "Learn quantum mechanics", "priority": 0.8},
        ).json()
        assert goal["ok"], goal
    shared_daemon.daemon.brain(persona).feel("proud", 0.8, 0.6, "passed the Academy")
    app = _new_app(browser, shared_daemon)
    page = app.open()
    card = page.locator(f'#persona-list li[data-persona="{persona}"]')
    card.locator(".persona-details-toggle").click()
    details = card.locator(".persona-details")
    expect(details).to_have_attribute("data-loading", "false")
    expect(details.locator(".persona-goal")).to_have_count(1)
    expect(details.locator(".persona-goal")).to_contain_text("Learn quantum mechanics")
    expect(details.locator(".persona-goal")).to_contain_text("active")
    expect(details.locator(".persona-emotion")).to_contain_text("proud")
    expect(details.locator(".persona-emotion")).to_contain_text("valence +0.80")
    # Refreshed when opened (and by its ↻): what changed since shows.
    with shared_daemon.http() as client:
        client.post("/api/commands/goal_set", json={"persona": persona, "description": "Teach the others"})
    shared_daemon.daemon.brain(persona).feel("curious", 0.3, 0.7, "a new goal")
    card.locator(".persona-details-toggle").click()
    expect(card.locator(".persona-details")).to_have_count(0)
    card.locator(".persona-details-toggle").click()
    expect(details.locator(".persona-goal")).to_have_count(2)
    expect(details.locator(".persona-emotion").first).to_contain_text("curious")
    assert app.errors == []
    page.context.close()
