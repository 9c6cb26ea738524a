"""The command shape and the registry every command (built-in or plugin) registers through."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from personad.errors import UnknownCommandError

if TYPE_CHECKING:
    from personad.bus.processor import CommandContext

P = TypeVar("P", bound=BaseModel)
Handler = Callable[["CommandContext", P], Awaitable[dict[str, Any]]]

PLUGIN_ENTRY_POINT_GROUP = "personad.plugins"

# Built-ins are ordinary plugins: each module has ``register_commands(registry)``, exactly what a
# third-party module exposes through the ``personad.plugins`` entry point group or ``PERSONAD_PLUGINS``.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "personad.bus.builtin_commands",
    "personad.bus.job_commands",
    "personad.rooms.commands",
    "personad.files.commands",
    "personad.browser.commands",
    "personad.personas.commands",
    "personad.brain.commands",
    "personad.lora.commands",
    "personad.academy.commands",
    "personad.mesh.commands",
)


class NoParams(BaseModel):
    """Params model for commands that take none; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Command(Generic[P]):
    """One command: its name, what it does, its params schema, the capability it needs, its handler.

    ``capability=None`` means any authenticated session may run it (introspection such as ``commands``).
    """

    name: str
    description: str
    params: type[P]
    capability: str | None
    handler: Handler[P]
    # The result holds a secret (a token, a key): never written to the session's commands.jsonl.
    secret_result: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "capability": self.capability,
            "params_schema": self.params.model_json_schema(),
        }


class CommandRegistry:
    """Name → Command. The only way commands reach the processor."""

    def __init__(self) -> None:
        self._commands: dict[str, Command[Any]] = {}

    def register(self, command: Command[Any]) -> Command[Any]:
        if not command.name.isidentifier():
            raise ValueError(f"command name {command.name!r} must be an identifier")
        if command.name in self._commands:
            raise ValueError(f"command {command.name!r} is already registered")
        self._commands[command.name] = command
        return command

    def add(
        self,
        name: str,
        handler: Handler[P],
        *,
        params: type[P],
        capability: str | None,
        description: str | None = None,
        secret_result: bool = False,
    ) -> Command[P]:
        """Register ``handler`` as ``name``; the description defaults to the docstring's first line."""
        text = description or (handler.__doc__ or name).strip().splitlines()[0]
        return self.register(Command(name, text, params, capability, handler, secret_result))

    def get(self, name: str) -> Command[Any]:
        try:
            return self._commands[name]
        except KeyError:
            raise UnknownCommandError(
                f"unknown command {name!r}; run the 'commands' command to list what this daemon offers"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[Command[Any]]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._commands)

    def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self]

    def load_plugins(
        self, modules: tuple[str, ...] = BUILTIN_PLUGINS, *, entry_point_plugins: bool = True
    ) -> None:
        """Register the built-ins, ``PERSONAD_PLUGINS`` modules, then ``personad.plugins`` entry points.

        A plugin module may define ``register_commands(registry)``, ``register_providers(registry)`` or both;
        only the first concerns this registry.
        """
        from personad.models.registry import plugin_modules

        for module_name in (*modules, *plugin_modules()):
            hook = getattr(importlib.import_module(module_name), "register_commands", None)
            if hook is not None:
                hook(self)
        if entry_point_plugins:
            for ep in entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
                hook = getattr(ep.load(), "register_commands", None)
                if hook is not None:
                    hook(self)
