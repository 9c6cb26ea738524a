"""The form flow by personas on the real Anthropic and OpenAI wire shapes (the fake servers answer with tool
calls the SDKs parse): the browser commands reach them as native tools and act on the persona's own page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from personad.personas.persona import PersonaDaemon
from tests.browser.site import serve
from tests.conftest import RunningDaemon
from tests.models.fake_servers import FakeAnthropicServer, FakeOpenAIServer, Reply

pytestmark = pytest.mark.browser


@pytest.fixture
def site() -> Iterator[str]:
    with serve() as url:
        yield url


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_remote_persona_fills_and_submits_the_form(
    running: RunningDaemon, site: str, provider: str
) -> None:
    server_class = FakeOpenAIServer if provider == "openai" else FakeAnthropicServer
    with server_class() as server:
        server.queue(
            Reply.tool_call("browser_navigate", {"url": f"{site}/form"}),
            Reply.tool_call(
                "browser_fill_form",
                {"fields": [{"selector": "#first", "value": "Cy"}, {"selector": "#color", "value": "Green"}]},
            ),
            Reply.tool_call("browser_click", {"selector": "button[type=submit]"}),
            Reply(text="Submitted."),
        )
        persona = PersonaDaemon(
            {
                "id": f"{provider}-clerk",
                "modelProvider": provider,
                "modelConfig": {
                    "model": "m",
                    "baseUrl": server.url,
                    "apiKey": server.api_key,
                    "maxRetries": 0,
                },
                "capabilities": ["chat", "browser"],
                "maxCommandSteps": 4,
                "memoryBudgetTokens": 0,
            },
            home=running.home,
        )
        await persona.start()
        try:
            reply = await persona.handle_message(
                {"type": "chat_message", "data": {"message": "Fill in the form"}}
            )
        finally:
            await persona.stop()
        tools = _tool_names(server.requests[0].body, provider)
    assert reply["reply"] == "Submitted."
    done = {o["command"]: o for o in reply["observations"]}
    assert set(done) == {"browser_navigate", "browser_fill_form", "browser_click"}
    assert all(o["ok"] for o in done.values()), reply["observations"]
    assert done["browser_click"]["outcome"]["title"] == "Result: Cy||g|false"
    assert {"browser_snapshot", "browser_click", "browser_fill_form", "browser_type", "browser_tabs"} <= tools


def _tool_names(body: dict[str, Any], provider: str) -> set[str]:
    if provider == "openai":
        return {t["function"]["name"] for t in body["tools"]}
    return {t["name"] for t in body["tools"]}
