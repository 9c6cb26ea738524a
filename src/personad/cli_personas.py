"""``personad persona …`` and ``personad chat``: persona lifecycle and console chat."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from personad.bus.ws_client import BusClient
from personad.client import DaemonClient
from personad.errors import PersonadError, UnavailableError
from personad.personas.config import PersonaStore
from personad.state import read_state


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _client(home: Path) -> DaemonClient | None:
    """A client of the running daemon, or None when none runs (file-only verbs then work offline)."""
    try:
        return DaemonClient.from_home(home)
    except UnavailableError:
        return None


def _run(home: Path, command: str, params: dict[str, Any], *, offline: Any = None) -> dict[str, Any]:
    client = _client(home)
    if client is None:
        if offline is None:
            raise UnavailableError(
                f"no daemon running for home {home}; start one with 'personad serve --home {home}'",
                code="daemon_not_running",
            )
        return offline()
    with client:
        try:
            return client.execute(command, params)
        except UnavailableError:
            if offline is None:
                raise
            return offline()


def _print_persona(data: dict[str, Any]) -> None:
    process = data.get("process") or {}
    model = data["model_config"].get("model") or ""
    answers_all = ", ".join(data["respond_in"]) or "-"
    rows = [
        ("provider", f"{data['model_provider']} {model}".rstrip()),
        ("adapters", ", ".join(data["lora_adapters"]) or "-"),
        ("capabilities", ", ".join(data["capabilities"]) or "-"),
        ("rooms", f"{', '.join(data['rooms']) or '-'} (answers every message in: {answers_all})"),
        ("process", f"{process.get('state', 'stopped')} pid={process.get('pid')}"),
        ("restarts", str(process.get("restarts", 0))),
        ("directory", str(data.get("session_directory"))),
    ]
    click.echo(f"{data['id']}  ({data.get('name') or data['id']})")
    for label, value in rows:
        click.echo(f"  {label + ':':<14}{value}")


def _open_brain(home: Path, persona_id: str) -> Any:
    """The persona's brain file, opened directly (SQLite lets a running daemon keep writing alongside)."""
    from personad.brain.store import Brain

    store = PersonaStore(home.resolve())
    store.load(persona_id)
    return Brain.open(store.brain_path(persona_id))


def _offline_describe(store: PersonaStore, persona_id: str) -> dict[str, Any]:
    return {**store.load(persona_id).public(), "process": {"state": "stopped (no daemon)"}}


