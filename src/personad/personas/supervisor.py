"""Runs each persona as its own OS process and keeps it running.

A persona process that dies is logged and restarted with exponential backoff; the daemon and the other
personas carry on. Each start gets a fresh token that lets that process open only its own persona session.
The shared local inference worker (one model copy for every local persona) is started on first need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personad.errors import ConflictError, UnavailableError
from personad.personas.config import PersonaConfig, PersonaStore
from personad.personas.persona import TOKEN_ENV, URL_ENV
from personad.privacy import register_secret

if TYPE_CHECKING:
    from personad.daemon import Daemon

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a run this long resets the backoff
STOP_GRACE = 10.0


@dataclass
class PersonaProcess:
    persona_id: str
    state: str = "stopped"  # starting, running, backoff, stopping, stopped
    process: asyncio.subprocess.Process | None = None
    token: str | None = None
    restarts: int = 0
    backoff: float = BACKOFF_START
    started_at: float | None = None
    last_exit: dict[str, Any] | None = None
    monitor: asyncio.Task[None] | None = None
    wanted: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.process.pid if self.process is not None and self.process.returncode is None else None,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "last_exit": self.last_exit,
        }


class PersonaSupervisor:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.store = PersonaStore(daemon.home)
        self._procs: dict[str, PersonaProcess] = {}
        self._inference: Any = None  # InferenceWorkerProcess, imported lazily (torch is heavy)
        self._inference_lock = asyncio.Lock()
        self._inference_watch: asyncio.Task[None] | None = None

    # -- tokens: how a persona process proves who it is ----------------------------------------------

    def persona_for_token(self, token: str | None) -> str | None:
        if not token:
            return None
        for persona_id, proc in self._procs.items():
            if proc.token is not None and secrets.compare_digest(proc.token.encode(), token.encode()):
                return persona_id
        return None

    def mark_ready(self, persona_id: str) -> None:
        proc = self._procs.get(persona_id)
        if proc is not None:
            proc.state = "running"  # only now: it has joined its rooms and answers
            proc.ready.set()

    # -- the shared inference worker ---------------------------------------------------------------

    async def inference_endpoint(self) -> tuple[str, str]:
        """The worker's socket and token, starting it on first use (and again if it died)."""
        async with self._inference_lock:
            worker = self._inference
            if worker is None or not worker.alive:
                from personad.models.local.process import InferenceWorkerProcess

                # A restarted worker keeps the old token, so running personas stay authorised.
                token = worker.token if worker is not None else None
                worker = InferenceWorkerProcess(self.daemon.home, token=token)
                await worker.start()
                self._inference = worker
                if self._inference_watch is None:
                    self._inference_watch = asyncio.create_task(
                        self._watch_inference(), name="inference-watch"
                    )
            register_secret(worker.token)
            return str(worker.socket), worker.token

    async def _watch_inference(self) -> None:
        """Restart a worker that died, with backoff, while any local persona may still need it."""
        delay = BACKOFF_START
        while True:
            await asyncio.sleep(1.0)
            worker = self._inference
            if worker is None or worker.alive:
                delay = BACKOFF_START
                continue
            log.warning("the inference worker died; restarting it in %.1fs", delay)
            self.daemon.events.publish("inference_worker_crashed", {"restart_in": delay})
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)
            try:
                await self.inference_endpoint()
            except Exception:  # the next round tries again
                log.exception("could not restart the inference worker")

    async def provider_config(self, config: PersonaConfig) -> dict[str, Any]:
        """The provider config a persona runs with (the local provider gets the worker's address)."""
        model_config = dict(config.model_config_)
        if config.model_provider == "local":
            socket_path, token = await self.inference_endpoint()
            model_config.update(socket=socket_path, token=token)
        return model_config

    # -- lifecycle -----------------------------------------------------------------------------------

    def status(self, persona_id: str) -> dict[str, Any]:
        proc = self._procs.get(persona_id)
        return proc.describe() if proc is not None else PersonaProcess(persona_id).describe()

    async def start(self, persona_id: str, *, wait: bool = True, timeout: float = 180) -> dict[str, Any]:
        config = self.store.load(persona_id)
        proc = self._procs.setdefault(persona_id, PersonaProcess(persona_id))
        if proc.wanted and proc.state in ("starting", "running", "backoff"):
            raise ConflictError(f"persona {persona_id!r} is already {proc.state}", code="persona_running")
        proc.wanted = True
        proc.restarts = 0
        proc.backoff = BACKOFF_START
        await self._spawn(proc, config)
        proc.monitor = asyncio.create_task(self._monitor(proc), name=f"persona-monitor-{persona_id}")
        if wait:
            try:
                await asyncio.wait_for(proc.ready.wait(), timeout)
            except TimeoutError:
                raise UnavailableError(
                    f"persona {persona_id!r} did not join the bus within {timeout:.0f}s;"
                    f" see {self.store.session_dir(persona_id) / 'logs' / 'process.log'}",
                    code="persona_start_failed",
                ) from None
        return self.status(persona_id)

    async def _spawn(self, proc: PersonaProcess, config: PersonaConfig) -> None:
        proc.state = "starting"
        proc.ready.clear()
        proc.token = secrets.token_urlsafe(32)
        register_secret(proc.token)
        model_config = await self.provider_config(config)
        env = {
            **os.environ,
            URL_ENV: self.daemon.url or "",
            TOKEN_ENV: proc.token,
            "PERSONAD_MODEL_CONFIG": json.dumps(model_config),
            "PYTHONUNBUFFERED": "1",
        }
        logs = self.store.session_dir(config.id) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "process.log", "ab") as out:
            proc.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "personad.personas.process",
                "--home",
                str(self.daemon.home),
                "--persona",
                config.id,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # a Ctrl-C to the daemon's terminal is the daemon's to handle
            )
        proc.started_at = time.time()
        log.info("persona %s started as pid %s", config.id, proc.process.pid)

    async def _monitor(self, proc: PersonaProcess) -> None:
        while proc.wanted:
            code: int | None = None
            if proc.process is not None:
                code = await proc.process.wait()
                ran_for = time.time() - (proc.started_at or time.time())
                proc.last_exit = {"code": code, "at": time.time(), "ran_seconds": round(ran_for, 3)}
                if ran_for > STABLE_AFTER:
                    proc.backoff = BACKOFF_START
            if not proc.wanted:
                break
            proc.restarts += 1
            delay = proc.backoff
            proc.backoff = min(BACKOFF_MAX, proc.backoff * 2)
            self._log_crash(proc, code, delay)
            self.daemon.events.publish(
                "persona_crashed", {"persona": proc.persona_id, "exit_code": code, "restart_in": delay}
            )
            proc.state = "backoff"
            await asyncio.sleep(delay)
            if not proc.wanted:
                break
            try:
                await self._spawn(proc, self.store.load(proc.persona_id))
            except Exception:  # keep supervising: what failed now may be fixed before the next try
                log.exception("could not restart persona %s", proc.persona_id)
                proc.process = None
        proc.state = "stopped"

    def _log_crash(self, proc: PersonaProcess, code: int | None, delay: float) -> None:
        if code is None:
            described = "failed to start"
        else:
            described = f"signal {-code}" if code < 0 else f"exit code {code}"
        line = (
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')} persona {proc.persona_id} died ({described});"
            f" restart #{proc.restarts} in {delay:.1f}s\n"
        )
        log.warning(line.strip())
        logs = self.store.session_dir(proc.persona_id) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "crashes.log", "a", encoding="utf-8") as fh:
            fh.write(line)

    async def stop(self, persona_id: str) -> dict[str, Any]:
        proc = self._procs.get(persona_id)
        if proc is None or not proc.wanted:
            return self.status(persona_id)
        proc.wanted = False
        proc.state = "stopping"
        process = proc.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if proc.monitor is not None:
            proc.monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await proc.monitor
        proc.token = None
        proc.state = "stopped"
        session = self.daemon.sessions.find(persona_id)
        if session is not None:
            await self.daemon.sessions.close(session)
        return self.status(persona_id)

    async def start_autostart(self) -> None:
        for config in self.store.list_personas():
            if config.autostart:
                try:
                    await self.start(config.id, wait=False)
                except Exception:
                    log.exception("autostart of persona %s failed", config.id)

    async def close(self) -> None:
        ids = list(self._procs)
        results = await asyncio.gather(*(self.stop(pid) for pid in ids), return_exceptions=True)
        for persona_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):  # shutting down goes on; the failure is not lost
                log.error("stopping persona %s failed", persona_id, exc_info=result)
        if self._inference_watch is not None:
            self._inference_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inference_watch
            self._inference_watch = None
        if self._inference is not None:
            await self._inference.stop()
            self._inference = None
