"""LoRA commands on the bus: ``lora_list``, ``lora_show``, ``lora_load_stack``, ``lora_unload``,
``lora_train``, ``lora_export``, ``lora_delete``.

Access: reading the registry needs nothing; a persona may change its own stack; changing another persona's
stack, training, exporting and deleting need the ``lora`` capability. Exports and training data paths are
inside the caller's session artifacts (no path escapes). Training runs ``personad lora train`` as a child
process so the daemon stays responsive, streaming ``lora_train_progress`` events to the caller.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.jobs import JobReporter, run_cli_job
from personad.bus.processor import CommandContext
from personad.errors import (
    BadRequestError,
    CapabilityDeniedError,
    CommandFailedError,
    ConflictError,
    NotFoundError,
)
from personad.files.confine import relative_name, resolve_inside

from .info import describe_adapter
from .registry import AdapterParentMissingError, AdapterRegistry
from .stack import flatten

CAPABILITY = "lora"


# A bare name in a stack obeys the same bounds as AdapterSpec.name, so a bad one is invalid_params up front.
AdapterName = Annotated[str, Field(min_length=1, max_length=200)]


class AdapterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scale: float = Field(default=1.0, ge=-4.0, le=4.0)


class NameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="adapter name, e.g. continuum.legal.patent")


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str | None = Field(default=None, description="only adapters whose name starts with this")


class LoadStackParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str | None = Field(default=None, description="whose stack (a persona's own session may omit it)")
    adapters: list[AdapterName | AdapterSpec] = Field(
        max_length=32, description="the stack, applied in order: names or {name, scale}"
    )


class UnloadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str | None = None
    adapters: list[str] | None = Field(default=None, description="names to remove; omitted = all")


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    data: str | None = Field(default=None, description="chat JSONL file in the caller's artifacts")
    examples: list[dict[str, Any]] | None = Field(
        default=None, max_length=10_000, description='inline examples: [{"messages": [...]}, ...]'
    )
    parents: list[str] = Field(
        default_factory=list,
        description="extra parents (the nearest dotted prefix that is an adapter is implied)",
    )
    rank: int = Field(default=8, ge=1, le=256)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    epochs: int = Field(
        default=1, ge=1, le=100, description="passes over the data; ignored when max_steps is given"
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="train exactly this many optimizer steps, repeating the data (reshuffled each pass) as"
        " often as needed; overrides epochs, as max_steps does in HF Trainer",
    )
    lr: float = Field(default=1e-3, gt=0, le=1)
    seed: int = 0
    replace: bool = False
    anchor: str | None = Field(
        default=None,
        description="chat JSONL in your artifacts whose answers must stay as the parents give them",
    )
    anchor_weight: float = Field(default=1.0, ge=0, le=100, description="weight of the anchor's KL term")


class ExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="an adapter: exported with its parent chain flattened")
    stack: list[AdapterName | AdapterSpec] | None = Field(default=None, description="or an explicit stack")
    out: str | None = Field(default=None, description="folder in the caller's artifacts for the PEFT files")
    register_as: str | None = Field(
        default=None, description="also register the flattened stack by this name"
    )


def registry_of(ctx: CommandContext) -> AdapterRegistry:
    return AdapterRegistry.for_home(ctx.daemon.home)


def _require(ctx: CommandContext, action: str) -> None:
    if not ctx.session.can(CAPABILITY):
        raise CapabilityDeniedError(f"session {ctx.session.id!r} lacks capability 'lora' needed to {action}")


def _whose_stack(ctx: CommandContext, persona: str | None) -> str:
    session = ctx.session
    if session.kind == "persona" and persona in (None, session.id):
        return session.id
    _require(ctx, "change another persona's adapter stack")
    if persona is None:
        raise BadRequestError("name the persona whose stack to change", code="invalid_params")
    ctx.daemon.persona_store.load(persona)  # persona_not_found for unknown ids
    return persona


def _refs(items: list[AdapterName | AdapterSpec]) -> list[AdapterSpec]:
    return [AdapterSpec(name=i) if isinstance(i, str) else i for i in items]


async def lora_list(ctx: CommandContext, params: ListParams) -> dict[str, Any]:
    """The adapters in the registry. Returns `{"adapters": [manifest + storage]}`."""
    registry = registry_of(ctx)
    found = await asyncio.to_thread(registry.list_adapters)
    prefix = params.prefix or ""
    return {"adapters": [describe_adapter(registry, m) for m in found if m.name.startswith(prefix)]}


async def lora_show(ctx: CommandContext, params: NameParams) -> dict[str, Any]:
    """One adapter: manifest, parent chain, children, storage ratio against the base model."""
    registry = registry_of(ctx)
    return await asyncio.to_thread(describe_adapter, registry, registry.manifest(params.name), detail=True)


def _store_stack(ctx: CommandContext, persona_id: str, names: list[str], scales: dict[str, float]) -> Any:
    from personad.personas.checks import check_persona

    store = ctx.daemon.persona_store
    config = store.load(persona_id)
    config.lora_adapters = names
    config.lora_scales = scales
    check_persona(config, home=ctx.daemon.home, providers=ctx.daemon.providers)
    store.save(config)
    # A running persona holds its config in memory: tell it to re-read the file.
    ctx.daemon.events.publish("persona_config_changed", {"persona": persona_id}, to=[persona_id])
    return config


async def lora_load_stack(ctx: CommandContext, params: LoadStackParams) -> dict[str, Any]:
    """Set a persona's adapter stack (checked against the registry: unknown adapters and missing parents are
    refused). Applied by the inference worker from the persona's next request on.

    Returns `{"persona", "adapters", "scales", "resolved": [names in application order]}`.
    """
    persona_id = _whose_stack(ctx, params.persona)
    refs = _refs(params.adapters)
    names = [r.name for r in refs]
    if len(set(names)) != len(names):
        raise BadRequestError("an adapter appears twice in the stack", code="invalid_adapter_name")
    resolved = await asyncio.to_thread(registry_of(ctx).resolve, refs)
    scales = {r.name: r.scale for r in refs if r.scale != 1.0}
    _store_stack(ctx, persona_id, names, scales)
    return {
        "persona": persona_id,
        "adapters": names,
        "scales": scales,
        "resolved": [e.name for e in resolved],
    }


async def lora_unload(ctx: CommandContext, params: UnloadParams) -> dict[str, Any]:
    """Remove adapters (or all) from a persona's stack. Returns `{"persona", "adapters"}`."""
    persona_id = _whose_stack(ctx, params.persona)
    config = ctx.daemon.persona_store.load(persona_id)
    drop = set(params.adapters) if params.adapters is not None else set(config.lora_adapters)
    keep = [n for n in config.lora_adapters if n not in drop]
    scales = {n: s for n, s in config.lora_scales.items() if n in keep}
    _store_stack(ctx, persona_id, keep, scales)
    return {"persona": persona_id, "adapters": keep}


