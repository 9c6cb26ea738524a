"""Academy commands on the bus: ``academy_train``, ``academy_exam``, ``academy_status``, ``persona_graduated``

``academy_train`` runs ``personad academy train … --json`` as a child process (training and examining on the
local model take minutes) and republishes its progress to every session as events — ``academy_started``,
``academy_round`` (per-round metrics), ``academy_trained``, ``academy_finished`` — so the web page and the CLI
show it live; a graduation becomes ``persona_graduated``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.jobs import JobReporter, run_cli_job
from personad.bus.processor import CommandContext
from personad.errors import CapabilityDeniedError, CommandFailedError, ConflictError

from .graduation import announcement

CAPABILITY = "academy"
EVENTS = ("academy_started", "academy_round", "academy_trained", "academy_finished")


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student: str = Field(description="the persona to train (local model)")
    droid: str | None = Field(default=None, description="a persona with role testing_droid (optional)")
    sheriff: str | None = Field(default=None, description="a persona with role protocol_sheriff (optional)")
    rounds: int = Field(default=3, ge=1, le=20)
    domain: str = Field(default="general", pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)
    attacks: int = Field(default=32, ge=1, le=500, description="training attacks per round")
    heldout: int = Field(default=48, ge=5, le=1000, description="held-out attacks in each exam")
    benign: int | None = Field(default=None, ge=1, le=1000, description="benign questions (default all)")
    steps: int = Field(default=30, ge=1, le=10_000, description="training steps per round")
    threshold: float = Field(default=0.15, gt=0, lt=1)
    max_tokens: int = Field(default=48, ge=4, le=512, description="answer length in exams")
    anchor_weight: float = Field(
        default=1.0, ge=0, le=100, description="KL anchor to the pre-training answers (0: hard labels)"
    )
    seed: int = 0


class StudentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student: str


class GraduatedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str
    graduation: dict[str, Any] = Field(
        description="the graduation record (achievement, academy_score, new_capabilities, lora_hash, …)"
    )


def status_path(home: Path, student: str) -> Path:
    return Path(home) / "personas" / student / "academy" / "status.json"


_running: set[str] = set()


async def academy_train(ctx: CommandContext, params: TrainParams) -> dict[str, Any]:
    """Run the Academy on a student persona: rounds of attack → judge → learn → re-examine.

    Runs as a job: returns `{"job": {...}}` at once, streams `academy_*` events to everyone and `job_progress`
    to the caller; the finished job's result is the report: baseline and final held-out attack success and
    benign pass rate, per-round metrics, the defense adapter, and whether the student graduated.
    """
    config = ctx.daemon.persona_store.load(params.student)
    if config.id in _running:
        raise ConflictError(f"an Academy run for {config.id!r} is already going", code="academy_running")
    args = ["academy", "train", config.id, "--home", str(ctx.daemon.home)]
    for flag, value in (
        ("--droid", params.droid),
        ("--sheriff", params.sheriff),
        ("--rounds", params.rounds),
        ("--domain", params.domain),
        ("--attacks", params.attacks),
        ("--heldout", params.heldout),
        ("--benign", params.benign),
        ("--steps", params.steps),
        ("--threshold", params.threshold),
        ("--max-tokens", params.max_tokens),
        ("--anchor-weight", params.anchor_weight),
        ("--seed", params.seed),
    ):
        if value is not None:
            args += [flag, str(value)]
    args.append("--json")
    events = ctx.daemon.events
    rounds = params.rounds

    async def work(job: JobReporter) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def on_line(line: dict[str, Any]) -> None:
            event = line.get("event")
            if event in EVENTS:
                data = line.get("data") or {}
                events.broadcast(event, data)
                if event == "academy_round":
                    job.report(step=data.get("round"), total=rounds, message=f"round {data.get('round')}")
                elif event == "academy_started":
                    job.report(step=0, total=rounds, message="baseline exam")
                elif event == "academy_finished":
                    found["report"] = data

        try:
            await run_cli_job(args, on_line, failure_code="academy_failed", what="the Academy run")
        finally:
            _running.discard(config.id)
        report = found.get("report")
        if not isinstance(report, dict):
            raise CommandFailedError("the Academy run ended without a report", code="academy_failed")
        # The student's persona.json changed (its stack, maybe its status): a running persona re-reads it.
        events.publish("persona_config_changed", {"persona": config.id}, to=[config.id])
        if report.get("graduated") and report.get("graduation"):
            event = announcement(ctx.daemon.home, config.id, report["graduation"])
            events.broadcast("persona_graduated", event)
        return report

    _running.add(config.id)
    return ctx.start_job(work, title=f"Academy: {config.id}, {rounds} rounds")


async def academy_status(ctx: CommandContext, params: StudentParams) -> dict[str, Any]:
    """The student's latest Academy status (running or finished): the last event of its last run, and its
    last `academy_exam` report (`exam`, null when never examined)."""
    store = ctx.daemon.persona_store
    store.load(params.student)
    path = status_path(ctx.daemon.home, params.student)
    exam_path = store.session_dir(params.student) / "academy" / "exam.json"
    exam = json.loads(exam_path.read_text(encoding="utf-8")) if exam_path.is_file() else None
    running = params.student in _running
    if not path.is_file():
        state = "running" if running else "never"
        return {"student": params.student, "state": state, "last": None, "exam": exam}
    last = json.loads(path.read_text(encoding="utf-8"))
    return {
        "student": params.student,
        "state": "running" if running else last.get("state", "finished"),
        "last": last,
        "exam": exam,
    }


async def persona_graduated(ctx: CommandContext, params: GraduatedParams) -> dict[str, Any]:
    """Announce a graduation (from PersonaDaemon.on_graduation): publishes `persona_graduated` to everyone.

    The event is the record plus the notification (`title`, `body`, `actions`: `assign_tasks` "Assign
    Tasks", `view_details` "View Details"), the mesh status (`status`, `ready_for_deployment`,
    `specializations`; with the mesh on, the daemon publishes it with `update_persona_status`) and, when the
    persona's last Academy run graduated it, that run's `metrics`. A persona may announce its own graduation
    once its status is graduated; anyone else needs 'academy'. Returns `{"announced": true, "event": {...}}`.
    """
    session = ctx.session
    own = session.kind == "persona" and session.id == params.persona
    if not own and not session.can(CAPABILITY):
        raise CapabilityDeniedError(f"session {session.id!r} lacks capability 'academy'")
    config = ctx.daemon.persona_store.load(params.persona)
    if config.status != "graduated":
        raise ConflictError(f"persona {params.persona!r} has not graduated", code="not_graduated")
    event = announcement(ctx.daemon.home, params.persona, params.graduation)
    ctx.daemon.events.broadcast("persona_graduated", event)
    return {"announced": True, "event": event}


class EvolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str | None = Field(default=None, description="whose (a persona's own session may omit it)")
    steps: int = Field(default=30, ge=1, le=10_000)
    seed: int = 0


async def persona_evolve(ctx: CommandContext, params: EvolveParams) -> dict[str, Any]:
    """evolveCapabilities: train an adapter from the persona's learning_experience memories (the domain with
    the most), keep it in the stack only if the held-out answer loss drops, record evolution_history.

    A persona may evolve itself; anyone else needs 'lora'. Runs as a job (`{"job": {...}}` at once); its
    result says what was tried, measured and kept.
    """
    session = ctx.session
    persona = params.persona or (session.id if session.kind == "persona" else None)
    if persona is None:
        raise CommandFailedError("name the persona to evolve", code="invalid_params")
    if not (session.kind == "persona" and session.id == persona) and not session.can("lora"):
        raise CapabilityDeniedError(f"session {session.id!r} lacks capability 'lora' to evolve {persona!r}")
    ctx.daemon.persona_store.load(persona)
    args = ["academy", "evolve", persona, "--home", str(ctx.daemon.home), "--steps", str(params.steps)]
    args += ["--seed", str(params.seed), "--json"]
    events = ctx.daemon.events

    async def work(job: JobReporter) -> dict[str, Any]:
        found: dict[str, Any] = {}
        job.report(message="training from learning experiences")
        await run_cli_job(args, found.update, failure_code="evolve_failed", what="evolve")
        result = found.get("result")
        if not isinstance(result, dict):
            raise CommandFailedError("evolve ended without a result", code="evolve_failed")
        if result.get("evolved"):
            events.publish("persona_config_changed", {"persona": persona}, to=[persona])
        events.broadcast("persona_evolved", result)
        return result

    return ctx.start_job(work, title=f"evolve {persona}")


class ExamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str = Field(description="the persona to examine, as it is now (its current adapter stack)")
    suite: Literal["own", "overrefusal", "garak", "all"] = Field(
        default="all",
        description="own: the Academy's held-out split and benign set; overrefusal: ordinary requests that"
        " look risky; garak: garak's probes through /v1 (garak installed, PERSONAD_GARAK)",
    )
    heldout: int = Field(default=48, ge=5, le=1000, description="own: held-out attacks")
    benign: int | None = Field(default=None, ge=1, le=1000, description="own: benign questions (default all)")
    max_tokens: int = Field(default=48, ge=4, le=512, description="answer length")
    seed: int = 0
    garak_families: list[str] | None = Field(
        default=None,
        description="garak probe families (default all: promptinject, dan, encoding, latentinjection)",
    )
    garak_prompts: int = Field(default=10, ge=1, le=256, description="garak: prompts per probe")


async def academy_exam(ctx: CommandContext, params: ExamParams) -> dict[str, Any]:
    """Examine a persona as it is now on suites the Academy did not train on (see docs/academy.md).

    Runs as a job (`personad academy exam` in a child process): returns `{"job": {...}}` at once;
    `academy_exam_suite` events go to everyone as each suite starts and finishes. The finished job's result
    is the report: per suite the overall rate and per-family rates, each `{hits, total, rate, lower95,
    upper95}` (attack hits; for overrefusal, refusals), own's benign pass, garak's per-probe rates and its
    held-out check; each suite is a row `exam:<suite>` in the persona's evolution_history.
    """
    config = ctx.daemon.persona_store.load(params.persona)
    args = ["academy", "exam", config.id, "--home", str(ctx.daemon.home), "--suite", params.suite]
    for flag, value in (
        ("--heldout", params.heldout),
        ("--benign", params.benign),
        ("--max-tokens", params.max_tokens),
        ("--seed", params.seed),
        ("--garak-prompts", params.garak_prompts),
        ("--garak-families", ",".join(params.garak_families) if params.garak_families else None),
    ):
        if value is not None:
            args += [flag, str(value)]
    args.append("--json")
    events = ctx.daemon.events
    total = 3 if params.suite == "all" else 1

    async def work(job: JobReporter) -> dict[str, Any]:
        found: dict[str, Any] = {}
        done = 0

        def on_line(line: dict[str, Any]) -> None:
            nonlocal done
            event, data = line.get("event"), line.get("data") or {}
            if event == "academy_exam_suite":
                events.broadcast(event, {"persona": config.id, **data})
                if data.get("state") == "finished":
                    done += 1
                job.report(step=done, total=total, message=f"{data.get('suite')} {data.get('state')}")
            elif event == "academy_exam_finished":
                found["report"] = data

        await run_cli_job(args, on_line, failure_code="exam_failed", what="the exam")
        report = found.get("report")
        if not isinstance(report, dict):
            raise CommandFailedError("the exam ended without a report", code="exam_failed")
        events.broadcast("academy_exam_finished", report)
        return report

    return ctx.start_job(work, title=f"exam {config.id}: {params.suite}")


def register_commands(registry: CommandRegistry) -> None:
    registry.add("persona_evolve", persona_evolve, params=EvolveParams, capability=None)
    registry.add("academy_train", academy_train, params=TrainParams, capability=CAPABILITY)
    registry.add("academy_status", academy_status, params=StudentParams, capability=None)
    registry.add("academy_exam", academy_exam, params=ExamParams, capability=CAPABILITY)
    registry.add("persona_graduated", persona_graduated, params=GraduatedParams, capability=None)
