"""The MCP transport over streamable HTTP at /mcp, driven by the official SDK client."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import RunningDaemon, start_daemon

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORM_PAGE = (
    "data:text/html,<!doctype html><title>form</title>"
    "<form id=f onsubmit=\"event.preventDefault();document.getElementById('out').textContent="
    "document.getElementById('first').value+' '+document.getElementById('last').value\">"
    "<input id=first name=first><input id=last name=last><button id=go type=submit>Send</button></form>"
    "<p id=out></p>"
)


@contextlib.asynccontextmanager
async def mcp_session(rd: RunningDaemon, **headers: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session against the daemon's /mcp."""
    hdrs = {"Authorization": f"Bearer {rd.token}", **headers}
    async with (
        create_mcp_http_client(headers=hdrs) as http,
        streamable_http_client(f"{rd.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result
    assert isinstance(result.structured_content, dict)
    text = next(c for c in result.content if isinstance(c, types.TextContent))
    assert json.loads(text.text) == result.structured_content  # the text rendering is the same JSON
    return result.structured_content


async def call(session: ClientSession, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await session.call_tool(name, args or {})
    assert isinstance(result, types.CallToolResult)
    return structured(result)


async def test_initialize_lists_every_command_as_a_tool(running: RunningDaemon) -> None:
    async with mcp_session(running) as session:
        assert session.server_info is not None and session.server_info.name == "personad"
        tools = {t.name: t for t in (await session.list_tools()).tools}
        registry = running.daemon.registry
        assert set(tools) == {c.name for c in registry}
        chat = registry.get("chat")
        assert tools["chat"].description == chat.description
        assert tools["chat"].input_schema == chat.params.model_json_schema()
        assert "browser_js" in tools and "screenshot" in tools


async def test_chat_and_errors_as_tool_errors(running: RunningDaemon) -> None:
    async with mcp_session(running) as session:
        await call(session, "room_join", {"room": "general"})
        posted = await call(session, "chat", {"room": "general", "text": "hello from mcp"})
        assert posted
        history = await call(session, "chat_history", {"room": "general"})
        assert "hello from mcp" in json.dumps(history)
        bad = await session.call_tool("chat", {"room": "general"})
        assert isinstance(bad, types.CallToolResult) and bad.is_error
        assert isinstance(bad.structured_content, dict)
        assert bad.structured_content["error"]["code"] == "invalid_params"
        unknown = await session.call_tool("no_such_command", {})
        assert isinstance(unknown, types.CallToolResult) and unknown.is_error
        assert isinstance(unknown.structured_content, dict)
        assert unknown.structured_content["error"]["code"] == "unknown_command"
        info = await call(session, "session")
        assert info["kind"] == "mcp" and info["capabilities"] == ["*"]


async def test_wrong_token_is_refused_with_401(running: RunningDaemon) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=running.url) as http:
        for auth in ({}, {"Authorization": "Bearer wrong"}):
            response = await http.post("/mcp", json=body, headers={**headers, **auth})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert "mcp-session-id" not in response.headers


async def test_capabilities_limit_the_tools(running: RunningDaemon) -> None:
    async with mcp_session(running, **{"X-Personad-Capabilities": "chat"}) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "chat" in names and "room_join" in names
        assert not {n for n in names if n.startswith("browser")} and "screenshot" not in names
        assert {c.name for c in running.daemon.registry if c.capability is None} <= names
        denied = await session.call_tool("browser_js", {"script": "1"})
        assert isinstance(denied, types.CallToolResult) and denied.is_error
        assert isinstance(denied.structured_content, dict)
        assert denied.structured_content["error"]["code"] == "capability_denied"
        assert (
            "code" in denied.structured_content["error"] and "message" in denied.structured_content["error"]
        )
        info = await call(session, "session")
        assert info["capabilities"] == ["chat"] and info["kind"] == "mcp"


async def test_remember_and_recall(persona_daemon: RunningDaemon) -> None:
    async with mcp_session(persona_daemon) as session:
        created = await call(session, "persona_create", {"id": "scout", "model_provider": "fake"})
        assert created
        stored = await call(
            session, "remember", {"persona": "scout", "memory": {"type": "fact", "content": "Lives in Porto"}}
        )
        assert stored["created"] is True
        found = await call(session, "recall", {"persona": "scout", "query": "Porto", "mode": "fts"})
        assert [m["content"] for m in found["memories"]] == ["Lives in Porto"]


@pytest.fixture
def job_daemon(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PERSONAD_PLUGINS", "tests.fakes.fake_jobs")
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


async def test_job_reports_progress_and_returns_its_result(job_daemon: RunningDaemon) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with mcp_session(job_daemon) as session:
        result = await session.call_tool(
            "test_countdown", {"steps": 4, "step_s": 0.3}, progress_callback=on_progress
        )
        assert isinstance(result, types.CallToolResult)
        assert structured(result) == {"counted": 4}
        assert seen, "no progress notifications"
        assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen})  # strictly increasing
        assert seen[-1][0] == 4 and seen[-1][1] == 4
        failed = await session.call_tool("test_countdown", {"steps": 3, "step_s": 0.01, "fail_at": 2})
        assert isinstance(failed, types.CallToolResult) and failed.is_error
        assert isinstance(failed.structured_content, dict)
        assert failed.structured_content["error"]["code"] == "countdown_failed"


async def test_screenshot_is_image_content_and_browser_form_flow(running: RunningDaemon) -> None:
    async with mcp_session(running) as session:
        nav = await call(session, "browser_navigate", {"url": FORM_PAGE})
        assert nav["title"] == "form"
        fill = (
            "document.getElementById('first').value='Ada';"
            "document.getElementById('last').value='Lovelace';"
            "document.getElementById('go').click();"
            "document.getElementById('out').textContent"
        )
        filled = await call(session, "browser_js", {"script": fill})
        assert filled["value"] == "Ada Lovelace"
        shot = await session.call_tool("screenshot", {})
        assert isinstance(shot, types.CallToolResult)
        data = structured(shot)
        images = [c for c in shot.content if isinstance(c, types.ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        raw = base64.b64decode(images[0].data)
        assert raw.startswith(PNG_MAGIC) and len(raw) == data["bytes"]
        jpeg = await session.call_tool("screenshot", {"format": "jpeg"})
        assert isinstance(jpeg, types.CallToolResult)
        assert [c.mime_type for c in jpeg.content if isinstance(c, types.ImageContent)] == ["image/jpeg"]


async def test_browser_form_flow_with_snapshot_refs(running: RunningDaemon) -> None:
    import re

    async with mcp_session(running) as session:
        await call(session, "browser_navigate", {"url": FORM_PAGE})
        snap = (await call(session, "browser_snapshot"))["snapshot"]
        boxes = re.findall(r"textbox[^\n]*\[ref=(e\d+)\]", snap)
        button = re.search(r'button "Send"[^\n]*\[ref=(e\d+)\]', snap)
        assert len(boxes) == 2 and button is not None, snap
        fields = [{"ref": boxes[0], "value": "Ada"}, {"ref": boxes[1], "value": "Lovelace"}]
        filled = await call(session, "browser_fill_form", {"fields": fields})
        assert len(filled["filled"]) == 2
        await call(session, "browser_click", {"ref": button.group(1)})
        out = await call(session, "browser_js", {"script": "document.getElementById('out').textContent"})
        assert out["value"] == "Ada Lovelace"