async def lora_delete(ctx: CommandContext, params: NameParams) -> dict[str, Any]:
    """Delete an adapter (refused while another adapter builds on it, `adapter_in_use`)."""
    _require(ctx, "delete adapters")
    registry = registry_of(ctx)
    await asyncio.to_thread(registry.delete, params.name)
    ctx.daemon.events.broadcast("lora_deleted", {"name": params.name})
    return {"deleted": params.name}


async def lora_export(ctx: CommandContext, params: ExportParams) -> dict[str, Any]:
    """Flatten an adapter's chain (or a stack) into one stock PEFT adapter of rank Σr (exact).

    Writes to `out` in the caller's artifacts and/or registers it as `register_as`. Returns `{"r",
    "adapters", "path"?, "registered"?}`.
    """
    _require(ctx, "export adapters")
    if (params.name is None) == (params.stack is None):
        raise BadRequestError("give exactly one of name or stack", code="invalid_params")
    if params.out is None and params.register_as is None:
        raise BadRequestError(
            "give out (a folder in your artifacts), register_as, or both", code="invalid_params"
        )
    registry = registry_of(ctx)
    refs: list[Any] = [params.name] if params.name is not None else _refs(params.stack or [])
    target = resolve_inside(ctx.session.artifacts_dir, params.out) if params.out is not None else None
    result = await asyncio.to_thread(export_stack, registry, refs, target, params.register_as, ctx.session.id)
    if target is not None:
        result["path"] = relative_name(ctx.session.artifacts_dir, target)
    return result


def export_stack(
    registry: AdapterRegistry, refs: list[Any], out: Path | None, register_as: str | None, created_by: str
) -> dict[str, Any]:
    """Flatten ``refs`` to ``out`` and/or into the registry as ``register_as`` (shared with the CLI)."""
    entries = registry.resolve(refs)
    layers = [(registry.load(e.name), e.scale) for e in entries]
    base = entries[0].manifest
    with tempfile.TemporaryDirectory(prefix="personad-flatten-") as tmp:
        folder = out if out is not None else Path(tmp)
        config = flatten(layers, folder, base_model=base.base_model)
        result: dict[str, Any] = {"r": config["r"], "adapters": [[e.name, e.scale] for e in entries]}
        if register_as is not None:
            manifest = registry.register(
                register_as,
                folder,
                base_model=base.base_model,
                base_model_sha256=base.base_model_sha256,
                created_by=created_by,
                training={"flattened_from": result["adapters"]},
            )
            result["registered"] = manifest.to_dict()
    return result


