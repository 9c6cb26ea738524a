"""A persona fills and submits the form through the bus, by the line protocol and by native tool calls."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.site import ref, serve
from tests.conftest import RunningDaemon, WsClient
from tests.personas.conftest import reply_to

pytestmark = pytest.mark.browser


@pytest.fixture
def site() -> Iterator[str]:
    with serve() as url:
        yield url


def _create(rd: RunningDaemon, persona_id: str, provider: str) -> None:
    body = {
        "id": persona_id,
        "model_provider": provider,
        "start": True,
        "capabilities": ["chat", "browser"],
        "respond_in": ["*"],
    }
    with rd.http() as http:
        response = http.post("/api/commands/persona_create", json=body).json()
    assert response["ok"], response


_rooms = itertools.count(1)


def _ask(ws: WsClient, persona: str, command: str, params: dict[str, Any]) -> str:
    # A room per request: a persona answers one message per room at a time, and remembering a long
    # exchange (a snapshot) can hold its room a while on a busy host.
    room = f"{persona}-{next(_rooms)}"
    assert ws.call("room_create", {"room": room, "invite": [persona]})["ok"]
    sent = ws.call("chat", {"room": room, "text": f"run:{command} {json.dumps(params)}"})["result"]["message"]
    return str(reply_to(ws, sent["id"])[0]["text"])


def _recorded(rd: RunningDaemon, persona_id: str, command: str) -> dict[str, Any]:
    """The last successful result of command in the persona's own command log (what the bus answered)."""
    lines = (rd.home / "personas" / persona_id / "commands.jsonl").read_text().splitlines()
    entries = [e for e in map(json.loads, lines) if e["command"] == command and e["ok"]]
    assert entries, f"no successful {command} in the log of {persona_id}"
    return dict(entries[-1]["result"])


def test_persona_fills_and_submits_the_form(persona_daemon: RunningDaemon, site: str) -> None:
    _create(persona_daemon, "clerk", "fake")  # [CMD:name] {json} lines
    _create(persona_daemon, "tooler", "fake-tools")  # native tool calls
    with persona_daemon.ws(name="ada") as ws:
        url = f"{site}/form"

        # Line protocol: navigate, snapshot, fill two fields by the refs it saw, click submit by ref.
        assert "[RESULT:browser_navigate]" in _ask(ws, "clerk", "browser_navigate", {"url": url})
        assert "[RESULT:browser_snapshot]" in _ask(ws, "clerk", "browser_snapshot", {})
        seen = _recorded(persona_daemon, "clerk", "browser_snapshot")["snapshot"]
        # No "@" in what a persona is asked: "@example" would address someone else, and it would not answer.
        fields = [
            {"ref": ref(seen, "textbox", "First name"), "value": "Ada"},
            {"ref": ref(seen, "textbox", "Email"), "value": "ada.example.org"},
            {"ref": ref(seen, "checkbox", "Agree"), "value": True},
        ]
        filled = _ask(ws, "clerk", "browser_fill_form", {"fields": fields})
        assert filled.startswith("running it\nobserved [RESULT:browser_fill_form]"), filled
        clicked = _ask(ws, "clerk", "browser_click", {"ref": ref(seen, "button", "Submit")})
        assert "[RESULT:browser_click]" in clicked and "Result: Ada|ada.example.org|r|true" in clicked
        assert (
            "Result: Ada|ada.example.org|r|true"
            in _recorded(persona_daemon, "clerk", "browser_click")["snapshot"]
        )
        # A stale ref comes back to the model as an observation it can act on.
        stale = _ask(ws, "clerk", "browser_click", {"ref": "e999999"})
        assert "[ERROR:browser_click]" in stale and "ref_not_found" in stale

        # Native tool calls, on the other persona's own page.
        assert _ask(ws, "tooler", "browser_navigate", {"url": url}).startswith("observed ")
        selectors = [{"selector": "#first", "value": "Bo"}, {"selector": "#color", "value": "Green"}]
        filled = _ask(ws, "tooler", "browser_fill_form", {"fields": selectors})
        assert filled.startswith("observed ") and '"kind": "select"' in filled, filled
        clicked = _ask(ws, "tooler", "browser_click", {"selector": "button[type=submit]"})
        assert clicked.startswith("observed ") and "Result: Bo||g|false" in clicked, clicked
        # Each persona acted on its own page only.
        assert "Result: Ada" in _recorded(persona_daemon, "clerk", "browser_click")["title"]
        assert _recorded(persona_daemon, "tooler", "browser_click")["title"] == "Result: Bo||g|false"
