"""An asyncio WebSocket client of the bus, used by persona processes and the console chat."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from personad.errors import CommandFailedError, UnavailableError, WaitTimeoutError, error_from_dict

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


def job_outcome(job: dict[str, Any]) -> dict[str, Any]:
    """A finished job's result, or its error raised as the same class it was raised as in the daemon."""
    if job["state"] == "succeeded":
        result: dict[str, Any] = job["result"]
        return result
    error = job.get("error") or {}
    if job["state"] == "cancelled":
        raise CommandFailedError(f"job {job['job_id']} was cancelled", code="job_cancelled")
    raise error_from_dict(error)


class BusClient:
    """Runs commands over ``/ws`` and hands pushed events to ``on_event``."""

    def __init__(self, url: str, token: str, *, on_event: EventHandler | None = None, **query: str) -> None:
        base = url.rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
        self._url = f"{base}/ws?{urlencode({'token': token, **query})}"
        self._on_event = on_event
        self._conn: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._event_tasks: set[asyncio.Task[Any]] = set()
        self.welcome: dict[str, Any] = {}
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 10) -> dict[str, Any]:
        try:
            self._conn = await connect(self._url, max_size=None, open_timeout=timeout)
        except (TimeoutError, OSError) as exc:
            raise UnavailableError(f"cannot reach the bus: {exc}", code="daemon_unreachable") from exc
        first = json.loads(await asyncio.wait_for(self._conn.recv(), timeout))
        if first.get("type") != "welcome":
            await self._conn.close()
            raise error_from_dict(first.get("error") or {})
        self.welcome = first["data"]
        self._reader = asyncio.create_task(self._read_loop(), name="bus-client-reader")
        return self.welcome

    async def call(
        self, command: str, params: dict[str, Any] | None = None, timeout: float = 300
    ) -> dict[str, Any]:
        """Run a command; returns its result or raises the bus's error."""
        if self._conn is None or self.closed.is_set():
            raise UnavailableError("not connected to the bus", code="daemon_unreachable")
        request_id = f"c{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        envelope = {
            "type": "execute_command",
            "id": request_id,
            "data": {"command": command, "params": params or {}},
        }
        try:
            await self._conn.send(json.dumps(envelope))
            reply = await asyncio.wait_for(future, timeout)
        except ConnectionClosed as exc:
            raise UnavailableError("the bus connection closed", code="daemon_unreachable") from exc
        except TimeoutError:
            raise WaitTimeoutError(
                f"no reply to {command!r} within {timeout:g} s; the daemon may still be working on it"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if reply.get("ok"):
            return reply["result"]
        # The wire carries code and message; callers (personas) act on the code.
        raise error_from_dict(reply.get("error") or {})

    async def call_job(
        self, command: str, params: dict[str, Any] | None = None, timeout: float = 3600
    ) -> dict[str, Any]:
        """Run a long command (a job) and wait for it; returns the job's result or raises its error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reply = await self.call(command, params)
        job = reply.get("job")
        if not isinstance(job, dict):
            return reply  # not a job after all: an ordinary result
        while job["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
            left = deadline - loop.time()
            if left <= 0:
                raise WaitTimeoutError(
                    f"job {job['job_id']} ({command}) still {job['state']} after {timeout:g} s; it goes on"
                    " in the daemon (job_status / job_cancel)"
                )
            job = (await self.call("job_wait", {"job_id": job["job_id"], "timeout": min(left, 60.0)}))["job"]
        return job_outcome(job)

    async def _read_loop(self) -> None:
        assert self._conn is not None
        try:
            async for raw in self._conn:
                message = json.loads(raw)
                kind = message.get("type")
                if kind in ("command_result", "error") and message.get("id") in self._pending:
                    future = self._pending[message["id"]]
                    if not future.done():
                        future.set_result(message)
                elif kind == "event" and self._on_event is not None:
                    self._dispatch_event(message["event"], message.get("data") or {})
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        UnavailableError("the bus connection closed", code="daemon_unreachable")
                    )

    def _dispatch_event(self, event: str, data: dict[str, Any]) -> None:
        assert self._on_event is not None
        result = self._on_event(event, data)
        if asyncio.iscoroutine(result):
            # Handlers may run commands themselves, so they must not block the reader.
            task = asyncio.create_task(result)
            self._event_tasks.add(task)
            task.add_done_callback(self._event_done)

    def _event_done(self, task: asyncio.Task[Any]) -> None:
        self._event_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler failed", exc_info=task.exception())

    async def close(self, drain: float = 0.0) -> None:
        """Close the connection; with ``drain``, first give running event handlers that long to finish."""
        if drain and self._event_tasks:
            await asyncio.wait(set(self._event_tasks), timeout=drain)
        for task in list(self._event_tasks):
            task.cancel()
        if self._conn is not None:
            await self._conn.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
