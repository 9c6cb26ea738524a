"""Persona lifecycle on the bus: ``persona_create``, ``persona_list``, ``persona_show``, ``persona_start``,
``persona_stop``, ``persona_delete``. The CLI's ``personad persona …`` verbs run these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.processor import CommandContext
from personad.errors import ForbiddenError
from personad.personas.checks import check_persona
from personad.personas.config import PersonaConfig

CAPABILITY = "personas"


class PersonaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str = Field(description="persona id")


class PersonaCreateParams(PersonaConfig):
    """Every persona.json field, plus the shortcuts below."""

    model: str | None = Field(default=None, description="the provider's model id (into model_config)")
    start: bool = Field(default=False, description="start it right away")


def _describe(ctx: CommandContext, persona_id: str) -> dict[str, Any]:
    config = ctx.daemon.persona_store.load(persona_id)
    return {**config.public(), "process": ctx.daemon.personas.status(persona_id)}


async def persona_create(ctx: CommandContext, params: PersonaCreateParams) -> dict[str, Any]:
    """Create a persona: writes <home>/personas/<id>/persona.json.

    Returns the persona (secrets masked) with its process status; `persona_exists` if the id is taken.
    """
    data = params.model_dump(by_alias=True, exclude={"model", "start", "created_at"})
    if params.model is not None:
        data["model_config"] = {**data["model_config"], "model": params.model}
    daemon = ctx.daemon
    # Unknown providers, adapters not in the registry and stacks the provider cannot apply fail here.
    config = daemon.persona_store.create(
        data, check=lambda c: check_persona(c, home=daemon.home, providers=daemon.providers)
    )
    ctx.daemon.events.publish("persona_created", {"persona": config.id})
    if params.start:
        await ctx.daemon.personas.start(config.id)
    return _describe(ctx, config.id)


async def persona_list(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """List personas with their process status.

    Returns `{"personas": [{id, name, model_provider, lora_adapters, capabilities, …, "process": {state, pid,
    restarts, started_at, last_exit}}]}`.
    """
    return {"personas": [_describe(ctx, c.id) for c in ctx.daemon.persona_store.list_personas()]}


async def persona_show(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """One persona's config (secrets masked) and process status."""
    return _describe(ctx, params.persona)


async def persona_start(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Start the persona's process and wait until it has joined the bus.

    Returns the persona with `process.state` = running; the process is restarted with backoff if it dies.
    """
    await ctx.daemon.personas.start(params.persona)
    ctx.daemon.events.publish("persona_started", {"persona": params.persona})
    return _describe(ctx, params.persona)


async def persona_stop(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Stop the persona's process (SIGTERM, then SIGKILL after 10 s)."""
    ctx.daemon.persona_store.load(params.persona)
    await ctx.daemon.personas.stop(params.persona)
    ctx.daemon.events.publish("persona_stopped", {"persona": params.persona})
    return _describe(ctx, params.persona)


async def persona_delete(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Stop the persona and delete its directory (config, artifacts, logs).

    Returns `{"deleted": id}`.
    """
    ctx.daemon.persona_store.load(params.persona)
    await ctx.daemon.personas.stop(params.persona)
    ctx.daemon.forget_brain(params.persona)
    ctx.daemon.persona_store.delete(params.persona)
    ctx.daemon.events.publish("persona_deleted", {"persona": params.persona})
    return {"deleted": params.persona}


async def persona_ready(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """A persona process says it has joined its rooms and is answering (persona sessions only).

    Returns `{"persona": id}`; `persona_start` waits for this.
    """
    if ctx.session.kind != "persona":
        raise ForbiddenError("only a persona session can report itself ready", code="not_a_persona")
    ctx.daemon.personas.mark_ready(ctx.session.id)
    return {"persona": ctx.session.id}


async def persona_model_config(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """The provider and settings a persona session's model runs with (persona sessions only, for
    themselves): for the local provider the inference worker's socket and token, starting the worker.

    What the Python API's `PersonaDaemon.start()` uses to answer with the local model out of the box.
    Returns `{"provider", "model_config"}`; the result is never written to the command log.
    """
    if ctx.session.kind != "persona":
        raise ForbiddenError("only a persona session can ask for its model settings", code="not_a_persona")
    config = ctx.daemon.persona_store.load(ctx.session.id)
    return {
        "provider": config.model_provider,
        "model_config": await ctx.daemon.personas.provider_config(config),
    }


def register_commands(registry: CommandRegistry) -> None:
    registry.add("persona_ready", persona_ready, params=NoParams, capability=None)
    registry.add(
        "persona_model_config", persona_model_config, params=NoParams, capability=None, secret_result=True
    )
    registry.add("persona_create", persona_create, params=PersonaCreateParams, capability=CAPABILITY)
    registry.add("persona_list", persona_list, params=NoParams, capability=CAPABILITY)
    registry.add("persona_show", persona_show, params=PersonaParams, capability=CAPABILITY)
    registry.add("persona_start", persona_start, params=PersonaParams, capability=CAPABILITY)
    registry.add("persona_stop", persona_stop, params=PersonaParams, capability=CAPABILITY)
    registry.add("persona_delete", persona_delete, params=PersonaParams, capability=CAPABILITY)
