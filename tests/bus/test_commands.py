"""The registry: built-ins and plugins register the same way."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from pydantic import BaseModel

from personad.bus.commands import BUILTIN_PLUGINS, Command, CommandRegistry, NoParams
from personad.errors import UnknownCommandError


async def _noop(ctx: Any, params: BaseModel) -> dict[str, Any]:
    """Do nothing."""
    return {}


def test_builtins_load_through_plugin_hook() -> None:
    registry = CommandRegistry()
    registry.load_plugins(entry_point_plugins=False)
    names = {c.name for c in registry}
    assert {
        "commands",
        "session",
        "chat",
        "room_join",
        "screenshot",
        "browser_js",
        "file_read",
        "job_wait",
        "mesh_acquire",
    } <= names
    assert len(BUILTIN_PLUGINS) == 10


def test_third_party_module_registers_like_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = types.ModuleType("fake_personad_plugin")

    def register(registry: CommandRegistry) -> None:
        registry.add("hello", _noop, params=NoParams, capability="greet")

    plugin.register_commands = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_personad_plugin", plugin)
    registry = CommandRegistry()
    registry.load_plugins(("fake_personad_plugin",), entry_point_plugins=False)
    command = registry.get("hello")
    assert command.capability == "greet"
    assert command.description == "Do nothing."


def test_duplicate_and_bad_names_are_refused() -> None:
    registry = CommandRegistry()
    registry.add("x", _noop, params=NoParams, capability=None)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("x", _noop, params=NoParams, capability=None)
    with pytest.raises(ValueError, match="identifier"):
        registry.register(Command("bad name", "", NoParams, None, _noop))


def test_unknown_command_error_says_how_to_fix() -> None:
    with pytest.raises(UnknownCommandError) as info:
        CommandRegistry().get("nope")
    assert info.value.code == "unknown_command"
    assert "commands" in info.value.message
    assert info.value.http_status == 404


def test_describe_includes_json_schema() -> None:
    registry = CommandRegistry()
    registry.load_plugins(entry_point_plugins=False)
    chat = next(c for c in registry.describe() if c["name"] == "chat")
    assert chat["capability"] == "chat"
    assert set(chat["params_schema"]["required"]) == {"room", "text"}
