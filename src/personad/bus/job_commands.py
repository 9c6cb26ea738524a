"""Job commands: ``job_status``, ``job_list``, ``job_wait``, ``job_cancel`` (see :mod:`personad.bus.jobs`).

A session reaches the jobs it started; the ``jobs`` capability reaches every session's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.jobs import FINISHED, Job, JobNotFoundError
from personad.bus.processor import CommandContext
from personad.errors import CapabilityDeniedError

CAPABILITY = "jobs"
MAX_WAIT_S = 300.0


class JobParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(min_length=1, max_length=64, description="the id a long command returned")


class JobWaitParams(JobParams):
    timeout: float = Field(
        default=30.0, ge=0, le=MAX_WAIT_S, description="seconds to wait for it to finish (0: just look)"
    )


class JobListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["active", "finished", "all"] = Field(
        default="all", description="active = queued or running"
    )
    every_session: bool = Field(default=False, description="every session's jobs (needs 'jobs')")
    limit: int = Field(default=50, ge=1, le=500)


def _visible(ctx: CommandContext, job_id: str) -> Job:
    job = ctx.daemon.jobs.get(job_id)
    if job.session_id != ctx.session.id and not ctx.session.can(CAPABILITY):
        # Someone else's job is as good as absent: its id says nothing about whether it exists.
        raise JobNotFoundError(f"no job {job_id!r}; 'job_list' shows the jobs you may see")
    return job


async def job_status(ctx: CommandContext, params: JobParams) -> dict[str, Any]:
    """A job's state and progress, and its result or error once finished. Returns `{"job": {...}}`."""
    return {"job": _visible(ctx, params.job_id).describe()}


async def job_wait(ctx: CommandContext, params: JobWaitParams) -> dict[str, Any]:
    """Wait up to `timeout` seconds for a job to finish. Returns `{"job": {...}}` as it is then."""
    _visible(ctx, params.job_id)
    job = await ctx.daemon.jobs.wait(params.job_id, params.timeout)
    return {"job": job.describe()}


async def job_cancel(ctx: CommandContext, params: JobParams) -> dict[str, Any]:
    """Stop a queued or running job (its child process is killed). Returns `{"job": {...}}`."""
    _visible(ctx, params.job_id)
    job = await ctx.daemon.jobs.cancel(params.job_id)
    return {"job": job.describe()}


async def job_list(ctx: CommandContext, params: JobListParams) -> dict[str, Any]:
    """Your jobs, newest first (`every_session` with the 'jobs' capability: everyone's).

    Returns `{"jobs": [{job_id, command, title, state, progress, ...}]}` without results (see `job_status`).
    """
    if params.every_session and not ctx.session.can(CAPABILITY):
        raise CapabilityDeniedError(f"session {ctx.session.id!r} lacks capability 'jobs' to see every job")
    jobs = ctx.daemon.jobs.jobs(None if params.every_session else ctx.session.id)
    if params.state == "active":
        jobs = [j for j in jobs if j.state not in FINISHED]
    elif params.state == "finished":
        jobs = [j for j in jobs if j.state in FINISHED]
    listed = []
    for job in jobs[: params.limit]:
        entry = job.describe()
        entry.pop("result", None)
        listed.append(entry)
    return {"jobs": listed}


def register_commands(registry: CommandRegistry) -> None:
    # Reaching one's own jobs needs nothing; others' need 'jobs' (checked in the handlers).
    registry.add("job_status", job_status, params=JobParams, capability=None)
    registry.add("job_wait", job_wait, params=JobWaitParams, capability=None)
    registry.add("job_cancel", job_cancel, params=JobParams, capability=None)
    registry.add("job_list", job_list, params=JobListParams, capability=None)
