"""The browser page end to end in real headless Chromium: chat, rooms, the command form, auth, reconnect,
and personas (streamed replies, the personas panel, direct rooms) driven by the fake model provider."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect

from personad.config import DEFAULT_CHROMIUM_ARGS
from tests.conftest import RunningDaemon
from tests.web.shots import save_shot

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = list(DEFAULT_CHROMIUM_ARGS)  # the daemon's own flags
BLUE_PAGE = 'data:text/html,<body style="margin:0;background:rgb(0,128,255)"></body>'
SESSION_ID = re.compile(r"^web-[0-9a-f]{12}$")
OK_OR_ERROR = re.compile(r"^(ok|error)$")
# A persona process's first answer waits for its memory's embedding model to load (several seconds on CPU).
REPLY_MS = 45_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]


class App:
    """One browser context on the page; ``errors`` collects uncaught JS errors and console errors."""

    def __init__(self, page: Page, daemon: RunningDaemon) -> None:
        self.page = page
        self.daemon = daemon
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.set_default_timeout(20_000)

    def open(self) -> Page:
        self.page.goto(f"{self.daemon.url}/?token={self.daemon.token}")
        self.wait_connected()
        return self.page

    def wait_connected(self) -> None:
        expect(self.page.locator("#connection-state")).to_have_attribute("data-state", "open")
        expect(self.page.locator("#session-id")).to_have_text(SESSION_ID)

    @property
    def session_id(self) -> str:
        return self.page.locator("#session-id").inner_text()

    def room(self, room: str) -> Locator:
        return self.page.locator(f'#room-list li[data-room="{room}"]')

    def join(self, room: str) -> None:
        """Join ``room`` from the rooms panel if needed, then select it."""
        item = self.room(room)
        if item.get_attribute("data-joined") != "true":
            item.locator(".room-join").click()
        expect(item).to_have_attribute("data-joined", "true")
        item.locator(".room-select").click()
        expect(self.page.locator("#chat-title")).to_have_text(f"#{room}")
        expect(self.page.locator("#chat-input")).to_be_enabled()

    def messages(self, text: str | None = None) -> Locator:
        return self.page.locator("#chat-log li.message", has_text=text)

    def send(self, text: str) -> None:
        self.page.fill("#chat-input", text)
        self.page.click("#chat-send")

    def pick_command(self, name: str) -> None:
        self.page.select_option("#command-select", name)
        expect(self.page.locator("#command-run")).to_be_enabled()

    def run_command(self, timeout: float = 60_000) -> dict[str, Any]:
        """Run the selected command and return the pretty-printed JSON the page shows."""
        self.page.click("#command-run")
        result = self.page.locator("#command-result")
        expect(result).to_have_attribute("data-state", OK_OR_ERROR, timeout=timeout)
        return json.loads(self.page.locator("#command-output").inner_text())


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _create_persona(daemon: RunningDaemon, **fields: Any) -> dict[str, Any]:
    with daemon.http() as client:
        response = client.post("/api/commands/persona_create", json=fields)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def _long_text(label: str) -> str:
    """Enough words that the fake provider (one word per 50 ms) streams for over a second."""
    words = " ".join(f"word{i}" for i in range(30))
    return f"{_unique(label)} {words}"


def _echo_persona(daemon: RunningDaemon) -> dict[str, Any]:
    return _create_persona(
        daemon,
        id="echo",
        model_provider="fake",
        model_config={"delay": 0.05},
        respond_in=["general"],
        start=True,
    )


def test_chat_between_the_page_and_a_websocket_client(app: App, shared_daemon: RunningDaemon) -> None:
    page = app.open()
    expect(page.locator("#session-kind")).to_have_text("browser")
    expect(page.locator("#session-capabilities")).not_to_have_text("—")
    sid = app.session_id
    app.join("general")

    with shared_daemon.ws(name="robot") as ws:
        assert ws.call("room_join", {"room": "general"})["ok"] is True

        # The page posts: the page shows it once (result and event deduped), the WS client gets the event.
        text = _unique("hello from the page")
        app.send(text)
        expect(app.messages(text)).to_have_count(1)
        expect(page.locator("#chat-input")).to_have_value("")
        event = ws.wait_event("chat_message")
        message = event["data"]
        assert message["text"] == text and message["room"] == "general"
        assert message["sender"]["session_id"] == sid
        assert message["sender"]["kind"] == "browser" and message["sender"]["name"] == "human"

        # The WS client posts untrusted markup: it appears live, as text, never as HTML.
        markup = f'<img src=x onerror="document.title=1"> {_unique("from robot")}'
        assert ws.call("chat", {"room": "general", "text": markup})["ok"] is True
        robot = app.messages(markup)
        expect(robot).to_have_count(1)
        expect(robot.locator(".message-text")).to_have_text(markup)
        expect(robot.locator(".sender")).to_have_text("robot")
        expect(page.locator("#chat-log img")).to_have_count(0)

        # By now the page's own chat_message event has arrived too: still exactly one entry for it.
        expect(page.locator(f'#chat-log li[data-id="{message["id"]}"]')).to_have_count(1)
        expect(app.messages(text)).to_have_count(1)
        shown = page.locator("#chat-log li.message").evaluate_all("els => els.map(e => e.dataset.id)")
        ids = [int(i) for i in shown]
        assert ids == sorted(ids) and len(ids) == len(set(ids))

    assert app.errors == []


def test_reload_resumes_the_session_its_rooms_and_history(app: App) -> None:
    page = app.open()
    sid = app.session_id
    app.join("general")
    text = _unique("before reload")
    app.send(text)
    expect(app.messages(text)).to_have_count(1)
    assert page.evaluate("localStorage.getItem('personad.session')") == sid

    page.reload()
    app.wait_connected()
    assert app.session_id == sid
    expect(app.room("general")).to_have_attribute("data-joined", "true")
    expect(page.locator("#chat-title")).to_have_text("#general")
    expect(app.messages(text)).to_have_count(1)  # from chat_history
    assert app.errors == []


def test_load_older_pages_through_history(app: App, shared_daemon: RunningDaemon) -> None:
    room = _unique("paging")
    with shared_daemon.ws(name="poster") as ws:
        assert ws.call("room_create", {"room": room, "topic": "many messages"})["ok"] is True
        for i in range(55):
            assert ws.call("chat", {"room": room, "text": f"m{i:02d}"})["ok"] is True

    page = app.open()
    item = app.room(room)
    expect(item).to_contain_text("many messages")
    app.join(room)
    expect(app.messages()).to_have_count(50)
    expect(page.locator("#chat-log li.message").first.locator(".message-text")).to_have_text("m05")
    older = page.locator("#chat-load-older")
    expect(older).to_be_visible()
    older.click()
    expect(app.messages()).to_have_count(55)
    expect(page.locator("#chat-log li.message").first.locator(".message-text")).to_have_text("m00")
    expect(page.locator("#chat-log li.message").last.locator(".message-text")).to_have_text("m54")
    expect(older).to_be_hidden()
    assert app.errors == []


def test_create_and_leave_a_room(app: App, shared_daemon: RunningDaemon) -> None:
    page = app.open()
    page.fill("#new-room-name", "Not Valid!")
    page.click("#new-room-create")
    expect(page.locator("#rooms-error")).to_contain_text("invalid_room")

    room = _unique("lab")
    page.fill("#new-room-name", room)
    page.fill("#new-room-topic", "experiments")
    page.click("#new-room-create")
    expect(app.room(room)).to_have_attribute("data-joined", "true")
    expect(page.locator("#rooms-error")).to_be_hidden()
    expect(page.locator("#chat-title")).to_have_text(f"#{room}")
    expect(page.locator("#chat-topic")).to_have_text("experiments")
    expect(page.locator("#chat-input")).to_be_enabled()

    # Creating it again is refused by the daemon, and the page says why.
    page.fill("#new-room-name", room)
    page.click("#new-room-create")
    expect(page.locator("#rooms-error")).to_contain_text("room_exists")

    app.room(room).locator(".room-leave").click()
    expect(app.room(room)).to_have_attribute("data-joined", "false")
    expect(page.locator("#chat-title")).to_have_text("No room selected")
    expect(page.locator("#chat-input")).to_be_disabled()
    with shared_daemon.ws() as ws:
        listed = {r["id"]: r for r in ws.call("rooms")["result"]["rooms"]}
    assert listed[room]["members"] == 0
    assert app.errors == []


def test_screenshot_from_the_command_form_shows_the_image(app: App, shared_daemon: RunningDaemon) -> None:
    page = app.open()
    app.pick_command("screenshot")
    # The form follows the params schema: defaults prefilled, nullable fields blank, enums as selects.
    expect(page.locator("#param-timeout_ms")).to_have_value("15000")
    expect(page.locator("#param-timeout_ms")).to_have_attribute("type", "number")
    expect(page.locator("#param-quality")).to_have_value("")
    expect(page.locator("#param-full_page")).not_to_be_checked()
    assert page.locator("#param-format option:checked").inner_text() == "png"
    expect(page.locator('[data-param="url"] .help')).to_contain_text("navigate here first")

    page.fill("#param-url", BLUE_PAGE)
    result = app.run_command()
    expect(page.locator("#command-result")).to_have_attribute("data-state", "ok")
    assert result["format"] == "png" and result["width"] > 0 and result["height"] > 0
    assert result["url"].startswith(f"/api/sessions/{app.session_id}/")

    image = page.locator("#result-image")
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.getElementById('result-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    natural = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert natural == [result["width"], result["height"]]
    assert image.get_attribute("src") == f"{result['url']}?token={shared_daemon.token}"
    expect(page.locator("#result-caption")).to_contain_text(f"{result['width']} \u00d7 {result['height']}")
    pixel = image.evaluate(
        """i => {
            const canvas = Object.assign(document.createElement("canvas"), {width: 16, height: 16});
            const g = canvas.getContext("2d");
            g.drawImage(i, 0, 0);
            return Array.from(g.getImageData(5, 5, 1, 1).data);
        }"""
    )
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, [0, 128, 255, 255], strict=True)), pixel

    # What the form sent: blank optional fields left out, numbers and booleans converted.
    log = shared_daemon.home / "sessions" / app.session_id / "commands.jsonl"
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    sent = next(e["params"] for e in entries if e["command"] == "screenshot")
    assert sent == {"url": BLUE_PAGE, "full_page": False, "format": "png", "timeout_ms": 15000}
    assert app.errors == []


def test_command_errors_are_shown(app: App) -> None:
    page = app.open()
    code = page.locator("#command-error-code")

    app.pick_command("browser_js")
    expect(page.locator('[data-param="script"] abbr.required')).to_have_count(1)
    page.fill("#param-script", 'throw new Error("boom")')
    error = app.run_command()
    expect(page.locator("#command-result")).to_have_attribute("data-state", "error")
    expect(code).to_have_text("browser_error")
    expect(page.locator("#command-status")).to_contain_text("boom")
    assert error["code"] == "browser_error"

    # A server-side validation error marks the offending field.
    app.pick_command("chat_history")
    page.fill("#param-room", "general")
    page.fill("#param-limit", "0")
    app.run_command()
    expect(code).to_have_text("invalid_params")
    expect(page.locator("#param-limit")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#param-limit-error")).to_be_visible()

    # A field without a type is a JSON textarea: bad JSON is caught before anything is sent.
    app.pick_command("ping")
    page.fill("#param-echo", "{not json")
    page.click("#command-run")
    expect(code).to_have_text("invalid_input")
    page.fill("#param-echo", '{"a": [1, 2.5, true, null]}')
    assert app.run_command() == {"pong": True, "echo": {"a": [1, 2.5, True, None]}}
    expect(page.locator("#command-result")).to_have_attribute("data-state", "ok")
    expect(page.locator("#result-figure")).to_be_hidden()
    assert app.errors == []


def test_every_command_gets_a_form(app: App, shared_daemon: RunningDaemon) -> None:
    with shared_daemon.ws() as ws:
        commands = ws.call("commands")["result"]["commands"]
    page = app.open()
    expect(page.locator("#command-select option[value]:not([value=''])")).to_have_count(len(commands))
    for command in commands:
        page.select_option("#command-select", command["name"])
        fields = page.locator("#command-fields [data-param]")
        names = list(command["params_schema"].get("properties", {}))
        assert fields.evaluate_all("els => els.map(e => e.dataset.param)") == names, command["name"]
        for name in command["params_schema"].get("required", []):
            expect(page.locator(f'[data-param="{name}"] abbr.required')).to_have_count(1)
    assert app.errors == []


def test_reconnects_to_the_same_session_after_the_socket_drops(app: App) -> None:
    sockets: list[WebSocketRoute] = []

    def proxy(route: WebSocketRoute) -> None:
        route.connect_to_server()
        sockets.append(route)

    app.page.route_web_socket("**/ws?*", proxy)
    page = app.open()
    sid = app.session_id
    app.join("general")

    sockets[-1].close(code=1011, reason="simulated drop")
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "closed")
    expect(page.locator("#chat-input")).to_be_disabled()
    app.wait_connected()
    assert len(sockets) == 2
    assert app.session_id == sid
    expect(app.room("general")).to_have_attribute("data-joined", "true")
    text = _unique("after reconnect")
    app.send(text)
    expect(app.messages(text)).to_have_count(1)
    assert app.errors == []


def test_the_page_needs_the_token(app: App, shared_daemon: RunningDaemon) -> None:
    app.page.on("pageerror", lambda exc: pytest.fail(f"JS error on the 401 page: {exc}"))
    response = app.page.goto(f"{shared_daemon.url}/")
    assert response is not None and response.status == 401
    response = app.page.goto(f"{shared_daemon.url}/?token=wrong")
    assert response is not None and response.status == 401

    with httpx.Client(base_url=shared_daemon.url) as client:
        assert client.get("/").status_code == 401
        page = client.get("/", params={"token": shared_daemon.token})
        assert page.status_code == 200 and "/static/js/main.js" in page.text
        for path, kind in (("/static/js/main.js", "javascript"), ("/static/style.css", "css")):
            static = client.get(path)  # static assets need no token
            assert static.status_code == 200 and kind in static.headers["content-type"]
    # The browser logs the two 401 responses as console errors; uncaught JS errors there would fail above.


def test_a_persona_reply_streams_into_the_chat_then_lands_once(
    persona_app: App, persona_daemon: RunningDaemon
) -> None:
    app = persona_app
    assert _echo_persona(persona_daemon)["process"]["state"] == "running"
    page = app.open()
    # A new user lands in #general (joined for them), where the persona answers everything.
    expect(page.locator("#chat-title")).to_have_text("#general")
    expect(app.room("general")).to_have_attribute("data-joined", "true")
    expect(page.locator("#chat-input")).to_be_enabled()

    text = _long_text("stream me")
    app.send(text)
    bubble = page.locator("#chat-log li.message.streaming")
    expect(bubble).to_have_count(1, timeout=REPLY_MS)
    expect(bubble.locator(".sender")).to_have_text("echo")
    expect(bubble.locator(".kind")).to_have_text("persona")
    expect(bubble.locator(".typing")).to_have_count(1)
    expect(bubble.locator(".message-text")).to_contain_text("echo:")
    assert bubble.get_attribute("data-id") is None and bubble.get_attribute("data-stream")

    # The final chat_message replaces the bubble: exactly one reply from the persona, no bubble left.
    reply = f"echo: human: {text}"
    from_echo = page.locator("#chat-log li.message.from-persona")
    expect(page.locator("#chat-log li.message.streaming")).to_have_count(0, timeout=REPLY_MS)
    expect(from_echo).to_have_count(1)
    expect(from_echo.locator(".message-text")).to_have_text(reply)
    expect(from_echo.locator(".kind-persona")).to_have_text("persona")
    expect(from_echo.locator(".reply-info")).to_contain_text(" s")
    expect(from_echo).not_to_have_class(re.compile(r"\bfailed\b"))
    expect(app.messages(reply)).to_have_count(1)
    ids = page.locator("#chat-log li.message").evaluate_all("els => els.map(e => Number(e.dataset.id))")
    assert len(ids) == 2 and ids == sorted(ids)
    save_shot(page, "chat")  # docs/web.md shows it

    # Replies written in a room that is not selected mark it, then count as unread.
    page.fill("#new-room-name", _unique("quiet"))
    page.click("#new-room-create")
    expect(page.locator("#chat-title")).not_to_have_text("#general")
    general = app.room("general")
    robot_text = _long_text("from robot")
    # (closed before the reply streams: a client sitting on many unread events is slow to close)
    with persona_daemon.ws(name="robot") as ws:
        assert ws.call("room_join", {"room": "general"})["ok"] is True
        assert ws.call("chat", {"room": "general", "text": robot_text})["ok"] is True
    expect(general.locator(".typing")).to_have_count(1, timeout=REPLY_MS)
    expect(general.locator(".badge")).to_have_text("2", timeout=REPLY_MS)  # the robot's message, the reply
    expect(general.locator(".typing")).to_have_count(0)
    general.locator(".room-select").click()
    expect(page.locator("#chat-title")).to_have_text("#general")
    expect(app.messages(f"echo: robot: {robot_text}")).to_have_count(1)
    expect(from_echo).to_have_count(2)
    expect(page.locator("#chat-log li.message.streaming")).to_have_count(0)
    assert app.errors == []


def test_the_personas_panel_starts_stops_and_opens_a_direct_room(
    persona_app: App, persona_daemon: RunningDaemon
) -> None:
    app = persona_app
    _echo_persona(persona_daemon)
    page = app.open()
    sid = app.session_id
    row = page.locator('#persona-list [data-persona="echo"]')
    state = row.locator(".persona-state")
    expect(state).to_have_text("running")
    expect(row.locator(".persona-meta")).to_contain_text("fake")

    row.locator(".persona-stop").click()
    expect(state).to_have_text("stopped", timeout=30_000)
    expect(row).to_have_attribute("data-state", "stopped")
    with persona_daemon.http() as client:
        listed = client.post("/api/commands/persona_list").json()["result"]["personas"]
    assert [p["process"]["state"] for p in listed if p["id"] == "echo"] == ["stopped"]

    row.locator(".persona-start").click()
    expect(state).to_have_text("running", timeout=60_000)
    expect(row).not_to_have_attribute("aria-busy", "true")
    expect(row.locator(".persona-stop")).to_be_enabled()
    expect(page.locator("#personas-error")).to_be_hidden()

    # Chat: a direct room with the persona, created for this session and selected.
    room = f"dm-{sid}-echo".lower()
    row.locator(".persona-chat").click()
    expect(page.locator("#chat-title")).to_have_text(f"#{room}")
    expect(page.locator("#chat-topic")).to_have_text("Direct chat with echo")
    item = app.room(room)
    expect(item).to_have_attribute("data-joined", "true")
    expect(item).to_have_class(re.compile(r"\bdirect\b"))
    expect(item.locator(".room-name")).to_have_text("echo")
    app.send("hello in private")
    reply = page.locator("#chat-log li.message.from-persona")
    expect(reply.locator(".message-text")).to_have_text("echo: human: hello in private", timeout=REPLY_MS)
    expect(reply).to_have_count(1)
    found = persona_daemon.daemon.rooms.get(room)  # direct rooms are listed to their members only
    assert found["direct"] is True and found["members"] == 2

    # Leave it, then Chat again: the room exists, so the page joins it and invites the persona again.
    item.locator(".room-leave").click()
    expect(page.locator("#chat-title")).to_have_text("No room selected")
    row.locator(".persona-chat").click()
    expect(page.locator("#chat-title")).to_have_text(f"#{room}")
    expect(app.messages("echo: human: hello in private")).to_have_count(1)  # from chat_history
    expect(page.locator("#personas-error")).to_be_hidden()
    app.send("second visit")
    expect(app.messages("echo: human: second visit")).to_have_count(1, timeout=REPLY_MS)
    assert app.errors == []


@pytest.mark.parametrize("subtle", [True, False], ids=["crypto-subtle", "js-fallback"])
def test_long_direct_room_ids_are_hashed(
    persona_app: App, persona_daemon: RunningDaemon, subtle: bool
) -> None:
    app = persona_app
    persona_id = "a-persona-with-a-rather-long-identifier-" + "x" * 20
    _create_persona(persona_daemon, id=persona_id, name="Long One", model_provider="fake")
    if not subtle:  # what a plain-http page on a LAN address gets: no crypto.subtle
        app.page.add_init_script(
            'Object.defineProperty(Crypto.prototype, "subtle", {get: () => undefined, configurable: true});'
        )
    page = app.open()
    assert page.evaluate("Boolean(globalThis.crypto.subtle)") is subtle
    row = page.locator(f'#persona-list [data-persona="{persona_id}"]')
    expect(row.locator(".persona-state")).to_have_text("stopped")
    expect(row.locator(".persona-meta")).to_contain_text(f"@{persona_id}")
    row.locator(".persona-chat").click()

    plain = f"dm-{app.session_id}-{persona_id}".lower()
    assert len(plain) > 64
    room = "dm-" + hashlib.sha256(plain.encode()).hexdigest()[:32]
    expect(page.locator("#chat-title")).to_have_text(f"#{room}")
    expect(page.locator("#chat-topic")).to_have_text("Direct chat with Long One")
    expect(app.room(room).locator(".room-name")).to_have_text("Long One")
    found = persona_daemon.daemon.rooms.get(room)  # direct rooms are listed to their members only
    assert found["direct"] is True and found["members"] == 2
    assert app.errors == []


def test_the_personas_panel_without_the_capability(app: App) -> None:
    def narrowed(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def to_page(message: str | bytes) -> None:
            data = json.loads(message)
            if data.get("type") == "welcome":
                data["data"]["capabilities"] = ["chat"]
            route.send(json.dumps(data))

        server.on_message(to_page)

    app.page.route_web_socket("**/ws?*", narrowed)
    page = app.open()
    expect(page.locator("#session-capabilities")).to_have_text("chat")
    expect(page.locator("#personas-note")).to_be_visible()
    expect(page.locator("#personas-note")).to_contain_text("personas")
    expect(page.locator("#persona-list li")).to_have_count(0)
    expect(page.locator("#personas-refresh")).to_be_disabled()
    expect(page.locator("#personas-error")).to_be_hidden()
    expect(page.locator("#chat-title")).to_have_text("#general")
    assert app.errors == []


def test_a_graduation_shows_a_notification_and_an_in_page_note(
    app: App, shared_daemon: RunningDaemon
) -> None:
    from personad.personas.config import PersonaStore

    # Record what the page hands the Notification API (headless Chromium shows nothing).
    app.page.add_init_script(
        """
        window.__notes = [];
        class FakeNotification {
          static permission = "granted";
          static requestPermission() { return Promise.resolve("granted"); }
          constructor(title, options) { window.__notes.push({title, body: options.body}); }
        }
        window.Notification = FakeNotification;
        """
    )
    page = app.open()
    persona = _unique("grad")
    store = PersonaStore(shared_daemon.home)
    config = store.create({"id": persona, "model_provider": "fake"})
    config.status = "graduated"
    store.save(config)
    with shared_daemon.http() as client:
        response = client.post(
            "/api/commands/persona_graduated",
            json={
                "persona": persona,
                "graduation": {
                    "achievement": "academy:general",
                    "academy_score": 0.9,
                    "lora_hash": "ab" * 32,
                },
            },
        )
    assert response.status_code == 200, response.text
    expect(page.locator("#graduations .graduation", has_text=persona)).to_be_visible()
    notes = page.evaluate("window.__notes")
    assert notes and persona in notes[0]["title"] and "academy:general" in notes[0]["body"]
    expect(page.locator(f'#persona-list li[data-persona="{persona}"] .persona-badge')).to_be_visible()
    assert app.errors == []


def test_the_mesh_panel_shows_peers_skills_and_transfers(browser: Browser, tmp_path: Path) -> None:
    from tests.conftest import start_daemon
    from tests.mesh.helpers import TINY_BASE, register_chain

    mesh = {"mesh": True, "mesh_base_model_sha256": TINY_BASE, "mesh_poll_s": 0.2}
    a = start_daemon(tmp_path / "a", mesh_name="alpha", **mesh)
    b = start_daemon(tmp_path / "b", mesh_name="beta", **mesh)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        app = App(context.new_page(), b)
        page = app.open()
        with a.http() as ha, b.http() as hb:
            code = ha.post("/api/commands/mesh_invite", json={}).json()["result"]["code"]
            assert hb.post("/api/commands/mesh_join", json={"code": code}).json()["ok"]
            expect(page.locator("#mesh-peers tbody tr", has_text="alpha")).to_be_visible(timeout=15_000)
            register_chain(a.home, tmp_path, ["legal"])
            assert ha.post("/api/commands/mesh_broadcast", json={"adapter": "legal"}).json()["ok"]
            expect(page.locator('#mesh-skills tr[data-adapter="legal"]')).to_be_visible()
            job = hb.post("/api/commands/mesh_acquire", json={"skill": "legal"}).json()["result"]["job"]
            hb.post("/api/commands/job_wait", json={"job_id": job["job_id"], "timeout": 30})
        expect(page.locator("#mesh-transfer-label")).to_have_text("legal: acquired and verified")
        expect(page.locator('#mesh-skills tr[data-adapter="legal"]')).to_contain_text("legal ✓")
        expect(page.locator("#mesh-note")).to_contain_text("seeding legal")
        assert app.errors == []
    finally:
        context.close()
        a.stop()
        b.stop()