def _artifact_file(session_dir: Path, relative: str) -> Path:
    """A file in the caller's artifacts, checked here so a wrong name is a clear error, not a failed job."""
    path = resolve_inside(session_dir, relative)
    if not path.is_file():
        raise NotFoundError(f"no file {relative!r} in the session artifacts", code="file_not_found")
    return path


async def lora_train(ctx: CommandContext, params: TrainParams) -> dict[str, Any]:
    """Train a LoRA adapter on the local model (PEFT SFT; parents active and frozen) and register it.

    Data: `data` (a chat JSONL file in your artifacts) or inline `examples`; optionally an `anchor` file whose
    answers must keep the parents' distribution (KL term). `max_steps` trains exactly that many steps,
    repeating the data as needed (it overrides `epochs`, as in HF Trainer). Runs as a job (`personad lora
    train` in a child process): returns `{"job": {...}}` at once; `lora_train_progress` events ({name, step,
    total_steps, loss}) and `job_progress` go to the caller; the finished job's result is the new adapter's
    manifest, whose `training` summary holds the steps and epochs run.
    """
    _require(ctx, "train adapters")
    if (params.data is None) == (params.examples is None):
        raise BadRequestError("give exactly one of data or examples", code="invalid_params")
    # What the job would find out only after loading the model is refused now, before a job exists.
    registry = registry_of(ctx)
    if registry.exists(params.name) and not params.replace:
        raise ConflictError(
            f"adapter {params.name!r} already exists; delete it first or pass replace", code="adapter_exists"
        )
    for parent in params.parents:
        if not registry.exists(parent):
            raise AdapterParentMissingError(
                f"adapter {params.name!r} needs its parent {parent!r}, which is not in the registry;"
                f" train or import {parent!r} first"
            )
    session_dir = ctx.session.artifacts_dir
    anchor = _artifact_file(session_dir, params.anchor) if params.anchor is not None else None
    if params.data is not None:
        data_path = _artifact_file(session_dir, params.data)
        cleanup = None
    else:
        fd, tmp = tempfile.mkstemp(prefix=".train-", suffix=".jsonl", dir=ctx.daemon.home)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for example in params.examples or []:
                fh.write(json.dumps(example) + "\n")
        data_path, cleanup = Path(tmp), Path(tmp)
    args = ["lora", "train", params.name, "--data", str(data_path), "--home", str(ctx.daemon.home)]
    args += [
        "--rank",
        str(params.rank),
        "--targets",
        ",".join(params.targets),
        "--epochs",
        str(params.epochs),
    ]
    args += ["--lr", str(params.lr), "--seed", str(params.seed), "--json"]
    if params.max_steps is not None:
        args += ["--max-steps", str(params.max_steps)]
    for parent in params.parents:
        args += ["--parent", parent]
    if params.replace:
        args.append("--replace")
    if anchor is not None:
        args += ["--anchor", str(anchor), "--anchor-weight", str(params.anchor_weight)]
    session_id = ctx.session.id
    events = ctx.daemon.events

    async def work(job: JobReporter) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def on_line(line: dict[str, Any]) -> None:
            if "step" in line:
                events.publish("lora_train_progress", {"name": params.name, **line}, to=[session_id])
                job.report(step=line["step"], total=line.get("total_steps"), loss=line.get("loss"))
            elif "manifest" in line:
                found["manifest"] = line["manifest"]

        try:
            await run_cli_job(args, on_line, failure_code="training_failed", what=f"training {params.name!r}")
        finally:
            if cleanup is not None:
                cleanup.unlink(missing_ok=True)
        if "manifest" not in found:
            raise CommandFailedError(
                f"training {params.name!r} ended without a result", code="training_failed"
            )
        result: dict[str, Any] = found["manifest"]
        events.broadcast("lora_trained", {"name": params.name, "lora_hash": result["lora_hash"]})
        return result

    return ctx.start_job(work, title=f"train {params.name}")


def register_commands(registry: CommandRegistry) -> None:
    registry.add("lora_list", lora_list, params=ListParams, capability=None)
    registry.add("lora_show", lora_show, params=NameParams, capability=None)
    # Checked in the handlers: a persona's own stack needs nothing, everything else needs 'lora'.
    registry.add("lora_load_stack", lora_load_stack, params=LoadStackParams, capability=None)
    registry.add("lora_unload", lora_unload, params=UnloadParams, capability=None)
    registry.add("lora_train", lora_train, params=TrainParams, capability=CAPABILITY)
    registry.add("lora_export", lora_export, params=ExportParams, capability=CAPABILITY)
    registry.add("lora_delete", lora_delete, params=NameParams, capability=CAPABILITY)
