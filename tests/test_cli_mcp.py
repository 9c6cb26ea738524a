"""``personad mcp``: the stdio MCP bridge to a running daemon, driven by the official SDK's stdio client."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from personad.state import read_state
from tests.conftest import REPO, RunningDaemon, start_daemon
from tests.server.test_mcp import FORM_PAGE, PNG_MAGIC, structured

BRIDGE_TIMEOUT_S = 60


@contextlib.asynccontextmanager
async def stdio_session(home: Path, *extra: str) -> AsyncIterator[ClientSession]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "personad.cli", "mcp", "--home", str(home), *extra], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await session.call_tool(name, args or {})
    assert isinstance(result, types.CallToolResult)
    return structured(result)


@pytest.fixture
def bridge_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningDaemon]:
    """A daemon with the fake model providers and the fake job command."""
    monkeypatch.setenv("PERSONAD_PLUGINS", "tests.fakes.fake_provider,tests.fakes.fake_jobs")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


async def test_stdio_bridge_tools_chat_brain_browser_and_jobs(bridge_daemon: RunningDaemon) -> None:
    async with stdio_session(bridge_daemon.home) as session:
        assert session.server_info is not None and session.server_info.name == "personad"
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {c.name for c in bridge_daemon.daemon.registry}
        assert (
            tools["recall"].input_schema
            == bridge_daemon.daemon.registry.get("recall").params.model_json_schema()
        )

        await call(session, "room_join", {"room": "general"})
        await call(session, "chat", {"room": "general", "text": "hello over stdio"})
        assert "hello over stdio" in json.dumps(await call(session, "chat_history", {"room": "general"}))

        await call(session, "persona_create", {"id": "scout", "model_provider": "fake"})
        memory = {"type": "fact", "content": "Keeps bees in Lisbon"}
        await call(session, "remember", {"persona": "scout", "memory": memory})
        found = await call(session, "recall", {"persona": "scout", "query": "bees", "mode": "fts"})
        assert [m["content"] for m in found["memories"]] == ["Keeps bees in Lisbon"]

        # The form flow as an agent does it: snapshot, fill two fields by ref, click submit, read the result.
        await call(session, "browser_navigate", {"url": FORM_PAGE})
        snap = (await call(session, "browser_snapshot"))["snapshot"]
        boxes = re.findall(r"textbox[^\n]*\[ref=(e\d+)\]", snap)
        button = re.search(r'button "Send"[^\n]*\[ref=(e\d+)\]', snap)
        assert len(boxes) == 2 and button is not None, snap
        fields = [{"ref": boxes[0], "value": "Grace"}, {"ref": boxes[1], "value": "Hopper"}]
        assert len((await call(session, "browser_fill_form", {"fields": fields}))["filled"]) == 2
        clicked = await call(session, "browser_click", {"ref": button.group(1)})
        assert "Grace Hopper" in clicked["snapshot"]
        shot = await session.call_tool("screenshot", {})
        assert isinstance(shot, types.CallToolResult)
        images = [c for c in shot.content if isinstance(c, types.ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)

        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        done = await session.call_tool(
            "test_countdown", {"steps": 3, "step_s": 0.3}, progress_callback=on_progress
        )
        assert isinstance(done, types.CallToolResult) and structured(done) == {"counted": 3}
        assert seen and seen[-1] == 3 and seen == sorted(set(seen))

        bad = await session.call_tool("chat", {"room": "general"})
        assert isinstance(bad, types.CallToolResult) and bad.is_error
        assert isinstance(bad.structured_content, dict)
        assert bad.structured_content["error"]["code"] == "invalid_params"


async def test_stdio_bridge_capabilities(running: RunningDaemon) -> None:
    async with stdio_session(running.home, "--capabilities", "chat") as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "chat" in names and not any(n.startswith("browser") for n in names)
        denied = await session.call_tool("browser_js", {"script": "1"})
        assert isinstance(denied, types.CallToolResult) and denied.is_error
        assert isinstance(denied.structured_content, dict)
        assert denied.structured_content["error"]["code"] == "capability_denied"


def test_no_start_without_a_daemon_fails_on_stderr(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "personad.cli", "mcp", "--home", str(tmp_path / "none"), "--no-start"],
        capture_output=True,
        text=True,
        timeout=BRIDGE_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert "daemon_not_running" in proc.stderr


def test_help_says_it_starts_a_daemon() -> None:
    from click.testing import CliRunner

    from personad.cli import main

    out = CliRunner().invoke(main, ["mcp", "--help"]).output
    assert "starts one" in out and "--home" in out and "stdin/stdout" in out


async def test_starts_a_daemon_when_none_runs(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    try:
        async with stdio_session(home, "--log-level", "info") as session:
            assert (await call(session, "ping", {"echo": 5}))["echo"] == 5
        state = read_state(home)
        assert state is not None and state["pid"] != os.getpid()
    finally:
        state = read_state(home)
        if state is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(state["pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
