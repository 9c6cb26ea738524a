"""A persona's external MCP servers: their tools are its own commands ``mcp.<server>.<tool>``.

The server is tests/personas/mcp_test_server.py over stdio (add, echo, hang, fail); the personas run through
the PersonaDaemon Python API against a test daemon, with the fake providers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from personad.errors import BadRequestError
from personad.models.base import ToolSpec
from personad.personas import command_protocol
from personad.personas.config import PersonaStore, parse_config
from personad.personas.conversation import (
    NATIVE_TOOL_NAME,
    as_native_tools,
    build_request,
    command_for_native,
    native_tool_name,
)
from personad.personas.persona import PersonaDaemon
from tests.conftest import REPO, RunningDaemon
from tests.fakes.fake_provider import FakeProvider, FakeToolsProvider

MCP_TOOLS = ["mcp.calc.add", "mcp.calc.echo", "mcp.calc.hang", "mcp.calc.fail"]  # the server's order


def calc_server(**extra: Any) -> dict[str, Any]:
    """The test MCP server over stdio (the SDK passes the server only a safe environment: PYTHONPATH here)."""
    return {
        "name": "calc",
        "command": sys.executable,
        "args": ["-m", "tests.personas.mcp_test_server"],
        "env": {"PYTHONPATH": str(REPO)},
        **extra,
    }


async def started(rd: RunningDaemon, persona_id: str, *, tools: bool = False, **config: Any) -> PersonaDaemon:
    data = {
        "id": persona_id,
        "model_provider": "fake-tools" if tools else "fake",
        "memory_budget_tokens": 0,  # no recall: nothing here needs the embedding model
        **config,
    }
    saved = PersonaStore(rd.home).create(data)
    provider = FakeToolsProvider() if tools else FakeProvider()
    persona = PersonaDaemon(saved, home=rd.home, provider=provider)
    await persona.start()
    return persona


async def ask(persona: PersonaDaemon, text: str) -> dict[str, Any]:
    return await persona.handle_message({"type": "chat_message", "data": {"message": text}})


@pytest.fixture
async def calc_persona(persona_daemon: RunningDaemon) -> AsyncIterator[PersonaDaemon]:
    persona = await started(
        persona_daemon,
        "mathy",
        capabilities=["chat", "mcp"],
        # The same server twice: "slow" has a small timeout_s for the hanging tool.
        mcp_servers=[calc_server(), calc_server(name="slow", timeout_s=0.5)],
    )
    try:
        yield persona
    finally:
        await persona.stop()


async def test_line_protocol_call_gets_the_result(calc_persona: PersonaDaemon) -> None:
    status = calc_persona.get_status()
    assert status["mcp_servers"][0] == {
        "name": "calc",
        "transport": "stdio",
        "state": "connected",
        "tools": MCP_TOOLS,
        "error": None,
    }
    assert status["mcp_servers"][1]["tools"] == [t.replace("calc", "slow") for t in MCP_TOOLS]
    names = {t.name for t in calc_persona.tools}
    assert set(MCP_TOOLS) <= names and "chat" not in names  # beside its bus commands
    add = next(t for t in calc_persona.tools if t.name == "mcp.calc.add")
    assert add.parameters["properties"].keys() == {"a", "b"} and "Add two numbers" in add.description

    reply = await ask(calc_persona, 'run:mcp.calc.add {"a": 2, "b": 3}')
    assert reply["observations"] == [{"command": "mcp.calc.add", "ok": True, "outcome": {"result": 5.0}}]
    assert '[RESULT:mcp.calc.add] {"result": 5.0}' in reply["reply"]  # the model saw it
    echoed = await ask(calc_persona, 'run:mcp.calc.echo {"text": "hello there"}')
    assert echoed["observations"][0]["outcome"] == {"result": "hello there"}
    system = await ask(calc_persona, "system?")
    assert "- mcp.calc.add(a, b): Add two numbers." in system["reply"]  # taught by the protocol


async def test_native_tool_call_gets_the_result(persona_daemon: RunningDaemon) -> None:
    persona = await started(
        persona_daemon, "toolish", tools=True, capabilities=["chat", "mcp"], mcp_servers=[calc_server()]
    )
    try:
        request = build_request(persona.config, [], tools=persona.tools, native_tools=True)
        native = {t.name for t in request.tools}
        assert {"mcp__calc__add", "mcp__calc__hang"} <= native
        assert all(NATIVE_TOOL_NAME.match(name) for name in native)
        reply = await ask(persona, 'run:mcp__calc__add {"a": 40, "b": 2}')  # the model calls the native name
        assert reply["observations"] == [{"command": "mcp.calc.add", "ok": True, "outcome": {"result": 42.0}}]
        assert "observed" in reply["reply"] and "42.0" in reply["reply"]
    finally:
        await persona.stop()
    assert persona.get_status()["mcp_servers"][0]["state"] == "closed"


async def test_a_hanging_tool_times_out_and_the_persona_answers_on(calc_persona: PersonaDaemon) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    direct = await calc_persona._run_command("mcp.slow.hang", {})
    assert loop.time() - began < 5 and direct["outcome"]["code"] == "mcp_timeout"
    reply = await ask(calc_persona, "run:mcp.slow.hang {}")
    (observation,) = reply["observations"]
    assert observation["command"] == "mcp.slow.hang" and observation["ok"] is False
    assert observation["outcome"]["code"] == "mcp_timeout" and "0.5 s" in observation["outcome"]["message"]
    assert "[ERROR:mcp.slow.hang]" in reply["reply"]
    assert calc_persona.get_status()["state"] == "running"
    after = await ask(calc_persona, "still there?")
    assert after["reply"].startswith("echo: still there?")
    again = await ask(calc_persona, 'run:mcp.slow.add {"a": 1, "b": 1}')  # the connection still works
    assert again["observations"][0]["outcome"] == {"result": 2.0}


async def test_failing_and_unknown_tools_are_structured_errors(calc_persona: PersonaDaemon) -> None:
    failed = (await ask(calc_persona, "run:mcp.calc.fail {}"))["observations"][0]
    assert failed["ok"] is False and failed["outcome"]["code"] == "mcp_tool_error"
    assert "fail" in failed["outcome"]["message"]
    bad_args = (await ask(calc_persona, 'run:mcp.calc.add {"a": "x"}'))["observations"][0]
    assert bad_args["outcome"]["code"] == "mcp_tool_error"
    for name in ("mcp.calc.nope", "mcp.ghost.add"):
        unknown = (await ask(calc_persona, f"run:{name} {{}}"))["observations"][0]
        assert unknown["command"] == name and unknown["ok"] is False
        assert (
            unknown["outcome"]["code"] == "unknown_command"
            and "mcp.calc.add" in unknown["outcome"]["message"]
        )
    not_object = await calc_persona._run_command("mcp.calc.add", "[1, 2]")
    assert not_object["outcome"]["code"] == "invalid_command_syntax"


async def test_without_the_capability_no_tools_and_calls_are_refused(persona_daemon: RunningDaemon) -> None:
    persona = await started(persona_daemon, "plain", capabilities=["chat"], mcp_servers=[calc_server()])
    try:
        assert not [t for t in persona.tools if t.name.startswith("mcp")]
        (server,) = persona.get_status()["mcp_servers"]
        assert server["state"] == "disabled" and server["tools"] == []
        observation = (await ask(persona, 'run:mcp.calc.add {"a": 1, "b": 2}'))["observations"][0]
        assert observation["ok"] is False and observation["outcome"]["code"] == "capability_denied"
    finally:
        await persona.stop()


async def test_other_sessions_do_not_see_mcp_tools(
    persona_daemon: RunningDaemon, calc_persona: PersonaDaemon
) -> None:
    other = await started(persona_daemon, "other", capabilities=["chat", "mcp"])
    try:
        assert not [t for t in other.tools if t.name.startswith("mcp")]
        refused = (await ask(other, 'run:mcp.calc.add {"a": 1, "b": 2}'))["observations"][0]
        assert refused["outcome"]["code"] == "unknown_command"  # not its server: it has none
        for bus in (other._bus(), calc_persona._bus()):  # not bus commands, even for the MCP persona
            listing = await bus.call("commands")
            assert not [c for c in listing["commands"] if c["name"].startswith("mcp")]
    finally:
        await other.stop()

    def human_commands() -> list[str]:
        with persona_daemon.ws() as ws:
            reply = ws.call("commands")
            assert reply["ok"]
            names = [c["name"] for c in reply["result"]["commands"]]
            unknown = ws.call("mcp.calc.add", {"a": 1, "b": 2})
            assert unknown["ok"] is False
            return names

    names = await asyncio.to_thread(human_commands)
    assert "chat" in names and not [n for n in names if n.startswith("mcp")]


async def test_a_server_that_cannot_start_is_left_out(persona_daemon: RunningDaemon) -> None:
    persona = await started(
        persona_daemon,
        "hopeful",
        capabilities=["chat", "mcp"],
        mcp_servers=[{"name": "broken", "command": "/nonexistent/mcp-server"}, calc_server()],
    )
    try:
        status = persona.get_status()
        assert status["state"] == "running"
        broken, calc = status["mcp_servers"]
        assert broken["name"] == "broken" and broken["state"] == "failed" and broken["tools"] == []
        assert broken["error"]
        assert calc["state"] == "connected"  # the others still work
        observation = (await ask(persona, "run:mcp.broken.add {}"))["observations"][0]
        assert (
            observation["outcome"]["code"] == "unknown_command"
            and "failed" in observation["outcome"]["message"]
        )
        assert (await ask(persona, "hello"))["reply"].startswith("echo: hello")
    finally:
        await persona.stop()


async def test_the_allow_list_limits_the_tools(persona_daemon: RunningDaemon) -> None:
    persona = await started(
        persona_daemon,
        "picky",
        capabilities=["chat", "mcp"],
        mcp_servers=[calc_server(tools=["add"])],
    )
    try:
        assert [t.name for t in persona.tools if t.name.startswith("mcp")] == ["mcp.calc.add"]
        observation = (await ask(persona, 'run:mcp.calc.echo {"text": "x"}'))["observations"][0]
        assert observation["outcome"]["code"] == "unknown_command"
    finally:
        await persona.stop()


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({"name": "Calc", "command": "x"}, "mcp_servers.0.name"),
        ({"name": "a__b", "command": "x"}, "mcp_servers.0.name"),
        ({"name": "calc"}, "either command"),
        ({"name": "calc", "command": "x", "url": "http://h/mcp"}, "either command"),
        ({"name": "calc", "command": "x", "headers": {"a": "b"}}, "headers are for"),
        ({"name": "calc", "url": "http://h/mcp", "args": ["-v"]}, "args and env"),
        ({"name": "calc", "url": "ftp://h/mcp"}, "mcp_servers.0.url"),
        ({"name": "calc", "command": "x", "timeout_s": 0}, "timeout_s"),
        ({"name": "calc", "command": "x", "timeout_s": 601}, "timeout_s"),
        ({"name": "calc", "command": "x", "cwd": "/"}, "cwd"),
    ],
)
def test_bad_server_configs_are_invalid_persona_config(server: dict[str, Any], problem: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_config({"id": "p", "mcp_servers": [server]})
    assert info.value.code == "invalid_persona_config" and problem in info.value.message


def test_server_config_shapes_and_secrets(persona_daemon: RunningDaemon) -> None:
    with pytest.raises(BadRequestError) as twice:
        parse_config({"id": "p", "mcp_servers": [calc_server(), calc_server()]})
    assert "same name" in twice.value.message
    with pytest.raises(BadRequestError) as via_api:
        PersonaDaemon({"id": "p", "mcpServers": [{"name": "x"}]}, home=persona_daemon.home)
    assert via_api.value.code == "invalid_persona_config"
    config = parse_config(
        {
            "id": "p",
            "mcpServers": [
                {
                    "name": "web",
                    "url": "https://mcp.example/mcp",
                    "headers": {"Authorization": "Bearer s3cr3t-v4lue", "X-Api-Key": "k3y-v4lue-123"},
                },
                {
                    "name": "gh",
                    "command": "gh-mcp",
                    "env": {"GITHUB_TOKEN": "ghp_0123456789", "MODE": "ro"},
                    "timeoutS": 5,
                },
            ],
        }
    )
    assert config.mcp_servers[0].timeout_s == 30 and config.mcp_servers[1].timeout_s == 5
    public = config.public()["mcp_servers"]
    assert public[0]["headers"] == {"Authorization": "***", "X-Api-Key": "***"}
    assert public[1]["env"] == {"GITHUB_TOKEN": "***", "MODE": "ro"}
    saved = PersonaStore(persona_daemon.home).create(config.model_dump(by_alias=True, exclude={"created_at"}))
    assert saved.mcp_servers[1].env["GITHUB_TOKEN"] == "ghp_0123456789"  # kept in persona.json (0600)
    from personad.privacy import redact_text

    assert redact_text("token ghp_0123456789 and k3y-v4lue-123") == "token *** and ***"


def test_native_names_map_both_ways() -> None:
    tools = [
        ToolSpec("browser_js", "", {}),
        ToolSpec("mcp.calc.add", "", {}),
        ToolSpec("mcp.web-search.find.v2", "", {}),
        ToolSpec("mcp.calc." + "x" * 80, "", {}),
        ToolSpec("mcp.calc." + "x" * 79 + "y", "", {}),
    ]
    assert native_tool_name("browser_js") == "browser_js"  # bus commands keep their names
    assert native_tool_name("mcp.calc.add") == "mcp__calc__add"
    assert native_tool_name("mcp.web-search.find.v2") == "mcp__web-search__find__v2"
    natives = [t.name for t in as_native_tools(tools)]
    assert all(NATIVE_TOOL_NAME.match(n) for n in natives) and len(set(natives)) == len(natives)
    for tool, native in zip(tools, natives, strict=True):
        assert command_for_native(native, tools) == tool.name
    assert command_for_native("mcp__ghost__x", tools) == "mcp__ghost__x"  # unknown stays unknown
    request = build_request(parse_config({"id": "p"}), [], tools=tools, native_tools=False)
    assert request.tools == []  # the line protocol lists them in the prompt, by their command names


def test_the_line_protocol_accepts_mcp_names_only() -> None:
    text, calls = command_protocol.parse(
        'ok\n[CMD:mcp.calc.add] {"a": 1}\n[CMD:mcp.web-search.getPage] {}\n'
        "[CMD:browser.js] {}\n[CMD:Mcp.x.y] {}"
    )
    assert text == "ok"
    assert [(type(c).__name__, c.name) for c in calls] == [
        ("CommandCall", "mcp.calc.add"),
        ("CommandCall", "mcp.web-search.getPage"),
        ("MalformedCall", "browser.js"),
        ("MalformedCall", "Mcp.x.y"),
    ]


def test_the_docs_example_is_a_valid_config() -> None:
    import re

    doc = (REPO / "docs" / "personas.md").read_text(encoding="utf-8")
    section = doc.split("## MCP servers for a persona", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    config = parse_config(json.loads(example))
    assert [s.name for s in config.mcp_servers] == ["calc", "search"]
    assert config.mcp_servers[1].timeout_s == 10 and config.mcp_servers[1].tools == ["find", "fetch_page"]
    assert config.public()["mcp_servers"][0]["env"] == {"CALC_API_TOKEN": "***"}


def test_a_persona_process_uses_its_mcp_server_through_the_bus(persona_daemon: RunningDaemon) -> None:
    """The supervised persona process (persona_create, start) connects and answers with the tool's result."""
    from tests.personas.conftest import reply_to, wait_for

    body = {
        "id": "calc-bot",
        "model_provider": "fake",
        "capabilities": ["chat", "mcp"],
        "memory_budget_tokens": 0,
        "mcp_servers": [calc_server(env={"PYTHONPATH": str(REPO), "CALC_API_TOKEN": "calc-t0ken-value"})],
        "start": True,
    }
    with persona_daemon.http() as http:
        created = http.post("/api/commands/persona_create", json=body).json()
        assert created["ok"], created
        shown = http.post("/api/commands/persona_show", json={"id": "calc-bot"}).json()
    assert "calc-t0ken-value" not in json.dumps(shown)  # masked when shown
    wait_for(lambda: "calc-bot" in persona_daemon.daemon.rooms.members("general"))
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        text = '@calc-bot run:mcp.calc.add {"a": 2, "b": 3}'
        sent = ws.call("chat", {"room": "general", "text": text})["result"]["message"]
        reply, _ = reply_to(ws, sent["id"])
        assert reply["sender"]["session_id"] == "calc-bot"
        assert '[RESULT:mcp.calc.add] {"result": 5.0}' in reply["text"]
        assert reply["meta"]["observations"] == 1


async def test_a_streamable_http_server(persona_daemon: RunningDaemon) -> None:
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.personas.mcp_test_server", "--http", str(port)], cwd=REPO
    )
    try:
        for _ in range(200):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/mcp"
        remote = {"name": "remote", "url": url, "headers": {"Authorization": "Bearer abc-123-secret"}}
        persona = await started(persona_daemon, "webby", capabilities=["chat", "mcp"], mcp_servers=[remote])
        try:
            (status,) = persona.get_status()["mcp_servers"]
            assert status["transport"] == "http" and status["state"] == "connected"
            reply = await ask(persona, 'run:mcp.remote.add {"a": 20, "b": 22}')
            assert reply["observations"][0]["outcome"] == {"result": 42.0}
        finally:
            await persona.stop()
        assert persona.get_status()["mcp_servers"][0]["state"] == "closed"
    finally:
        server.terminate()
        server.wait(timeout=10)
