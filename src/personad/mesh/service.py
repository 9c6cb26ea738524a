"""The daemon's side of the mesh: starts the node when ``mesh`` is on, turns its events into bus events,
counts skill uses for demand, and publishes graduations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from personad.errors import PersonadError

from .errors import MeshDisabledError
from .node import MeshConfig, MeshNode

if TYPE_CHECKING:
    from personad.daemon import Daemon

log = logging.getLogger(__name__)


def local_base_model_sha256() -> str:
    """The embedded model's GGUF sha256 (hashed once, then remembered in the model cache)."""
    from personad.models.local.engine import default_cache_dir, find_gguf, gguf_sha256

    return gguf_sha256(find_gguf(), default_cache_dir())


class MeshService:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._node: MeshNode | None = None
        self._unsubscribe: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending = _Pending(daemon.home / "mesh" / PENDING_FILE)

    @property
    def enabled(self) -> bool:
        return self._node is not None

    @property
    def node(self) -> MeshNode:
        if self._node is None:
            raise MeshDisabledError(
                "the mesh is off on this daemon; start it with `personad serve --mesh` (or PERSONAD_MESH=1)"
            )
        return self._node

    async def start(self) -> None:
        settings = self.daemon.settings
        if not settings.mesh:
            return
        base = settings.mesh_base_model_sha256
        if not base:
            base = await asyncio.to_thread(local_base_model_sha256)
        config = MeshConfig(
            home=self.daemon.home,
            listen=settings.mesh_listen,
            name=settings.mesh_name,
            base_model_sha256=base,
            poll_s=settings.mesh_poll_s,
            replicate=settings.mesh_replicate,
            download_limit=settings.mesh_download_limit,
            upload_limit=settings.mesh_upload_limit,
            mdns=settings.mesh_mdns,
            advertise=settings.mesh_advertise,
        )
        node = MeshNode(config, emit=self._emit, loads=self._loads)
        await node.start()
        self._node = node
        self._pending = _Pending(node.dir / PENDING_FILE)
        self._unsubscribe = self.daemon.events.subscribe(self._on_event)
        log.info("mesh node %s listening on %s", node.node_id[:16], node.addr)
        for skill, entry in self._pending.read().items():
            self._spawn(self._resume(skill, entry.get("persona"), str(entry.get("session") or "console")))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, skill: str, persona: str | None, session_id: str) -> None:
        """Continue an acquisition a restart interrupted, as a job, once a seeder is listed again."""
        node = self.node
        for _ in range(600):
            try:
                node.find(skill)
                break
            except PersonadError:
                await asyncio.sleep(0.1)
        else:
            log.warning("could not resume acquiring %s: no trusted peer announces it", skill)
            return

        async def work(reporter: Any) -> dict[str, Any]:
            return await self.acquire(skill, persona, session_id, progress=_reporter_progress(reporter))

        self.daemon.jobs.start(
            "mesh_acquire", work, session_id=session_id, title=f"resume {skill}", exclusive=False
        )

    async def acquire(
        self, skill: str, persona: str | None, session_id: str, *, progress: Any = None
    ) -> dict[str, Any]:
        """``acquireSkill``: fetch, verify and register the skill's adapter chain, then put it in the
        persona's stack (and its brain's skills, so its use is counted)."""
        node = self.node
        if persona is not None:
            self.daemon.persona_store.load(persona)  # persona_not_found before any download
        self._pending.add(skill, persona, session_id)
        try:
            result = await node.acquire_skill(skill, progress=progress)
        except PersonadError:
            self._pending.remove(skill)
            raise
        self._pending.remove(skill)
        if persona is not None:
            result.update(await asyncio.to_thread(self._load_into, persona, result))
        return result

    def _load_into(self, persona: str, result: dict[str, Any]) -> dict[str, Any]:
        store = self.daemon.persona_store
        config = store.load(persona)
        adapter = result["adapter"]
        if adapter not in config.lora_adapters:
            config.lora_adapters = [*config.lora_adapters, adapter]
            store.save(config)
            self.daemon.events.publish("persona_config_changed", {"persona": persona}, to=[persona])
        known = self.node.directory.get(result["transfers"][-1]["info_hash"]) if result["transfers"] else None
        effectiveness = known.announcement.effectiveness if known else None
        self.daemon.brain(persona).save_achievement(
            result["skill"],
            result["lora_hash"],
            effectiveness if effectiveness is not None else 0.5,
            ["mesh"],
        )
        return {"persona": persona, "stack": list(config.lora_adapters)}

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._node is not None:
            await self._node.close()
            self._node = None

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        self.daemon.events.broadcast(event, data)

    def _loads(self, lora_hash: str) -> int:
        """How often personas here answered with this adapter (their brains' ``skills.usage_count``)."""
        total = 0
        for config in self.daemon.persona_store.list_personas():
            try:
                total += self.daemon.brain(config.id).skill_usage_by_hash().get(lora_hash, 0)
            except PersonadError:
                continue
        return total

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "persona_graduated" and self._node is not None:
            self._spawn(self._publish_graduation(data))

    async def _publish_graduation(self, data: dict[str, Any]) -> None:
        """Graduation publishes the skill: the adapter is announced and the persona's status updated."""
        node = self.node
        persona = str(data.get("persona", ""))
        adapter = data.get("lora_name")
        skill = str(data.get("achievement") or adapter or "")
        try:
            if adapter:
                score = data.get("academy_score")
                metrics = {"effectiveness": round(float(score), 4)} if isinstance(score, int | float) else {}
                await node.broadcast_capability(str(adapter), skill=skill, persona=persona, metrics=metrics)
            await node.update_persona_status(
                persona,
                status="graduated",
                ready_for_deployment=True,
                specializations=[skill] if skill else [],
            )
        except PersonadError:
            log.warning("could not publish the graduation of %s on the mesh", persona, exc_info=True)


PENDING_FILE = "pending.json"


class _Pending:
    """Acquisitions asked for and not finished: a daemon killed mid-download resumes them at start."""

    def __init__(self, path: Any) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        import json

        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        import json

        from personad.state import write_private

        write_private(self.path, json.dumps(data, indent=1) + "\n")

    def add(self, skill: str, persona: str | None, session_id: str) -> None:
        data = self.read()
        data[skill] = {"persona": persona, "session": session_id}
        self._write(data)

    def remove(self, skill: str) -> None:
        data = self.read()
        if data.pop(skill, None) is not None:
            self._write(data)


def _reporter_progress(reporter: Any) -> Any:
    def progress(data: dict[str, Any]) -> None:
        reporter.report(
            step=data.get("done"),
            total=data.get("total"),
            message=f"{data.get('adapter')}: {data.get('peers')} peers",
            adapter=data.get("adapter"),
        )

    return progress