def register(main: click.Group, home_option: Any, fail: Any) -> None:
    @main.group()
    def persona() -> None:
        """Create, list, start and stop personas."""

    @persona.command("create")
    @click.argument("persona_id")
    @click.option("--name", default="", help="display name")
    @click.option(
        "--provider",
        "model_provider",
        default="local",
        show_default=True,
        help="local, anthropic, openai (or a plugin's)",
    )
    @click.option("--model", default=None, help="the provider's model id")
    @click.option("--base-url", default=None, help="OpenAI-compatible server URL (vLLM, llama.cpp, Ollama)")
    @click.option("--adapters", default=None, help="LoRA stack, comma separated, base first")
    @click.option(
        "--capabilities", default=None, help="comma separated (default chat,browser,browser_js,screenshot)"
    )
    @click.option("--system-prompt", default=None)
    @click.option("--secret", default=None, help="a canary it must never reveal (its protocol)")
    @click.option("--role", default=None, help="the role it must stay in")
    @click.option("--rooms", default=None, help="rooms to join (default general)")
    @click.option("--respond-in", default=None, help="rooms where it answers every message ('*' for all)")
    @click.option("--autostart/--no-autostart", default=False, help="start with the daemon")
    @click.option(
        "--evolve-every",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="seconds: while running, evolve_capabilities when new learning experiences arrived",
    )
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def create(
        persona_id: str,
        name: str,
        model_provider: str,
        model: str | None,
        base_url: str | None,
        adapters: str | None,
        capabilities: str | None,
        system_prompt: str | None,
        secret: str | None,
        role: str | None,
        rooms: str | None,
        respond_in: str | None,
        autostart: bool,
        evolve_every: float | None,
        as_json: bool,
        home: Path,
    ) -> None:
        """Create a persona (writes <home>/personas/<id>/persona.json)."""
        params: dict[str, Any] = {
            "id": persona_id,
            "name": name,
            "model_provider": model_provider,
            "autostart": autostart,
        }
        model_config: dict[str, Any] = {}
        if model:
            model_config["model"] = model
        if base_url:
            model_config["base_url"] = base_url
        params["model_config"] = model_config
        if evolve_every is not None:
            params["evolve_every_s"] = evolve_every
        for key, value in (
            ("lora_adapters", _csv(adapters)),
            ("capabilities", _csv(capabilities)),
            ("rooms", _csv(rooms)),
            ("respond_in", _csv(respond_in)),
        ):
            if value is not None:
                params[key] = value
        for key, text in (("system_prompt", system_prompt), ("secret", secret), ("role", role)):
            if text is not None:
                params[key] = text
        home = home.resolve()
        store = PersonaStore(home)

        def offline() -> dict[str, Any]:
            from personad.models.registry import load_provider_registry

            load_provider_registry().get(model_provider)
            return {**store.create(params).public(), "process": {"state": "stopped"}}

        try:
            result = _run(home, "persona_create", params, offline=offline)
        except PersonadError as exc:
            fail(exc)
        click.echo(json.dumps(result, indent=2)) if as_json else _print_persona(result)

    @persona.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def list_(as_json: bool, home: Path) -> None:
        """List personas and whether they run."""
        home = home.resolve()
        store = PersonaStore(home)
        try:
            result = _run(
                home,
                "persona_list",
                {},
                offline=lambda: {"personas": [_offline_describe(store, c.id) for c in store.list_personas()]},
            )
        except PersonadError as exc:
            fail(exc)
        if as_json:
            click.echo(json.dumps(result["personas"], indent=2))
            return
        if not result["personas"]:
            click.echo("no personas; create one with 'personad persona create ID'")
        for item in result["personas"]:
            state = (item.get("process") or {}).get("state", "stopped")
            click.echo(f"{item['id']:<24} {state:<10} {item['model_provider']:<10} {item.get('name', '')}")

    @persona.command("show")
    @click.argument("persona_id")
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def show(persona_id: str, as_json: bool, home: Path) -> None:
        """Show one persona's config and process."""
        home = home.resolve()
        try:
            result = _run(
                home,
                "persona_show",
                {"persona": persona_id},
                offline=lambda: _offline_describe(PersonaStore(home), persona_id),
            )
        except PersonadError as exc:
            fail(exc)
        click.echo(json.dumps(result, indent=2)) if as_json else _print_persona(result)

    for verb, command, text in (
        ("start", "persona_start", "Start a persona's process (needs the daemon)."),
        ("stop", "persona_stop", "Stop a persona's process (needs the daemon)."),
        ("delete", "persona_delete", "Stop a persona and delete its directory."),
    ):
        _lifecycle_verb(persona, verb, command, text, home_option, fail)

    @main.group()
    def brain() -> None:
        """Export, import and inspect a persona's brain (<home>/personas/<id>/brain.sqlite)."""

    @brain.command("export")
    @click.argument("persona_id")
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="JSONL file to write (default: <id>-brain.jsonl)",
    )
    @home_option
    def brain_export(persona_id: str, out: Path | None, home: Path) -> None:
        """Write every table but the vectors as JSON lines (vectors are recomputed on import)."""
        try:
            with _open_brain(home, persona_id) as opened:
                counts = opened.export_jsonl(out or Path(f"{persona_id}-brain.jsonl"))
        except PersonadError as exc:
            fail(exc)
        click.echo(json.dumps(counts, indent=2))

    @brain.command("import")
    @click.argument("persona_id")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @home_option
    def brain_import(persona_id: str, file: Path, home: Path) -> None:
        """Merge an export into the persona's brain (idempotent: re-importing adds nothing)."""
        try:
            with _open_brain(home, persona_id) as opened:
                counts = opened.import_jsonl(file)
        except PersonadError as exc:
            fail(exc)
        click.echo(json.dumps(counts, indent=2))

    @brain.command("stats")
    @click.argument("persona_id")
    @home_option
    def brain_stats(persona_id: str, home: Path) -> None:
        """Row counts of every table."""
        try:
            with _open_brain(home, persona_id) as opened:
                stats = opened.stats()
        except PersonadError as exc:
            fail(exc)
        click.echo(json.dumps(stats, indent=2))

    @main.command()
    @click.argument("persona_id")
    @click.argument("message", required=False)
    @click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for each answer")
    @home_option
    def chat(persona_id: str, message: str | None, timeout: float, home: Path) -> None:
        """Chat with a persona: one shot with MESSAGE, interactive without (Ctrl-D ends)."""
        try:
            asyncio.run(_chat(home.resolve(), persona_id, message, timeout))
        except PersonadError as exc:
            fail(exc)
        except KeyboardInterrupt:
            pass


