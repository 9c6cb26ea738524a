"""A test-only Academy replay, registered through the same plugin hook as the built-ins.

``test_academy_replay`` runs as a job and publishes what a real ``academy_train`` run publishes —
``academy_started``, one ``academy_round`` per given exam (the first is round 0, the baseline), then
``academy_finished`` with the report — ``pace_s`` seconds apart, and writes the student's ``status.json`` as
the real run does, so ``academy_status`` reads it back.
Loaded with ``PERSONAD_PLUGINS=tests.fakes.fake_academy``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.academy.commands import status_path
from personad.bus.commands import CommandRegistry
from personad.bus.jobs import JobReporter
from personad.bus.processor import CommandContext


class ReplayParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student: str
    exams: list[dict[str, Any]] = Field(min_length=1, description="round 0 (baseline), then one per round")
    graduated: bool = False
    pace_s: float = Field(default=0.3, ge=0, le=10)


def _exam(given: dict[str, Any]) -> dict[str, Any]:
    exam = {
        "attacks": 20,
        "violations": round(20 * given.get("attack_success", 0)),
        "benign": 10,
        "benign_passed": round(10 * given.get("benign_pass", 0)),
        "by_family": {},
        "seconds": 0.1,
        "still_working": [],
    }
    return {**exam, **given}


async def replay(ctx: CommandContext, params: ReplayParams) -> dict[str, Any]:
    """Replay an Academy run's events (tests only)."""
    events = ctx.daemon.events
    home = ctx.daemon.home
    student = params.student
    status = status_path(home, student)
    status.parent.mkdir(parents=True, exist_ok=True)
    total = len(params.exams) - 1

    def emit(event: str, data: dict[str, Any]) -> None:
        state = "finished" if event == "academy_finished" else "running"
        status.write_text(json.dumps({"state": state, "event": event, "data": data, "ts": time.time()}))
        events.broadcast(event, data)

    async def work(job: JobReporter) -> dict[str, Any]:
        exams = [_exam(e) for e in params.exams]
        emit("academy_started", {"student": student, "heldout_attacks": 20, "benign": 10, "settings": {}})
        job.report(step=0, total=total, message="baseline exam")
        rounds: list[dict[str, Any]] = []
        for number, exam in enumerate(exams):
            await asyncio.sleep(params.pace_s)
            record: dict[str, Any] = {"student": student, "round": number, "exam": exam}
            if number:
                record |= {"train_attacks": 8, "train_attack_success": 0.5, "adapter": f"defense-{student}"}
                rounds.append(record)
            emit("academy_round", record)
            job.report(step=number, total=total, message=f"round {number}")
        await asyncio.sleep(params.pace_s)
        baseline, final = exams[0], exams[-1]
        report: dict[str, Any] = {
            "student": student,
            "adapter": f"defense-{student}",
            "baseline": baseline,
            "final": final,
            "rounds": rounds,
            "graduated": params.graduated,
            "relative_reduction": (
                1 - final["attack_success"] / baseline["attack_success"]
                if baseline["attack_success"]
                else None
            ),
            "benign_delta": final["benign_pass"] - baseline["benign_pass"],
            "seconds": 1.0,
        }
        if params.graduated:
            report["graduation"] = {
                "persona": student,
                "achievement": "academy:general",
                "academy_score": 1 - final["attack_success"],
                "status": "graduated",
            }
        emit("academy_finished", report)
        return report

    return ctx.start_job(work, title=f"Academy replay: {student}")


def register_commands(registry: CommandRegistry) -> None:
    registry.add("test_academy_replay", replay, params=ReplayParams, capability="academy")
