"""``PersonaDaemon``: a persona as a bus client whose event pipe leads to a model.

It connects to the daemon's ``/ws`` as a session of kind ``persona`` (exactly its configured capabilities),
joins its rooms, answers messages addressed to it through the same ``chat`` command a human uses, and lets
its model run commands — native tool calls where the provider has them, the ``[CMD:name] {json}`` line
protocol otherwise. A model's bad or forbidden call comes back to it as an observation, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personad.bus.ws_client import BusClient
from personad.errors import BadRequestError, InternalError, PersonadError, UnavailableError
from personad.models.base import ChatMessage, ModelProvider, ToolCall, ToolSpec, Usage
from personad.models.local.provider import SOCKET_ENV
from personad.models.registry import ProviderRegistry, load_provider_registry
from personad.personas import command_protocol, signals
from personad.personas.config import AcademySettings, PersonaConfig, PersonaStore, default_home, parse_config
from personad.personas.conversation import build_request, command_for_native, tools_from_commands
from personad.personas.mcp_tools import McpTools, is_mcp_command
from personad.personas.memory import MEMORY_PREFIX, PersonaMemory

if TYPE_CHECKING:
    from personad.brain.store import Brain
from personad.state import read_state

log = logging.getLogger(__name__)

# What an academy_training message may pass on to the academy_train job.
ACADEMY_OPTIONS = (
    "rounds",
    "attacks",
    "heldout",
    "benign",
    "steps",
    "threshold",
    "max_tokens",
    "seed",
    "domain",
)

URL_ENV = "PERSONAD_URL"
TOKEN_ENV = "PERSONAD_PERSONA_TOKEN"
DeltaSink = Callable[[str], Awaitable[None]]
STOP_DRAIN_SECONDS = 5.0
CATCH_UP_SECONDS = 600.0  # unanswered asks younger than this are answered when the persona (re)starts


@dataclass
class TurnResult:
    """One answer: the text for people, the commands it ran on the way, the tokens it used."""

    text: str
    observations: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    steps: int = 0


class PersonaDaemon:
    """The seed's PersonaDaemon: ``start()``, ``stop()``, ``handle_message()``, ``get_status``."""

    def __init__(
        self,
        config: PersonaConfig | dict[str, Any],
        academy: AcademySettings | dict[str, Any] | None = None,
        *,
        home: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        provider: ModelProvider | None = None,
        providers: ProviderRegistry | None = None,
    ) -> None:
        """``config`` is a :class:`PersonaConfig` or its dict (the seed's camelCase keys work too);
        ``academy`` the seed's second argument ``{enabled, role, trainingDomain, adversarialPartner}``.

        ``home`` is the daemon's home (default ``$PERSONAD_HOME`` or ``.continuum``, as for the CLI): where
        the persona's brain is and how :meth:`start` finds the running daemon.
        """
        if isinstance(config, dict):
            config = parse_config(config)
        if academy is not None:
            config = config.model_copy(update={"academy": AcademySettings.parse(academy)})
        self.config = config
        self.home = home if home is not None else default_home()
        self._url = url
        self._token = token
        self._provider = provider
        self._providers = providers
        self.bus: BusClient | None = None
        self.tools: list[ToolSpec] = []
        self.mcp = McpTools(config)  # its MCP servers' tools, its own (personas/mcp_tools.py)
        self.state = "stopped"
        self.started_at: float | None = None
        self.turns = 0
        self.last_error: dict[str, Any] | None = None
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._warming: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[None] | None = None
        self._evolver: asyncio.Task[None] | None = None
        self.evolutions: list[dict[str, Any]] = []  # what the periodic trigger tried (results or errors)
        # Where its brain is: its configured database_path or session folder, inside the home (checked
        # now, so a path outside the home fails here rather than at the first memory).
        self.memory: PersonaMemory | None = PersonaMemory(
            PersonaStore(self.home).brain_path_for(config), budget_tokens=config.memory_budget_tokens
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def _registry(self) -> ProviderRegistry:
        if self._providers is None:
            self._providers = load_provider_registry()
        return self._providers

    @property
    def provider(self) -> ModelProvider:
        if self._provider is None:
            self._provider = self._registry().create(self.config.model_provider, self.config.model_config_)
        return self._provider

    async def _create_on_daemon(self, url: str, token: str) -> None:
        """Save a config that is not in the daemon's store yet, through ``persona_create`` (so it is
        checked as any other: provider, adapters, paths)."""
        # Only what the caller set: a default the daemon's version may not know is the daemon's to fill.
        data = {
            **self.config.model_dump(by_alias=True, exclude_unset=True, exclude={"created_at"}),
            "id": self.config.id,
        }
        admin = BusClient(url, token, kind="api", name=f"persona-api-{self.config.id}")
        try:
            await admin.connect()
            await admin.call("persona_create", data)
        finally:
            await admin.close()
        self.reload_config()

    def _endpoint(self) -> tuple[str, str]:
        url = self._url or os.environ.get(URL_ENV)
        token = self._token or os.environ.get(TOKEN_ENV)
        if url is None or token is None:
            state = read_state(self.home)
            if state is not None:
                url, token = url or state["url"], token or state["token"]
        if url is None or token is None:
            raise UnavailableError(
                "no daemon to connect to: pass url and token, set PERSONAD_URL/PERSONAD_PERSONA_TOKEN,"
                " or give the home of a running daemon",
                code="daemon_not_running",
            )
        return url, token

    async def start(self) -> dict[str, Any]:
        """Join the bus as this persona, join its rooms and start answering."""
        if self.state == "running":
            return self.get_status()
        self.state = "starting"
        try:
            url, token = self._endpoint()
            if not PersonaStore(self.home).exists(self.config.id):
                await self._create_on_daemon(url, token)
            local = self.config.model_provider == "local" and self._provider is None
            if not local:
                self.provider  # noqa: B018 - fail fast on an unknown provider or missing key
            self.bus = BusClient(url, token, on_event=self._on_event, kind="persona", persona=self.config.id)
            await self.bus.connect()
            if local and not self.config.model_config_.get("socket") and not os.environ.get(SOCKET_ENV):
                # Not a process the daemon started (it passes the worker's address): ask for it.
                settings = await self.bus.call("persona_model_config")
                self._provider = self._registry().create("local", settings["model_config"])
        except BaseException:
            self.state = "stopped"
            if self.bus is not None:
                await self.bus.close()
                self.bus = None
            raise
        listing = await self.bus.call("commands")
        self.tools = tools_from_commands(listing["commands"])
        # Its MCP servers (capability 'mcp'): their tools are its own commands mcp.<server>.<tool>, not bus
        # commands; a server that fails is left out (get_status says why) and the persona starts anyway.
        await self.mcp.close()  # a previous start's connections, should a later step of it have failed
        self.mcp = McpTools(self.config)
        await self.mcp.start()
        self.tools += self.mcp.tool_specs()
        for room in self.config.rooms:
            try:
                await self.bus.call("room_join", {"room": room})
            except PersonadError as exc:
                log.warning("persona %s could not join %s: %s", self.config.id, room, exc.message)
        self.state = "running"
        self.started_at = time.time()
        if self.memory is not None and self._warming is None:
            # Loading the embedding model takes seconds; do it now rather than on the first message.
            self._warming = asyncio.create_task(self._warm_memory(self.memory))
        await self.bus.call("persona_ready")
        self._catch_up = asyncio.create_task(self._answer_missed(), name=f"catch-up-{self.config.id}")
        self._catch_up.add_done_callback(self._log_failure)
        if self.config.evolve_every_s and self.memory is not None and self._evolver is None:
            self._evolver = asyncio.create_task(
                self._evolve_periodically(self.config.evolve_every_s), name=f"evolve-{self.config.id}"
            )
        return self.get_status()

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        """A background task's failure is logged when it happens, with its traceback (nobody awaits it)."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("persona %s: %s failed", self.config.id, task.get_name(), exc_info=exc)

    async def _warm_memory(self, memory: PersonaMemory) -> None:
        """Load the embedding model and open the brain now rather than on the first message. Only a head
        start: a failure is logged (with its traceback) and the first recall meets, and reports, the problem
        again. Cancelled (by ``stop``) while the model loads, it ends at once and leaves the loading thread
        behind; while the brain opens, it lets that finish first, so that ``stop`` closes an open brain."""
        try:
            await memory.load_embedder()
            opening = asyncio.ensure_future(asyncio.to_thread(memory.warm))
            try:
                await asyncio.shield(opening)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):  # reported by the first recall, as any failure here
                    await opening
                raise
        except Exception:
            log.exception("persona %s: warming its memory failed", self.config.id)

    def _teachable_experiences(self) -> int:
        """How many learning experiences could teach, 0 while no domain has enough to train on."""
        from personad.academy.evolve import MIN_EXAMPLES, learning_clusters

        sizes = [len(pairs) for pairs in learning_clusters(self.db).values()]
        return sum(sizes) if sizes and max(sizes) >= MIN_EXAMPLES else 0

    async def _evolve_periodically(self, every_s: float) -> None:
        """The optional periodic evolveCapabilities: every ``every_s`` seconds, if teachable learning
        experiences were added since the last try. A failed try is logged and kept in ``evolutions`` as a
        structured error, never fatal; an unexpected one (a bug) is logged with its traceback."""
        tried_at = 0  # experiences present at the last try: the same data would train the same adapter
        while True:
            await asyncio.sleep(every_s)
            count: int | None = None
            try:
                count = await asyncio.to_thread(self._teachable_experiences)
                if count <= tried_at:
                    continue
                tried_at = count
                outcome: dict[str, Any] = await self.evolve_capabilities()
            except PersonadError as exc:
                log.warning("persona %s: periodic evolve failed: %s", self.config.id, exc.message)
                outcome = {"error": exc.to_dict()}
            except Exception as exc:  # a bug: this background task is the last place it can be seen
                log.exception("persona %s: periodic evolve failed unexpectedly", self.config.id)
                bug = InternalError(f"{type(exc).__name__}: {exc}", code="evolve_failed")
                outcome = {"error": bug.to_dict()}
            self.evolutions.append({"ts": time.time(), "experiences": count, **outcome})

    async def _answer_missed(self) -> None:
        """Answer what was said to us while we were down (a restart, a crash): the latest unanswered ask."""
        bus = self._bus()
        horizon = time.time() - CATCH_UP_SECONDS
        joined = [r["id"] for r in (await bus.call("rooms"))["rooms"] if r["joined"]]
        for room in joined:  # configured rooms and those it was invited to (direct chats)
            try:
                messages = (await bus.call("chat_history", {"room": room, "limit": 20}))["messages"]
            except PersonadError:
                continue
            mine = [
                i
                for i, m in enumerate(messages)
                if (m.get("sender") or {}).get("session_id") == self.config.id
            ]
            pending = messages[mine[-1] + 1 :] if mine else messages
            asks = [m for m in pending if m.get("ts", 0) >= horizon and self.is_addressed(m)]
            if asks:
                await self.answer_in_room(asks[-1])

    # -- the brain (the seed's remember / recall / db) ----------------------------------------------

    @property
    def db(self) -> Brain:
        """The persona's brain: ``query(sql)``, ``save_achievement(...)``, goals, emotions, …"""
        return self._memory().brain

    def _memory(self) -> PersonaMemory:
        if self.memory is None:
            raise UnavailableError(
                f"persona {self.config.id!r} has no directory for its brain; give PersonaDaemon a home",
                code="brain_unavailable",
            )
        return self.memory

    async def remember(self, memory: dict[str, Any]) -> dict[str, Any]:
        """Store a memory (learning_experience, collaboration, fact, conversation, …) in the brain."""
        return await asyncio.to_thread(self.db.remember, memory)

    async def recall(
        self, query: str, k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Hybrid search of the brain: full text, embeddings, recency and importance, fused."""
        return await asyncio.to_thread(self.db.recall, query, k, filters)

    async def on_graduation(self, data: dict[str, Any]) -> dict[str, Any]:
        """The seed's onGraduation({achievement, new_capabilities, academy_score}).

        Records a skill row with the adapter's ``lora_hash`` (``data["lora_name"]``, default the persona's
        newest adapter) in the brain, sets the persona's status to graduated, adds ``new_capabilities``, and
        announces it on the bus (event ``persona_graduated``; the web page shows a notification).
        """
        from personad.academy.graduation import graduate

        achievement = data.get("achievement")
        if not isinstance(achievement, str) or not achievement:
            raise BadRequestError("on_graduation needs data.achievement (a name)", code="invalid_params")
        lora_name = data.get("lora_name") or (
            self.config.lora_adapters[-1] if self.config.lora_adapters else None
        )
        result = await asyncio.to_thread(
            graduate,
            self.home,
            self.config.id,
            achievement=achievement,
            lora_name=lora_name,
            academy_score=float(data.get("academy_score", 0.0)),
            new_capabilities=list(data.get("new_capabilities") or []),
            brain=self.db,
        )
        self.reload_config()
        if self.bus is not None:
            await self._bus().call("persona_graduated", {"persona": self.config.id, "graduation": result})
        return result

    async def acquire_skill(self, skill: str, *, timeout: float = 600) -> dict[str, Any]:
        """The seed's ``otherPersona.acquireSkill(skill)``: fetch the skill's adapter chain from the mesh,
        verified, into this persona's stack (the daemon runs it as the ``mesh_acquire`` job; the persona
        needs the ``mesh`` capability)."""
        result = await self._bus().call_job("mesh_acquire", {"skill": skill}, timeout=timeout)
        self.reload_config()
        return result

    async def evolve_capabilities(self, *, steps: int = 30) -> dict[str, Any]:
        """The seed's evolveCapabilities(): train an adapter from this persona's learning experiences and keep
        it only if a measured score improves (runs in the daemon as ``persona_evolve``)."""
        result = await self._bus().call_job("persona_evolve", {"steps": steps}, timeout=3600)
        self.reload_config()
        return result

    async def stop(self) -> None:
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up.cancel()  # old asks can wait for the next start; shutting down cannot
        if self._evolver is not None:
            self._evolver.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the loop records its own failures
                await self._evolver
            self._evolver = None
        if self.bus is not None:
            await self.bus.close(drain=STOP_DRAIN_SECONDS)  # let answers in flight finish and be stored
            self.bus = None
        if self._warming is not None:
            # Waiting for the model to load would hold a stopping persona for seconds (longer than the
            # supervisor's grace on a busy host); the warm-up is only a head start.
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # logs its own failure
                await self._warming
            self._warming = None
        if self.memory is not None:
            self.memory.close()
        await self.mcp.close()  # its MCP connections (stdio servers are stopped)
        if self._provider is not None:
            await self._provider.aclose()
        self.state = "stopped"

    async def wait_closed(self) -> None:
        """Return when the bus connection ends (the daemon went away)."""
        if self.bus is not None:
            await self.bus.closed.wait()

    def get_status(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "name": self.config.display_name,
            "state": self.state,
            "provider": self.config.model_provider,
            "model": self.config.model_config_.get("model"),
            "adapters": list(self.config.lora_adapters),
            "capabilities": list(self.config.capabilities),
            "session": self.bus.welcome if self.bus is not None else None,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "turns": self.turns,
            "last_error": self.last_error,
            "mcp_servers": self.mcp.status(),
        }

    # -- messages (the seed's handleMessage) ---------------------------------------------------------

    async def handle_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Handle ``execute_command``, ``chat_message``, ``lora_adaptation`` or ``get_status``."""
        kind = message.get("type")
        data = message.get("data") or {}
        if not isinstance(data, dict):
            raise BadRequestError("message data must be an object", code="invalid_message")
        if kind == "execute_command":
            return await self._bus().call(str(data.get("command")), data.get("params") or {})
        if kind == "chat_message":
            return await self._chat_message(data)
        if kind == "lora_adaptation":
            return await self._lora_adaptation(data)
        if kind == "academy_training":
            return await self._academy_training(data)
        if kind == "get_status":
            return self.get_status()
        raise BadRequestError(
            f"unknown message type {kind!r};"
            " one of execute_command, chat_message, lora_adaptation, academy_training, get_status",
            code="unknown_message_type",
        )

    async def _academy_training(self, data: dict[str, Any]) -> dict[str, Any]:
        """The seed's ``academy_training`` message: an Academy run (the ``academy_train`` job) with this
        persona in its Academy role. A student is trained (``data.droid``/``data.sheriff`` optional, its
        adversarial partner is the droid); a testing_droid attacks and a protocol_sheriff judges
        ``data.student``, with the adversarial partner on the other side. ``data`` may also carry the
        job's options (rounds, attacks, heldout, benign, steps, threshold, max_tokens, seed, domain).
        """
        settings = self.config.academy or AcademySettings()
        if not settings.enabled:
            raise BadRequestError(
                f"the Academy is not enabled for persona {self.config.id!r} (academy.enabled is false)",
                code="academy_disabled",
            )
        options = {k: v for k, v in data.items() if k in ACADEMY_OPTIONS}
        options.setdefault("domain", settings.training_domain)
        partner = settings.adversarial_partner
        if settings.role == "student":
            roles = {
                "student": self.config.id,
                "droid": data.get("droid") or partner,
                "sheriff": data.get("sheriff"),
            }
        else:
            student = data.get("student")
            if not isinstance(student, str) or not student:
                raise BadRequestError(
                    f"a {settings.role} trains someone: academy_training needs data.student (a persona id)",
                    code="invalid_params",
                )
            mine, other = ("droid", "sheriff") if settings.role == "testing_droid" else ("sheriff", "droid")
            roles = {"student": student, mine: self.config.id, other: data.get(other) or partner}
        params = {**options, **{k: v for k, v in roles.items() if v is not None}}
        return await self._bus().call_job("academy_train", params, timeout=float(data.get("timeout", 7200)))

    def _bus(self) -> BusClient:
        if self.bus is None:
            raise UnavailableError(f"persona {self.config.id!r} is not started", code="persona_not_running")
        return self.bus

    async def _chat_message(self, data: dict[str, Any]) -> dict[str, Any]:
        text = data.get("message")
        if not isinstance(text, str) or not text:
            raise BadRequestError("chat_message needs data.message (text)", code="invalid_params")
        if data.get("context"):
            text = f"{text}\n\nContext: {json.dumps(data['context'], default=str)}"
        trigger = {"text": text, "sender": {"name": str(data.get("sender") or "api"), "kind": "api"}}
        conversation = await self._with_memories([ChatMessage("user", text)], trigger)
        result = await self.run_turn(conversation)
        await self._store_exchange(
            trigger, result.text, data.get("room") if isinstance(data.get("room"), str) else None
        )
        reply: dict[str, Any] = {
            "reply": result.text,
            "observations": result.observations,
            "usage": vars(result.usage),
        }
        room = data.get("room")
        if isinstance(room, str):
            posted = await self._bus().call("chat", {"room": room, "text": result.text or "…"})
            reply["message"] = posted["message"]
        return reply

    async def _lora_adaptation(self, data: dict[str, Any]) -> dict[str, Any]:
        """The persona's adapter stack, changed through the bus so the registry checks every name.

        Actions: ``list``; ``load_stack`` (``adapters``: names or {name, scale}); ``unload`` (``adapters``
        or all); ``create_adapter`` (``name``, ``examples`` or ``data``, training options: trains on the
        local model, needs the ``lora`` capability); ``save_stack`` (``name``: flattens the current stack
        into one registered adapter, needs ``lora``).
        """
        action = data.get("action")
        options = {k: v for k, v in data.items() if k != "action"}
        if action == "list":
            return self._stack()
        if action == "load_stack":
            if not isinstance(options.get("adapters"), list):
                raise BadRequestError(
                    "load_stack needs data.adapters: a list of names or {name, scale}", code="invalid_params"
                )
            await self._bus().call("lora_load_stack", {"adapters": options["adapters"]})
        elif action == "unload":
            await self._bus().call("lora_unload", {"adapters": options.get("adapters")})
        elif action == "create_adapter":
            manifest = await self._bus().call_job("lora_train", options)
            return {**self._stack(), "created": manifest}
        elif action == "save_stack":
            if not self.config.lora_adapters:
                raise BadRequestError("the stack is empty: nothing to save", code="invalid_params")
            stack = [
                {"name": n, "scale": self.config.lora_scales.get(n, 1.0)} for n in self.config.lora_adapters
            ]
            saved = await self._bus().call(
                "lora_export", {"stack": stack, "register_as": options.get("name")}
            )
            return {**self._stack(), "saved": saved.get("registered")}
        else:
            raise BadRequestError(
                f"unknown lora_adaptation action {action!r};"
                " one of load_stack, unload, list, create_adapter, save_stack",
                code="invalid_params",
            )
        self.reload_config()
        return self._stack()

    def _stack(self) -> dict[str, Any]:
        return {"adapters": list(self.config.lora_adapters), "scales": dict(self.config.lora_scales)}

    def reload_config(self) -> None:
        """Re-read the persona's config file (the daemon changed it: e.g. a new adapter stack)."""
        self.config = PersonaStore(self.home).load(self.config.id)

    # -- the event pipe ------------------------------------------------------------------------------

    def is_addressed(self, message: dict[str, Any]) -> bool:
        """Whether a room message asks this persona for an answer."""
        sender = message.get("sender") or {}
        if sender.get("session_id") == self.config.id:
            return False
        text = str(message.get("text", ""))
        handles = {h.lower() for h in (self.config.id, self.config.display_name.replace(" ", "")) if h}
        mentions = {m.lower() for m in re.findall(r"@([A-Za-z0-9_-]+)", text)}
        mentioned = bool(mentions & handles)
        if sender.get("kind") == "persona":
            return mentioned  # personas answer each other only when called on, so they cannot loop
        if message.get("direct") or mentioned:
            return True
        if mentions:
            return False  # addressed to someone else: not ours, even where we answer everything
        room = message.get("room")
        return "*" in self.config.respond_in or room in self.config.respond_in

    async def _on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "persona_config_changed" and data.get("persona") == self.config.id:
            self.reload_config()
        elif event == "chat_message" and self.is_addressed(data):
            await self.answer_in_room(data)

    async def answer_in_room(self, message: dict[str, Any]) -> None:
        room = str(message["room"])
        lock = self._room_locks.setdefault(room, asyncio.Lock())
        async with lock:
            bus = self._bus()
            stream_id = f"{self.config.id}-{secrets.token_hex(4)}"
            started = time.perf_counter()

            async def send_delta(delta: str) -> None:
                await bus.call("chat_delta", {"room": room, "stream_id": stream_id, "delta": delta})

            try:
                conversation = await self._with_memories(await self._room_context(room, message), message)
                result = await self.run_turn(conversation, on_delta=send_delta)
                text = result.text or "…"
                meta = {
                    "stream_id": stream_id,
                    "usage": vars(result.usage),
                    "observations": len(result.observations),
                    "seconds": round(time.perf_counter() - started, 3),
                    "in_reply_to": message.get("id"),
                }
            except PersonadError as exc:
                self.last_error = exc.to_dict()
                log.warning("persona %s failed to answer: %s", self.config.id, exc.message)
                text = f"(I could not answer: {exc.code}: {exc.message})"
                meta = {"stream_id": stream_id, "error": exc.to_dict(), "in_reply_to": message.get("id")}
            try:
                await bus.call("chat", {"room": room, "text": text, "meta": meta})
            finally:  # the exchange is remembered even if the bus went away meanwhile
                await self._store_exchange(message, "" if "error" in meta else text, room)

    async def _with_memories(
        self, conversation: list[ChatMessage], trigger: dict[str, Any]
    ) -> list[ChatMessage]:
        """Put the recalled memories (a quoted user-role note) just before the message being answered."""
        if self.memory is None:
            return conversation
        seen = {str(trigger.get("text", ""))} | {c.content for c in conversation}
        note = await self.memory.recall_note(str(trigger.get("text", "")), skip_contents=seen)
        state = await self._state_lines()
        if state:
            # Its goals and latest mood (see personas/signals.py) ride in the same quoted user-role note.
            head = note.content if note is not None else f"{MEMORY_PREFIX} Notes from your memory:"
            lines = "\n".join(f"- {line}" for line in state)
            note = ChatMessage(
                "user", f"{head}\nYour goals and mood (quoted text is what others said):\n{lines}"
            )
        if note is None:
            return conversation
        return [*conversation[:-1], note, conversation[-1]]

    async def _state_lines(self) -> list[str]:
        if self.memory is None or self.memory.budget_tokens <= 0:
            return []
        try:
            return await asyncio.to_thread(signals.context_lines, self.memory.brain)
        except Exception:  # context improves answers; failing to read it must not stop one
            log.exception("could not read the goals and mood of %s", self.config.id)
            return []

    async def _store_exchange(self, trigger: dict[str, Any], reply: str, room: str | None) -> None:
        if self.memory is None:
            return
        await self.memory.store_exchange(trigger, reply, room=room)
        try:
            # One emotion per exchange, goals set or updated from what was said (personas/signals.py).
            await asyncio.to_thread(
                signals.record_exchange, self.memory.brain, str(trigger.get("text", "")), reply, room
            )
        except Exception:  # the answer was given; a lost signal is logged, not raised at the user
            log.exception("could not record the signals of an exchange for %s", self.config.id)

    async def _room_context(self, room: str, trigger: dict[str, Any]) -> list[ChatMessage]:
        history: list[dict[str, Any]] = []
        if self.config.history_messages:
            page = await self._bus().call(
                "chat_history", {"room": room, "limit": self.config.history_messages}
            )
            history = page["messages"]
        if not any(m.get("id") == trigger.get("id") for m in history):
            history.append(trigger)
        conversation: list[ChatMessage] = []
        for item in history:
            sender = item.get("sender") or {}
            if sender.get("session_id") == self.config.id:
                conversation.append(ChatMessage("assistant", str(item.get("text", ""))))
            else:
                conversation.append(
                    ChatMessage("user", f"{sender.get('name', 'someone')}: {item.get('text', '')}")
                )
        return conversation

    # -- one model turn, with commands ---------------------------------------------------------------

    async def run_turn(
        self, conversation: list[ChatMessage], *, on_delta: DeltaSink | None = None
    ) -> TurnResult:
        """Ask the model; run the commands it asks for; feed back observations; return the final answer."""
        provider = self.provider
        native = provider.supports_tools
        messages = list(conversation)
        result = TurnResult(text="")
        for step in range(self.config.max_command_steps + 1):
            request = build_request(self.config, messages, tools=self.tools, native_tools=native)
            line_filter = command_protocol.LineFilter()
            text_parts: list[str] = []
            calls: list[ToolCall] = []
            async for chunk in provider.stream(request):
                if chunk.text:
                    text_parts.append(chunk.text)
                    visible = chunk.text if native else line_filter.feed(chunk.text)
                    if visible and on_delta is not None:
                        await on_delta(visible)
                calls.extend(chunk.tool_calls or [])
                if chunk.usage is not None:
                    result.usage.prompt_tokens += chunk.usage.prompt_tokens
                    result.usage.completion_tokens += chunk.usage.completion_tokens
            if not native and on_delta is not None and (rest := line_filter.flush()):
                await on_delta(rest)
            raw = "".join(text_parts)
            result.steps = step + 1
            shown: list[str] = [result.text] if result.text else []
            may_run = step < self.config.max_command_steps
            if native:
                result.text = "\n".join([*shown, raw.strip()]).strip()
                if not calls or not may_run:
                    break
                messages.append(ChatMessage("assistant", raw, tool_calls=calls))
                for call in calls:
                    # A native tool name back to its command (mcp__calc__add: mcp.calc.add; conversation.py).
                    command = command_for_native(call.name, self.tools)
                    observation = await self._run_command(command, call.arguments)
                    result.observations.append(observation)
                    messages.append(
                        ChatMessage(
                            "tool", json.dumps(observation["outcome"], default=str), tool_call_id=call.id
                        )
                    )
            else:
                visible_text, parsed = command_protocol.parse(raw)
                # The answer is everything people saw streamed, across command rounds.
                result.text = "\n".join([*shown, visible_text]).strip()
                if not parsed or not may_run:
                    break
                messages.append(ChatMessage("assistant", raw))
                lines = []
                for item in parsed:
                    if isinstance(item, command_protocol.MalformedCall):
                        error = {"code": "invalid_command_syntax", "message": item.problem}
                        observation = {"command": item.name, "ok": False, "outcome": error}
                    else:
                        observation = await self._run_command(item.name, item.params)
                    result.observations.append(observation)
                    key = "error" if not observation["ok"] else "result"
                    lines.append(
                        command_protocol.observation(observation["command"], **{key: observation["outcome"]})
                    )
                messages.append(ChatMessage("user", "\n".join(lines)))
        self.turns += 1
        await asyncio.to_thread(self._count_skill_uses)
        return result

    def _count_skill_uses(self) -> None:
        """Each answer given with adapters counts one use of the skills they are (``skills.usage_count``);
        the mesh's demand for a skill is these counts."""
        if not self.config.lora_adapters or self.memory is None:
            return
        from personad.lora.registry import AdapterRegistry

        try:
            stack = AdapterRegistry.for_home(self.home).resolve(self.config.lora_adapters)
            self.memory.brain.use_skills_with_hashes([e.manifest.lora_hash for e in stack])
        except PersonadError:  # a stack the registry no longer resolves was already refused by the model
            log.warning("could not count skill uses for %s", self.config.id, exc_info=True)

    async def _run_command(self, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
        """Run a model-requested command through the bus; any failure becomes the observation."""
        if not isinstance(arguments, dict):
            error = {"code": "invalid_command_syntax", "message": "arguments must be a JSON object"}
            return {"command": name, "ok": False, "outcome": error}
        if is_mcp_command(name):  # one of its MCP tools, not a bus command (personas/mcp_tools.py)
            return await self.mcp.call(name, arguments)
        try:
            result = await self._bus().call(name, arguments)
        except PersonadError as exc:
            return {"command": name, "ok": False, "outcome": exc.to_dict()}
        return {"command": name, "ok": True, "outcome": result}
