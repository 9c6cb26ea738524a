"""``personad lora …``: the adapter registry, training, export.

``list``, ``show``, ``export`` and ``delete`` work on ``<home>/adapters`` directly (they are file operations
on your own home; the bus commands of the same names serve other clients). ``train`` runs here, on this
machine's CPU (or GPU), with a progress bar; ``load``/``unload`` change a persona's stack through the
daemon when it runs (so a running persona picks it up), else in its config file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from personad.errors import PersonadError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_adapter(data: dict[str, Any]) -> None:
    storage = data["storage"]
    ratio = storage.get("adapter_over_base")
    rows = [
        ("parents", ", ".join(data["parents"]) or "-"),
        ("chain", " → ".join(data.get("chain", [])) or data.get("chain_error", "-")),
        ("children", ", ".join(data.get("children", [])) or "-"),
        ("rank / alpha", f"{data['rank']} / {data['alpha']:g}"),
        ("targets", ", ".join(data["target_modules"])),
        ("base model", f"{data['base_model']} ({data['base_model_sha256'][:12]})"),
        ("lora_hash", data["lora_hash"]),
        (
            "storage",
            f"{_size(storage['adapter_bytes'])} vs base {_size(storage['base_model_bytes'])}"
            + (f" = {ratio:.4%} of the base ({storage['base_over_adapter']}x smaller)" if ratio else ""),
        ),
        (
            "created",
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(data['created_at']))} by {data['created_by']}",
        ),
        ("training", json.dumps(data["training"], sort_keys=True) if data["training"] else "-"),
        ("metrics", json.dumps(data["metrics"], sort_keys=True) if data["metrics"] else "-"),
        ("path", data.get("path", "")),
    ]
    click.echo(data["name"])
    for key, value in rows:
        click.echo(f"  {key:<13} {value}")


def register(main: click.Group, home_option: Any, fail: Any) -> None:
    from personad.cli_personas import _run

    def registry_for(home: Path) -> Any:
        from personad.lora.registry import AdapterRegistry

        return AdapterRegistry.for_home(home)

    @main.group()
    def lora() -> None:
        """LoRA adapters: list, show, train, export, delete, load into a persona's stack."""

    @lora.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def list_(as_json: bool, home: Path) -> None:
        """The adapters in the registry."""
        from personad.lora.info import describe_adapter

        try:
            registry = registry_for(home)
            found = [describe_adapter(registry, m) for m in registry.list_adapters()]
        except PersonadError as error:
            fail(error)
        if as_json:
            click.echo(json.dumps({"adapters": found}, indent=2))
            return
        if not found:
            click.echo(
                f"no adapters in {registry.root}; train one with 'personad lora train NAME --data FILE'"
            )
        for a in found:
            parents = f" ← {', '.join(a['parents'])}" if a["parents"] else ""
            click.echo(
                f"{a['name']:<40} r={a['rank']:<3} {_size(a['size_bytes']):>10}"
                f"  {a['lora_hash'][:12]}{parents}"
            )

    @lora.command("show")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def show(name: str, as_json: bool, home: Path) -> None:
        """One adapter: manifest, parent chain, storage ratio against the base model."""
        from personad.lora.info import describe_adapter

        try:
            registry = registry_for(home)
            data = describe_adapter(registry, registry.manifest(name), detail=True)
        except PersonadError as error:
            fail(error)
        if as_json:
            click.echo(json.dumps(data, indent=2))
        else:
            _print_adapter(data)

    @lora.command("delete")
    @click.argument("name")
    @home_option
    def delete(name: str, home: Path) -> None:
        """Delete an adapter (refused while another adapter builds on it)."""
        try:
            registry_for(home).delete(name)
        except PersonadError as error:
            fail(error)
        click.echo(f"deleted {name}")

    @lora.command("export")
    @click.argument("name", required=False)
    @click.option("--stack", default=None, help="comma-separated stack instead of NAME (name or name@scale)")
    @click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for the PEFT files")
    @home_option
    def export(name: str | None, stack: str | None, out: Path, home: Path) -> None:
        """Flatten an adapter's parent chain (or a stack) into one stock PEFT adapter of rank Σr."""
        from personad.errors import BadRequestError
        from personad.lora.commands import AdapterSpec, export_stack

        try:
            if (name is None) == (stack is None):
                raise BadRequestError("give NAME or --stack a,b,c (not both)", code="invalid_params")
            refs: list[Any] = [name] if name else [_spec(item, AdapterSpec) for item in _csv(stack or "")]
            result = export_stack(registry_for(home), refs, out, None, "cli")
        except PersonadError as error:
            fail(error)
        chain = " + ".join(f"{n}@{s:g}" for n, s in result["adapters"])
        click.echo(f"exported {chain} as one PEFT adapter of rank {result['r']} to {out}")

    @lora.command("load")
    @click.argument("persona_id")
    @click.argument("stack")
    @home_option
    def load(persona_id: str, stack: str, home: Path) -> None:
        """Set PERSONA_ID's adapter stack to STACK (comma-separated, name or name@scale)."""
        from personad.lora.commands import AdapterSpec

        try:
            specs = [_spec(item, AdapterSpec).model_dump() for item in _csv(stack)]
            result = _run(
                home,
                "lora_load_stack",
                {"persona": persona_id, "adapters": specs},
                offline=lambda: _offline_load(home, persona_id, specs),
            )
        except PersonadError as error:
            fail(error)
        click.echo(f"{persona_id}: {' → '.join(result['resolved'])}")

    @lora.command("unload")
    @click.argument("persona_id")
    @click.option("--adapters", default=None, help="comma-separated names (default: all)")
    @home_option
    def unload(persona_id: str, adapters: str | None, home: Path) -> None:
        """Remove adapters (default all) from PERSONA_ID's stack."""
        names = _csv(adapters) if adapters else None
        try:
            result = _run(
                home,
                "lora_unload",
                {"persona": persona_id, "adapters": names},
                offline=lambda: _offline_unload(home, persona_id, names),
            )
        except PersonadError as error:
            fail(error)
        click.echo(f"{persona_id}: {', '.join(result['adapters']) or '(no adapters)'}")

    @lora.command("train")
    @click.argument("name")
    @click.option("--data", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
    @click.option(
        "--parent",
        "parents",
        multiple=True,
        help="extra parent (repeatable); a.b's parent a is implied when a is an adapter",
    )
    @click.option("--rank", type=int, default=8, show_default=True)
    @click.option("--alpha", type=float, default=None, help="default 2 x rank")
    @click.option("--targets", default="q_proj,v_proj", show_default=True)
    @click.option(
        "--epochs",
        type=int,
        default=1,
        show_default=True,
        help="passes over the data; ignored when --max-steps is given",
    )
    @click.option(
        "--max-steps",
        type=int,
        default=None,
        help="train exactly N optimizer steps, repeating the data (reshuffled each pass) as often as needed;"
        " overrides --epochs, as max_steps does in HF Trainer",
    )
    @click.option("--lr", type=float, default=1e-3, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--batch-size", type=int, default=4, show_default=True)
    @click.option("--device", default=None, help="cpu or cuda (default: cuda when present)")
    @click.option("--replace", is_flag=True, help="replace an adapter of the same name")
    @click.option(
        "--anchor",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="chat JSONL whose assistant turns must keep the parents' answers (KL anchor)",
    )
    @click.option("--anchor-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="progress and result as JSON lines")
    @home_option
    def train(
        name: str,
        data: Path,
        parents: tuple[str, ...],
        rank: int,
        alpha: float | None,
        targets: str,
        epochs: int,
        max_steps: int | None,
        lr: float,
        seed: int,
        batch_size: int,
        device: str | None,
        replace: bool,
        anchor: Path | None,
        anchor_weight: float,
        as_json: bool,
        home: Path,
    ) -> None:
        """Train adapter NAME on chat JSONL (PEFT SFT on the local model; parents active and frozen)."""
        from personad.lora.training import TrainingConfig

        config = TrainingConfig(
            name=name,
            data=data,
            parents=list(parents),
            rank=rank,
            alpha=alpha,
            targets=_csv(targets),
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            seed=seed,
            batch_size=batch_size,
            device=device,
            replace=replace,
            anchor_data=anchor,
            anchor_weight=anchor_weight,
        )
        try:
            result = _train(config, home, as_json)
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"error": error.to_dict(), "status": error.http_status}))
                sys.exit(error.exit_code)
            fail(error)
        manifest = result.manifest
        if as_json:
            click.echo(json.dumps({"manifest": manifest.to_dict()}))
            return
        click.echo(
            f"trained {manifest.name}: {result.steps} steps ({result.epochs} epochs) in"
            f" {result.seconds:.1f}s, loss {result.losses[0]:.3f} → {result.losses[-1]:.3f};"
            f" {_size(manifest.size_bytes)}, lora_hash"
            f" {manifest.lora_hash[:12]}"
        )


