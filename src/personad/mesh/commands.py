"""Mesh commands on the bus: ``mesh_status``, ``mesh_peers``, ``mesh_skills``, ``mesh_invite``, ``mesh_join``,
``mesh_broadcast``, ``mesh_acquire``, ``mesh_persona_status``, ``mesh_rotate_key``.

Reading needs nothing; everything that changes what this node shares, fetches or trusts needs the
``mesh`` capability. ``mesh_acquire`` is a job (transfers take time): its id comes back at once, progress
comes as ``job_progress`` and ``mesh_transfer_progress`` events. With the mesh off, each answers
``mesh_disabled`` (start the daemon with ``--mesh``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.jobs import JobReporter
from personad.bus.processor import CommandContext

from .errors import SkillNotFoundError
from .service import MeshService, _reporter_progress

CAPABILITY = "mesh"
SkillName = Field(min_length=1, max_length=200, description="a skill id or adapter name")


class InviteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_s: float = Field(
        default=24 * 3600, ge=60, le=30 * 24 * 3600, description="how long the code is valid"
    )


class JoinParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(
        min_length=8,
        max_length=2000,
        description="from `personad mesh invite` on a peer",
        json_schema_extra={"secret": True},
    )


class BroadcastParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adapter: str = Field(
        min_length=1, max_length=200, description="a registered adapter to seed and announce"
    )
    skill: str | None = Field(
        default=None, min_length=1, max_length=120, description="skill id (default: adapter)"
    )
    persona: str = Field(default="", max_length=64, description="the persona that learned it")
    metrics: dict[str, Any] | None = Field(
        default=None, description="measured metrics to announce (default: the manifest's effectiveness/exam)"
    )
    exam: str | None = Field(
        default=None, max_length=64, description="measure it with this mesh exam first (e.g. probe-kl)"
    )


class AcquireParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skill: str = SkillName
    wait_s: float = Field(
        default=10.0, ge=0, le=300, description="how long to wait for a trusted peer to announce it"
    )
    persona: str | None = Field(
        default=None, description="load it into this persona's stack (own session: omit)"
    )


class PersonaStatusParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str = Field(min_length=1, max_length=64)
    status: str = Field(min_length=1, max_length=32, description="e.g. graduated")
    ready_for_deployment: bool = False
    specializations: list[str] = Field(default_factory=list, max_length=16)


def mesh_of(ctx: CommandContext) -> MeshService:
    return ctx.daemon.mesh


async def mesh_status(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """This node on the mesh: key, address, peers, what it seeds and knows. `{"enabled": false}` when off."""
    service = mesh_of(ctx)
    if not service.enabled:
        return {"enabled": False}
    return service.node.status()


async def mesh_peers(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """Known peers with their trust score, address, how we learned of them, and score history."""
    return {"peers": mesh_of(ctx).node.peers()}


async def mesh_skills(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """Skills announced on the mesh (verified announcements), with seeders and demand."""
    return {"skills": mesh_of(ctx).node.skills()}


async def mesh_invite(ctx: CommandContext, params: InviteParams) -> dict[str, Any]:
    """A one-time invite code for another daemon: `personad mesh join CODE` there."""
    node = mesh_of(ctx).node
    return {"code": node.invite(params.ttl_s), "addr": node.addr, "node": node.node_id}


async def mesh_join(ctx: CommandContext, params: JoinParams) -> dict[str, Any]:
    """Join the mesh of the node that made the invite code."""
    return await mesh_of(ctx).node.join(params.code)


async def mesh_broadcast(ctx: CommandContext, params: BroadcastParams) -> dict[str, Any]:
    """Seed a registered adapter and announce it, signed by this node (the seed's broadcastCapability)."""
    ann = await mesh_of(ctx).node.broadcast_capability(
        params.adapter, skill=params.skill, persona=params.persona, metrics=params.metrics, exam=params.exam
    )
    return {"announcement": ann.to_dict()}


async def mesh_acquire(ctx: CommandContext, params: AcquireParams) -> dict[str, Any]:
    """Acquire a skill (the seed's acquireSkill): download its adapter chain from the swarm, verify it,
    register it and load it into the persona's stack. A job: returns `{"job": ...}` at once."""
    session = ctx.session
    persona = params.persona
    if session.kind == "persona" and persona in (None, session.id):
        persona = session.id
    service = mesh_of(ctx)
    await _announced(service, params.skill, params.wait_s)  # an unknown skill is an error now, not a job
    if persona is not None:
        ctx.daemon.persona_store.load(persona)

    async def work(reporter: JobReporter) -> dict[str, Any]:
        return await service.acquire(params.skill, persona, session.id, progress=_reporter_progress(reporter))

    return ctx.start_job(work, title=f"acquire {params.skill}", exclusive=False)


async def _announced(service: MeshService, skill: str, wait_s: float) -> None:
    """Return once a trusted peer lists ``skill`` (directory reads come every ``mesh_poll_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            service.node.find(skill)
            return
        except SkillNotFoundError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)


async def mesh_persona_status(ctx: CommandContext, params: PersonaStatusParams) -> dict[str, Any]:
    """Publish a persona's mesh status (the seed's updatePersonaStatus), e.g. graduated + specializations."""
    ctx.daemon.persona_store.load(params.persona)
    return await mesh_of(ctx).node.update_persona_status(
        params.persona,
        status=params.status,
        ready_for_deployment=params.ready_for_deployment,
        specializations=params.specializations,
    )


async def mesh_rotate_key(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """Replace this node's key; peers follow the signed retirement and refuse the old key from then on."""
    return await mesh_of(ctx).node.rotate_key()


def register_commands(registry: CommandRegistry) -> None:
    registry.add("mesh_status", mesh_status, params=NoParams, capability=None)
    registry.add("mesh_peers", mesh_peers, params=NoParams, capability=None)
    registry.add("mesh_skills", mesh_skills, params=NoParams, capability=None)
    registry.add("mesh_invite", mesh_invite, params=InviteParams, capability=CAPABILITY, secret_result=True)
    registry.add("mesh_join", mesh_join, params=JoinParams, capability=CAPABILITY)
    registry.add("mesh_broadcast", mesh_broadcast, params=BroadcastParams, capability=CAPABILITY)
    registry.add("mesh_acquire", mesh_acquire, params=AcquireParams, capability=CAPABILITY)
    registry.add(
        "mesh_persona_status", mesh_persona_status, params=PersonaStatusParams, capability=CAPABILITY
    )
    registry.add("mesh_rotate_key", mesh_rotate_key, params=NoParams, capability=CAPABILITY)
