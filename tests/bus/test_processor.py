"""The CommandProcessor through its Python API: validate, authorise, run, record, publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from personad import CommandContext, CommandRegistry, Daemon, Settings
from personad.bus.commands import NoParams
from personad.errors import CapabilityDeniedError, InternalError, InvalidParamsError


class AddParams(BaseModel):
    a: int
    b: int = 0


async def add(ctx: CommandContext, params: AddParams) -> dict[str, Any]:
    """Add two numbers."""
    return {"sum": params.a + params.b}


async def explode(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """Always fails with a bug."""
    raise ZeroDivisionError("secret internals")


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    registry = CommandRegistry()
    registry.load_plugins(entry_point_plugins=False)
    registry.add("add", add, params=AddParams, capability="math")
    registry.add("explode", explode, params=NoParams, capability=None)
    d = Daemon(Settings(home=tmp_path / "home"), registry=registry)
    await d.start()
    yield d
    await d.stop()


async def test_runs_validates_and_records(daemon: Daemon) -> None:
    session = daemon.sessions.open(kind="api", session_id="s1")
    seen: list[tuple[str, dict[str, Any]]] = []
    daemon.events.subscribe(lambda event, data: seen.append((event, data)))
    assert await daemon.execute(session, "add", {"a": "2", "b": 3}, request_id="q") == {"sum": 5}
    with pytest.raises(InvalidParamsError) as info:
        await daemon.execute(session, "add", {"b": 1})
    assert info.value.details[0]["loc"] == ["a"]
    with pytest.raises(InvalidParamsError):
        await daemon.execute(session, "add", ["not", "an", "object"])
    lines = [json.loads(x) for x in (session.directory / "commands.jsonl").read_text().splitlines()]
    assert [(e["command"], e["ok"]) for e in lines] == [("add", True), ("add", False), ("add", False)]
    assert lines[0]["result"] == {"sum": 5} and lines[0]["request_id"] == "q"
    assert lines[1]["error"]["code"] == "invalid_params"
    completed = [d for e, d in seen if e == "command_completed"]
    assert [d["ok"] for d in completed] == [True, False, False]


async def test_capabilities_are_checked(daemon: Daemon) -> None:
    limited = daemon.sessions.open(kind="api", session_id="limited", capabilities=["chat"])
    with pytest.raises(CapabilityDeniedError) as info:
        await daemon.execute(limited, "add", {"a": 1})
    assert "math" in info.value.message
    # Commands without a capability (introspection) stay available.
    listed = await daemon.execute(limited, "commands")
    allowed = {c["name"]: c["allowed"] for c in listed["commands"]}
    assert allowed["add"] is False and allowed["chat"] is True and allowed["commands"] is True


async def test_handler_bug_becomes_internal_error_without_internals(daemon: Daemon) -> None:
    session = daemon.sessions.open(kind="api")
    with pytest.raises(InternalError) as info:
        await daemon.execute(session, "explode")
    assert "secret internals" not in info.value.message
    assert info.value.http_status == 500


async def test_large_values_are_clipped_in_the_log(daemon: Daemon) -> None:
    session = daemon.sessions.open(kind="api", session_id="big")
    await daemon.execute(session, "ping", {"echo": "x" * 100_000})
    entry = json.loads((session.directory / "commands.jsonl").read_text())
    assert entry["params"]["truncated"] is True
    assert len(json.dumps(entry)) < 20_000
