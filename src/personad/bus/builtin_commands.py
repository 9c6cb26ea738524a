"""Introspection commands every session may run: ``commands``, ``session``, ``ping``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.processor import CommandContext


class PingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    echo: Any = Field(default=None, description="returned unchanged")


async def list_commands(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """List every command with its params JSON schema and the capability it needs.

    Returns `{"commands": [{name, description, capability, params_schema, allowed}]}`; `allowed` says whether
    this session holds the capability.
    """
    commands = ctx.daemon.registry.describe()
    for entry in commands:
        entry["allowed"] = ctx.session.can(entry["capability"])
    return {"commands": commands}


async def describe_session(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """Who am I: client id, session id and kind, capabilities, session directory.

    Returns `{session_id, client_id, kind, name, capabilities, directory, artifacts_dir, clients}`.
    """
    return ctx.session.describe(ctx.client_id)


async def ping(ctx: CommandContext, params: PingParams) -> dict[str, Any]:
    """Do nothing and answer; the bus round-trip benchmark runs this.

    Returns `{"pong": true, "echo": <echo>}`.
    """
    return {"pong": True, "echo": params.echo}


def register_commands(registry: CommandRegistry) -> None:
    registry.add("commands", list_commands, params=NoParams, capability=None)
    registry.add("session", describe_session, params=NoParams, capability=None)
    registry.add("ping", ping, params=PingParams, capability=None)