def _lifecycle_verb(
    group: click.Group, verb: str, command: str, text: str, home_option: Any, fail: Any
) -> None:
    @group.command(verb, help=text)
    @click.argument("persona_id")
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def run_verb(persona_id: str, as_json: bool, home: Path) -> None:
        home = home.resolve()

        def delete_offline() -> dict[str, Any]:
            PersonaStore(home).delete(persona_id)
            return {"deleted": persona_id}

        offline = delete_offline if verb == "delete" else None
        try:
            result = _run(home, command, {"persona": persona_id}, offline=offline)
        except PersonadError as exc:
            fail(exc)
        if as_json or "id" not in result:
            click.echo(json.dumps(result, indent=2))
        else:
            _print_persona(result)


def dm_room(session_id: str, persona_id: str) -> str:
    """The direct room between a console session and a persona (room ids are at most 64 characters)."""
    room = f"dm-{session_id}-{persona_id}".lower()
    if len(room) <= 64:
        return room
    return "dm-" + hashlib.sha256(room.encode()).hexdigest()[:32]


async def _chat(home: Path, persona_id: str, message: str | None, timeout: float) -> None:
    state = read_state(home)
    if state is None:
        raise UnavailableError(
            f"no daemon running for home {home}; start one with 'personad serve'", code="daemon_not_running"
        )
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_event(event: str, data: dict[str, Any]) -> None:
        sender = data.get("sender") or {}
        if sender.get("session_id") == persona_id and event in ("chat_delta", "chat_message"):
            replies.put_nowait({"event": event, **data})

    bus = BusClient(state["url"], state["token"], on_event=on_event, kind="console", session="console")
    await bus.connect()
    try:
        shown = await bus.call("persona_show", {"persona": persona_id})
        state = (shown.get("process") or {}).get("state")
        if state in ("stopped", "stopping", None):
            click.echo(f"(starting {persona_id}…)", err=True)
            await bus.call("persona_start", {"persona": persona_id})
        elif state != "running":
            click.echo(f"(waiting for {persona_id}, {state}…)", err=True)
            deadline = asyncio.get_running_loop().time() + timeout
            while (await bus.call("persona_show", {"persona": persona_id}))["process"]["state"] != "running":
                if asyncio.get_running_loop().time() > deadline:
                    raise UnavailableError(
                        f"{persona_id} did not come up within {timeout:.0f}s", code="timeout"
                    )
                await asyncio.sleep(0.3)
        room = dm_room("console", persona_id)
        try:
            await bus.call(
                "room_create",
                {"room": room, "direct": True, "invite": [persona_id], "topic": f"console and {persona_id}"},
            )
        except PersonadError as exc:
            if exc.code != "room_exists":
                raise
            await bus.call("room_join", {"room": room})
            await bus.call("room_invite", {"room": room, "session": persona_id})
        if message is not None:
            await _exchange(bus, room, message, replies, timeout, prefix="")
            return
        name = shown.get("name") or persona_id
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                click.echo()
                return
            if line.strip():
                await _exchange(bus, room, line, replies, timeout, prefix=f"{name}> ")
    finally:
        await bus.close()


async def _exchange(
    bus: BusClient, room: str, text: str, replies: asyncio.Queue[dict[str, Any]], timeout: float, prefix: str
) -> None:
    sent = await bus.call("chat", {"room": room, "text": text})
    my_id = sent["message"]["id"]
    streamed = False
    if prefix:
        click.echo(prefix, nl=False)
    while True:
        try:
            item = await asyncio.wait_for(replies.get(), timeout)
        except TimeoutError:
            raise UnavailableError(f"no answer within {timeout:.0f}s", code="timeout") from None
        if item["event"] == "chat_delta":
            click.echo(item["delta"], nl=False)
            sys.stdout.flush()
            streamed = True
            continue
        if (item.get("meta") or {}).get("in_reply_to") != my_id:
            continue
        if not streamed:
            click.echo(item["text"], nl=False)
        click.echo()
        return