def _spec(item: str, spec: Any) -> Any:
    """``name`` or ``name@scale`` as an AdapterSpec; a bad scale is a structured error, not a traceback."""
    from pydantic import ValidationError

    from personad.errors import BadRequestError

    name, _, scale = item.partition("@")
    try:
        return spec(name=name, scale=float(scale)) if scale else spec(name=name)
    except (ValueError, ValidationError) as exc:
        raise BadRequestError(
            f"bad stack entry {item!r}: use name or name@scale (a number between -4 and 4); {exc}",
            code="invalid_params",
        ) from None


def _offline_load(home: Path, persona_id: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
    from personad.lora.registry import AdapterRegistry
    from personad.personas.config import PersonaStore

    store = PersonaStore(home)
    config = store.load(persona_id)
    from personad.models.base import AdapterRef

    resolved = AdapterRegistry.for_home(home).resolve([AdapterRef(s["name"], s["scale"]) for s in specs])
    config.lora_adapters = [s["name"] for s in specs]
    config.lora_scales = {s["name"]: s["scale"] for s in specs if s["scale"] != 1.0}
    store.save(config)
    return {"resolved": [e.name for e in resolved]}


def _offline_unload(home: Path, persona_id: str, names: list[str] | None) -> dict[str, Any]:
    from personad.personas.config import PersonaStore

    store = PersonaStore(home)
    config = store.load(persona_id)
    config.lora_adapters = [n for n in config.lora_adapters if names is not None and n not in names]
    config.lora_scales = {n: s for n, s in config.lora_scales.items() if n in config.lora_adapters}
    store.save(config)
    return {"adapters": config.lora_adapters}


def _train(config: Any, home: Path, as_json: bool) -> Any:
    """Load a fresh copy of the local model and train; a rich progress bar (or JSON lines) shows the loss."""
    from personad.lora.registry import AdapterRegistry
    from personad.lora.training import TrainingProgress, train_adapter
    from personad.models.local.engine import LocalEngine

    config.validate()
    registry = AdapterRegistry.for_home(home)
    engine = LocalEngine.load()
    if as_json:

        def on_step(p: TrainingProgress) -> None:
            line = {"step": p.step, "total_steps": p.total_steps, "epoch": p.epoch, "loss": round(p.loss, 5)}
            click.echo(json.dumps({**line, "elapsed_s": round(p.elapsed_s, 2)}))

        return _call(train_adapter, config, registry, engine, on_step)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{config.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("train", total=None, loss="-")

        def on_bar(p: TrainingProgress) -> None:
            progress.update(task, completed=p.step, total=p.total_steps, loss=f"{p.loss:.4f}")

        return _call(train_adapter, config, registry, engine, on_bar)


def _call(train_adapter: Any, config: Any, registry: Any, engine: Any, on_step: Any) -> Any:
    return train_adapter(
        config,
        registry,
        model=engine.model,
        tokenizer=engine.tokenizer,
        base_model=engine.model_id,
        base_model_sha256=engine.base_sha256 or "",
        created_by="personad lora train",
        on_step=on_step,
    )
