"""Brain commands on the bus: ``remember``, ``recall``, ``brain_query``, ``goal_set``, ``goal_list``,
``goal_update``, ``persona_emotions``.

Access: a persona session reaches only its own brain (``persona`` defaults to itself); any other session needs
the ``brain`` capability. The daemon opens each brain once and shares it between commands.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.processor import CommandContext
from personad.errors import CapabilityDeniedError, ForbiddenError

CAPABILITY = "brain"


class BrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str | None = Field(default=None, description="whose brain (a persona's own session may omit it)")


class RememberParams(BrainParams):
    memory: dict[str, Any] = Field(
        description="type, content, context, importance, source, key (facts), with_persona/room_id/outcome/"
        "learned (collaboration)"
    )


class RecallParams(BrainParams):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=10, ge=1, le=100)
    filters: dict[str, Any] | None = Field(
        default=None, description="type, source, since, until, key, include_closed, as_of"
    )
    mode: Literal["hybrid", "fts", "vector"] = "hybrid"


class QueryParams(BrainParams):
    sql: str = Field(min_length=1, max_length=20_000, description="read-only SQL (SELECT, WITH …)")
    params: list[Any] | dict[str, Any] = Field(default_factory=list)


class GoalSetParams(BrainParams):
    description: str = Field(min_length=1, max_length=2000)
    priority: float = Field(default=0.5, ge=0, le=1)


class GoalListParams(BrainParams):
    status: str | None = None


class EmotionsParams(BrainParams):
    limit: int = Field(default=10, ge=1, le=100)


class GoalUpdateParams(BrainParams):
    goal_id: str
    status: str | None = None
    progress: float | None = Field(default=None, ge=0, le=1)
    priority: float | None = Field(default=None, ge=0, le=1)
    description: str | None = None


def _whose(ctx: CommandContext, persona: str | None) -> str:
    """The persona whose brain this session may use, or a capability/permission error."""
    session = ctx.session
    if session.kind == "persona":
        if persona not in (None, session.id):
            raise ForbiddenError(
                f"persona {session.id!r} may reach only its own brain, not {persona!r}", code="not_your_brain"
            )
        return session.id
    if not session.can(CAPABILITY):
        raise CapabilityDeniedError(f"session {session.id!r} lacks capability 'brain' needed to use a brain")
    if persona is None:
        raise ForbiddenError("name the persona whose brain to use", code="invalid_params")
    ctx.daemon.persona_store.load(persona)  # persona_not_found for unknown ids
    return persona


async def _run(ctx: CommandContext, persona: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
    brain = ctx.daemon.brain(_whose(ctx, persona))
    return await asyncio.to_thread(getattr(brain, method), *args, **kwargs)


async def remember(ctx: CommandContext, params: RememberParams) -> dict[str, Any]:
    """Store a memory in a persona's brain.

    Returns `{"id", "created", "closed"}`: `created` is false when the same memory was already there; `closed`
    lists older facts with the same `key` that this one superseded (kept, with `valid_to` set).
    """
    return await _run(ctx, params.persona, "remember", params.memory)


async def recall(ctx: CommandContext, params: RecallParams) -> dict[str, Any]:
    """Hybrid search of a persona's brain (full text + embeddings + recency + importance, fused).

    Returns `{"memories": [{id, type, content, context, importance, source, key, timestamp, valid_from,
    valid_to, score, ranks}]}`.
    """
    found = await _run(
        ctx, params.persona, "recall", params.query, params.k, params.filters, mode=params.mode
    )
    return {"memories": found}


async def brain_query(ctx: CommandContext, params: QueryParams) -> dict[str, Any]:
    """Run read-only SQL on a persona's brain (a read-only connection and an authorizer enforce it).

    Returns `{"rows": [...]}`; writes are refused with `read_only`.
    """
    return {"rows": await _run(ctx, params.persona, "query", params.sql, params.params)}


async def goal_set(ctx: CommandContext, params: GoalSetParams) -> dict[str, Any]:
    """Add a goal to a persona's brain. Returns the goal."""
    return await _run(ctx, params.persona, "goal_set", params.description, params.priority)


async def goal_list(ctx: CommandContext, params: GoalListParams) -> dict[str, Any]:
    """A persona's goals, optionally by status. Returns `{"goals": [...]}`."""
    return {"goals": await _run(ctx, params.persona, "goal_list", params.status)}


async def goal_update(ctx: CommandContext, params: GoalUpdateParams) -> dict[str, Any]:
    """Change a goal's status (active, done, abandoned, blocked), progress, priority or description."""
    return await _run(
        ctx,
        params.persona,
        "goal_update",
        params.goal_id,
        status=params.status,
        progress=params.progress,
        priority=params.priority,
        description=params.description,
    )


async def persona_emotions(ctx: CommandContext, params: EmotionsParams) -> dict[str, Any]:
    """A persona's latest emotions, newest first (read-only).

    Returns `{"emotions": [{id, label, valence, arousal, cause, timestamp}]}`.
    """
    return {"emotions": await _run(ctx, params.persona, "emotions", params.limit)}


def register_commands(registry: CommandRegistry) -> None:
    # The capability is checked in _whose: a persona's own brain needs none, anyone else's needs 'brain'.
    registry.add("remember", remember, params=RememberParams, capability=None)
    registry.add("recall", recall, params=RecallParams, capability=None)
    registry.add("brain_query", brain_query, params=QueryParams, capability=None)
    registry.add("goal_set", goal_set, params=GoalSetParams, capability=None)
    registry.add("goal_list", goal_list, params=GoalListParams, capability=None)
    registry.add("goal_update", goal_update, params=GoalUpdateParams, capability=None)
    registry.add("persona_emotions", persona_emotions, params=EmotionsParams, capability=None)
