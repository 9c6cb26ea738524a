"""Persona lifecycle on the bus: ``persona_create``, ``persona_list``, ``persona_show``, ``persona_update``,
``persona_logs``, ``persona_start``, ``persona_stop``, ``persona_delete``. The CLI's ``personad persona …``
verbs and the page's Personas view run these."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.processor import CommandContext
from personad.errors import ForbiddenError, InvalidParamsError, PersonadError
from personad.personas.checks import check_persona
from personad.personas.config import PersonaConfig
from personad.privacy import MASK, SECRET_KEY, redact_params, redact_text

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
    ctx.daemon.events.broadcast("persona_created", {"persona": config.id})
    if params.start:
        await ctx.daemon.personas.start(config.id)
    return _describe(ctx, config.id)


async def persona_list(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """List personas with their process status.

    Returns `{"personas": [{id, name, model_provider, lora_adapters, capabilities, …, "process": {state, pid,
    restarts, started_at, last_exit}}]}`.
    """
    return {"personas": [_describe(ctx, c.id) for c in ctx.daemon.persona_store.list_personas()]}


def _show(ctx: CommandContext, persona_id: str) -> dict[str, Any]:
    """The persona with its adapter stack as the model applies it: parents first, each once."""
    described = _describe(ctx, persona_id)
    names = described["lora_adapters"]
    stack: dict[str, Any] = {"resolved": [], "error": None}
    if names:
        from personad.lora.registry import AdapterRegistry

        try:
            stack["resolved"] = [e.name for e in AdapterRegistry.for_home(ctx.daemon.home).resolve(names)]
        except PersonadError as exc:  # an adapter deleted since: say so rather than fail the whole view
            stack["error"] = exc.to_dict()
    return {**described, "stack": stack}


async def persona_show(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """One persona's config (secrets masked) and process status.

    Returns the persona.json fields, `process` {state, pid, restarts, started_at, last_exit} and `stack`
    {resolved: its adapters with their parents in application order, error: why it does not resolve}.
    """
    return _show(ctx, params.persona)


# -- persona_update ---------------------------------------------------------------------------------------

# What a running persona process reads only when it starts; everything else it re-reads on
# persona_config_changed (PersonaDaemon.reload_config replaces its whole config, and the system prompt, role,
# secret, sampling settings, adapter stack, respond_in, history and command steps are read per answer).
START_ONLY_FIELDS = frozenset(
    {
        "model_provider",  # the provider object is built once
        "model_config",  # handed to the process at spawn (PERSONAD_MODEL_CONFIG) and built into the provider
        "capabilities",  # granted to its bus session when that session opens
        "name",  # the name its session (and so its chat messages) carries, set when the session opens
        "rooms",  # joined on start
        "memory_budget_tokens",  # its memory object is built with it
        "mcp_servers",  # connected on start
        "evolve_every_s",  # the periodic evolve task is started with it
        "session_directory",  # where its session, logs and brain are
        "database_path",
    }
)
READ_ONLY_FIELDS = ("id", "created_at")


def _field_keys() -> dict[str, str]:
    """Every key persona.json accepts for a field (ours, the seed's camelCase, aliases) → the key it is
    saved under, so a change given as ``systemPrompt`` replaces the stored ``system_prompt``."""
    keys: dict[str, str] = {}
    for name, info in PersonaConfig.model_fields.items():
        saved = info.alias or name
        accepted = {name, saved, to_camel(name)}
        if isinstance(info.validation_alias, AliasChoices):
            accepted |= {c for c in info.validation_alias.choices if isinstance(c, str)}
        for key in accepted:
            keys[key] = saved
    return keys


FIELD_KEYS = _field_keys()


class PersonaUpdateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str = Field(description="persona id")
    changes: dict[str, Any] = Field(
        min_length=1,
        description="persona.json fields to change (snake_case or the seed's camelCase, as persona_create"
        " takes them), plus `model` for model_config.model; a field left out is unchanged. The masked"
        " value `***` that persona_show returns for a secret keeps the stored one; `id` cannot change",
    )


def _invalid(message: str, problems: list[dict[str, Any]]) -> InvalidParamsError:
    return InvalidParamsError(f"invalid params for 'persona_update': {message}", details=problems)


def _unmask(value: Any, stored: Any, secret: bool) -> Any:
    """``value`` with every masked secret (``***``, what persona_show shows) put back to the stored one:
    a client that sends back what it was shown must not overwrite a key with the mask."""
    if isinstance(value, dict) and isinstance(stored, dict):
        return {
            k: _unmask(v, stored.get(k), secret or (isinstance(k, str) and SECRET_KEY.search(k) is not None))
            for k, v in value.items()
        }
    if value == MASK and secret:
        return stored
    return value


def _normalised_changes(current: PersonaConfig, persona_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes under persona.json's own keys, masks put back; bad keys refused with per-field details."""
    stored = current.model_dump(by_alias=True)
    out: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for key, value in changes.items():
        if key == "model":
            continue  # below, once model_config (if given) is in
        field = FIELD_KEYS.get(key)
        if field is None:
            problems.append(
                {"loc": ["changes", key], "msg": "not a persona.json field", "type": "extra_forbidden"}
            )
        elif field in READ_ONLY_FIELDS and value != stored[field]:
            problems.append(
                {"loc": ["changes", key], "msg": f"{field} cannot be changed", "type": "read_only"}
            )
        elif field == "secret" and value == MASK:
            continue  # the mask persona_show returned: unchanged
        elif field == "model_config" and isinstance(value, dict):
            out[field] = _unmask(value, stored["model_config"], False)
        elif field == "mcp_servers" and isinstance(value, list):
            by_name = {s["name"]: s for s in stored["mcp_servers"]}
            out[field] = [
                _unmask(s, by_name.get(s.get("name")), False) if isinstance(s, dict) else s for s in value
            ]
        else:
            out[field] = value
    if "model" in changes:  # the shortcut persona_create has too: model_config.model, the rest kept
        out["model_config"] = {**out.get("model_config", stored["model_config"]), "model": changes["model"]}
    if problems:
        summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
        raise _invalid(summary, problems)
    if out.get("id") == persona_id:
        del out["id"]
    out.pop("created_at", None)
    return out


async def persona_update(ctx: CommandContext, params: PersonaUpdateParams) -> dict[str, Any]:
    """Change fields of a persona's config (persona.json), checked as persona_create checks a new one:
    types and bounds (`invalid_params` with per-field `details`, loc `["changes", field]`), an unknown
    provider (`unknown_provider`), adapters not in the registry (`adapter_not_found`) or a stack the provider
    cannot apply (`adapters_unsupported`). Nothing is saved unless every check passes.

    A running persona re-reads its config at once (system prompt, role, secret, sampling, adapter stack,
    respond_in, …); fields read only at start (provider, model_config, capabilities, name, rooms, memory
    budget, MCP servers, evolve_every_s, paths) apply from its next start.
    Returns the persona as persona_show does, plus `changed` (the fields whose value changed) and
    `restart_needed` (true when it is running and one of those fields is read only at start).
    """
    store = ctx.daemon.persona_store
    daemon = ctx.daemon
    persona_id = params.persona
    current = store.load(persona_id)  # persona_not_found
    changes = _normalised_changes(current, persona_id, params.changes)
    merged = {**current.model_dump(by_alias=True), **changes, "id": persona_id}
    try:
        candidate = PersonaConfig.model_validate(merged)
    except ValidationError as exc:
        problems = [
            {"loc": ["changes", *(str(p) for p in err["loc"])], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise _invalid("; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems), problems) from None
    check_persona(candidate, home=daemon.home, providers=daemon.providers)
    saved = store.update(persona_id, changes)
    before, after = current.model_dump(by_alias=True), saved.model_dump(by_alias=True)
    changed = sorted(k for k in after if before.get(k) != after.get(k))
    running = daemon.personas.status(persona_id).get("state") in ("starting", "running", "backoff")
    if changed:
        # A running persona holds its config in memory: tell it to re-read the file.
        daemon.events.publish("persona_config_changed", {"persona": persona_id}, to=[persona_id])
        daemon.events.broadcast("persona_updated", {"persona": persona_id, "changed": changed})
    return {
        **_show(ctx, persona_id),
        "changed": changed,
        "restart_needed": running and any(k in START_ONLY_FIELDS for k in changed),
    }


# -- persona_logs -----------------------------------------------------------------------------------------

TAIL_BYTES = 1 << 20  # never read more than the last MiB of a log, however long it grew


class PersonaLogsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str = Field(description="persona id")
    lines: int = Field(default=100, ge=0, le=2000, description="last lines of process.log and crashes.log")
    commands: int = Field(default=20, ge=0, le=500, description="last records of its commands.jsonl")


def _tail(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (none if it is missing), reading backwards from its end."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            data = b""
            position = size
            while position > 0 and data.count(b"\n") <= count and size - position < TAIL_BYTES:
                step = min(64 * 1024, position)
                position -= step
                fh.seek(position)
                data = fh.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if position > 0 and lines:
        lines = lines[1:]  # the first line read is cut: it began before the block
    return lines[-count:]


async def persona_logs(ctx: CommandContext, params: PersonaLogsParams) -> dict[str, Any]:
    """What a persona did lately: the tail of its process log (its stdout and stderr), of its crash log, and
    the last commands its session ran (from its commands.jsonl). Tokens, keys and its secret are masked.

    Returns `{"persona", "process_log": [lines], "crashes": [lines], "commands": [{ts, command, params, ok,
    duration_ms, result | error}]}`, oldest first; a file not written yet gives an empty list.
    """
    config = ctx.daemon.persona_store.load(params.persona)
    folder = ctx.daemon.persona_store.session_dir(params.persona)

    def mask(text: str) -> str:
        # Registered secrets (tokens, API keys) and token-looking text; its canary too, which is no token.
        text = redact_text(text)
        return text.replace(config.secret, MASK) if config.secret else text

    def mask_all(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask_all(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask_all(v) for v in value]
        return mask(value) if isinstance(value, str) else value

    def read() -> dict[str, Any]:
        records: list[Any] = []
        for line in _tail(folder / "commands.jsonl", params.commands):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now, or cut: not a record yet
        return {
            "persona": config.id,
            "process_log": [mask(x) for x in _tail(folder / "logs" / "process.log", params.lines)],
            "crashes": [mask(x) for x in _tail(folder / "logs" / "crashes.log", params.lines)],
            # Recorded masked already; masked again for secrets registered since (and keys that name one).
            "commands": [mask_all(redact_params(r)) for r in records],
        }

    return await asyncio.to_thread(read)


async def persona_start(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Start the persona's process and wait until it has joined the bus.

    Returns the persona with `process.state` = running; the process is restarted with backoff if it dies.
    """
    await ctx.daemon.personas.start(params.persona)
    ctx.daemon.events.broadcast("persona_started", {"persona": params.persona})
    return _describe(ctx, params.persona)


async def persona_stop(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Stop the persona's process (SIGTERM, then SIGKILL after 10 s)."""
    ctx.daemon.persona_store.load(params.persona)
    await ctx.daemon.personas.stop(params.persona)
    ctx.daemon.events.broadcast("persona_stopped", {"persona": params.persona})
    return _describe(ctx, params.persona)


async def persona_delete(ctx: CommandContext, params: PersonaParams) -> dict[str, Any]:
    """Stop the persona and delete its directory (config, artifacts, logs).

    Returns `{"deleted": id}`.
    """
    ctx.daemon.persona_store.load(params.persona)
    await ctx.daemon.personas.stop(params.persona)
    ctx.daemon.forget_brain(params.persona)
    ctx.daemon.persona_store.delete(params.persona)
    ctx.daemon.events.broadcast("persona_deleted", {"persona": params.persona})
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
    registry.add("persona_update", persona_update, params=PersonaUpdateParams, capability=CAPABILITY)
    registry.add("persona_logs", persona_logs, params=PersonaLogsParams, capability=CAPABILITY)
    registry.add("persona_start", persona_start, params=PersonaParams, capability=CAPABILITY)
    registry.add("persona_stop", persona_stop, params=PersonaParams, capability=CAPABILITY)
    registry.add("persona_delete", persona_delete, params=PersonaParams, capability=CAPABILITY)
