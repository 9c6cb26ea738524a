"""Academy commands on the bus: ``academy_train``, ``academy_status``, ``persona_graduated``.

``academy_train`` runs ``personad academy train … --json`` as a child process (training and examining on the
local model take minutes) and republishes its progress to every session as events — ``academy_started``,
``academy_round`` (per-round metrics), ``academy_trained``, ``academy_finished`` — so the web page and the CLI
show it live; a graduation becomes ``persona_graduated``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.processor import CommandContext
from personad.errors import CapabilityDeniedError, CommandFailedError, ConflictError, error_from_dict

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
    steps: int = Field(default=40, ge=1, le=10_000, description="training steps per round")
    threshold: float = Field(default=0.15, gt=0, lt=1)
    max_tokens: int = Field(default=48, ge=4, le=512, description="answer length in exams")
    seed: int = 0


class StudentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student: str


class GraduatedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str
    graduation: dict[str, Any]


def status_path(home: Path, student: str) -> Path:
    return Path(home) / "personas" / student / "academy" / "status.json"


_running: set[str] = set()


async def academy_train(ctx: CommandContext, params: TrainParams) -> dict[str, Any]:
    """Run the Academy on a student persona: rounds of attack → judge → learn → re-examine.

    Streams `academy_*` events; returns the report: baseline and final held-out attack success and benign
    pass rate, per-round metrics, the defense adapter, and whether the student graduated.
    """
    config = ctx.daemon.persona_store.load(params.student)
    if config.id in _running:
        raise ConflictError(f"an Academy run for {config.id!r} is already going", code="academy_running")
    cmd = [
        sys.executable,
        "-m",
        "personad.cli",
        "academy",
        "train",
        config.id,
        "--home",
        str(ctx.daemon.home),
    ]
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
        ("--seed", params.seed),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    cmd.append("--json")
    _running.add(config.id)
    try:
        report = await _run(ctx, cmd)
    finally:
        _running.discard(config.id)
    # The student's persona.json changed (its stack, maybe its status): a running persona re-reads it.
    ctx.daemon.events.publish("persona_config_changed", {"persona": config.id}, to=[config.id])
    if report.get("graduated") and report.get("graduation"):
        ctx.daemon.events.broadcast("persona_graduated", {"persona": config.id, **report["graduation"]})
    return report


async def _run(ctx: CommandContext, cmd: list[str]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TQDM_DISABLE": "1", "PERSONAD_ACADEMY_CHILD": "1"},
        limit=16 * 1024 * 1024,  # one JSON line carries a whole report
    )
    assert proc.stdout is not None and proc.stderr is not None
    report: dict[str, Any] | None = None
    error: tuple[dict[str, Any], int | None] | None = None
    stderr_task = asyncio.create_task(proc.stderr.read())
    try:
        async for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            event = line.get("event")
            if event in EVENTS:
                ctx.daemon.events.broadcast(event, line.get("data") or {})
                if event == "academy_finished":
                    report = line.get("data")
            elif "error" in line:
                error = (line["error"], line.get("status"))
        code = await proc.wait()
        stderr = (await stderr_task).decode(errors="replace")
    except asyncio.CancelledError:
        proc.kill()
        raise
    if error is not None:
        raise error_from_dict(*error)
    if code != 0 or report is None:
        raise CommandFailedError(
            f"the Academy run failed (exit {code}): {stderr.strip()[-800:]}", code="academy_failed"
        )
    return report


async def academy_status(ctx: CommandContext, params: StudentParams) -> dict[str, Any]:
    """The student's latest Academy status (running or finished): the last event of its last run."""
    ctx.daemon.persona_store.load(params.student)
    path = status_path(ctx.daemon.home, params.student)
    running = params.student in _running
    if not path.is_file():
        return {"student": params.student, "state": "running" if running else "never", "last": None}
    last = json.loads(path.read_text(encoding="utf-8"))
    return {
        "student": params.student,
        "state": "running" if running else last.get("state", "finished"),
        "last": last,
    }


async def persona_graduated(ctx: CommandContext, params: GraduatedParams) -> dict[str, Any]:
    """Announce a graduation (from PersonaDaemon.on_graduation): publishes `persona_graduated` to everyone.

    A persona may announce its own graduation once its status is graduated; anyone else needs 'academy'.
    """
    session = ctx.session
    own = session.kind == "persona" and session.id == params.persona
    if not own and not session.can(CAPABILITY):
        raise CapabilityDeniedError(f"session {session.id!r} lacks capability 'academy'")
    config = ctx.daemon.persona_store.load(params.persona)
    if config.status != "graduated":
        raise ConflictError(f"persona {params.persona!r} has not graduated", code="not_graduated")
    ctx.daemon.events.broadcast("persona_graduated", {"persona": params.persona, **params.graduation})
    return {"announced": True}


class EvolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str | None = Field(default=None, description="whose (a persona's own session may omit it)")
    steps: int = Field(default=30, ge=1, le=10_000)
    seed: int = 0


async def persona_evolve(ctx: CommandContext, params: EvolveParams) -> dict[str, Any]:
    """evolveCapabilities: train an adapter from the persona's learning_experience memories (the domain with
    the most), keep it in the stack only if the held-out answer loss drops, record evolution_history.

    A persona may evolve itself; anyone else needs 'lora'. Returns what was tried, measured and kept.
    """
    session = ctx.session
    persona = params.persona or (session.id if session.kind == "persona" else None)
    if persona is None:
        raise CommandFailedError("name the persona to evolve", code="invalid_params")
    if not (session.kind == "persona" and session.id == persona) and not session.can("lora"):
        raise CapabilityDeniedError(f"session {session.id!r} lacks capability 'lora' to evolve {persona!r}")
    ctx.daemon.persona_store.load(persona)
    cmd = [sys.executable, "-m", "personad.cli", "academy", "evolve", persona, "--home", str(ctx.daemon.home)]
    cmd += ["--steps", str(params.steps), "--seed", str(params.seed), "--json"]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    out, err = await proc.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    for line in lines:
        if "error" in line:
            raise error_from_dict(line["error"], line.get("status"))
        if "result" in line:
            result = line["result"]
            if result.get("evolved"):
                ctx.daemon.events.publish("persona_config_changed", {"persona": persona}, to=[persona])
            ctx.daemon.events.broadcast("persona_evolved", result)
            return result
    raise CommandFailedError(
        f"evolve failed (exit {proc.returncode}): {err.decode()[-800:]}", code="evolve_failed"
    )


def register_commands(registry: CommandRegistry) -> None:
    registry.add("persona_evolve", persona_evolve, params=EvolveParams, capability=None)
    registry.add("academy_train", academy_train, params=TrainParams, capability=CAPABILITY)
    registry.add("academy_status", academy_status, params=StudentParams, capability=None)
    registry.add("persona_graduated", persona_graduated, params=GraduatedParams, capability=None)
