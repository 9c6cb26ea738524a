"""A test-only long command, registered through the same plugin hook as the built-ins.

``test_countdown`` runs as a job: ``steps`` steps of ``step_s`` seconds each, reporting progress; ``fail_at``
makes it fail with a structured error at that step. Loaded with ``PERSONAD_PLUGINS=tests.fakes.fake_jobs``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.jobs import JobReporter
from personad.bus.processor import CommandContext
from personad.errors import CommandFailedError


class CountdownParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=5, ge=1, le=1000)
    step_s: float = Field(default=0.05, ge=0, le=10)
    fail_at: int | None = None


async def countdown(ctx: CommandContext, params: CountdownParams) -> dict[str, Any]:
    """Count down as a job (tests only)."""

    async def work(job: JobReporter) -> dict[str, Any]:
        for step in range(1, params.steps + 1):
            await asyncio.sleep(params.step_s)
            if params.fail_at == step:
                raise CommandFailedError(f"failed at step {step}", code="countdown_failed")
            job.report(step=step, total=params.steps, message=f"step {step}")
        return {"counted": params.steps}

    return ctx.start_job(work, title=f"count {params.steps}")


def register_commands(registry: CommandRegistry) -> None:
    registry.add("test_countdown", countdown, params=CountdownParams, capability="files")
