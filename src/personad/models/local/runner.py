"""Run a synchronous engine generation in a thread and stream its events into asyncio, one at a time.

Used by the inference worker and by the in-process provider. Generations queue on an ``asyncio.Lock``
(FIFO, so personas are served in arrival order). The lock is released by the generation thread when it
has really finished, not when the consumer stops listening: a consumer that goes away (client disconnect,
task cancelled) sets the cancel event, and the next generation starts only once the model is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from personad.models.base import ChatRequest
from personad.models.local.engine import GenerationEvent


class Engine(Protocol):
    def generate(
        self, request: ChatRequest, *, cancel: threading.Event | None = None
    ) -> Iterator[GenerationEvent]: ...


DONE = object()  # put by the producing thread after its last event


def threadsafe_put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object]) -> Callable[[object], None]:
    """A put that a worker thread may call; a no-op once the loop is closed (a generation winding down at
    shutdown)."""

    def put(item: object) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    return put


async def drain(queue: asyncio.Queue[object]) -> AsyncIterator[GenerationEvent]:
    """Yield the events a thread puts on ``queue`` until DONE; an exception put there is raised here."""
    while True:
        item = await queue.get()
        if item is DONE:
            return
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, GenerationEvent)
        yield item


class GenerationRunner:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        # One long-lived thread runs every generation: OpenMP keeps a thread team per calling thread, so a
        # fresh thread per request builds a new team each time and decodes measurably slower.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="personad-generate")
        self.waiting = 0  # generations queued behind the running one (for /health)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def stream(self, request: ChatRequest) -> AsyncIterator[GenerationEvent]:
        """Yield the generation's events; errors from the engine are re-raised here."""
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        put = threadsafe_put(loop, queue)

        def work() -> None:
            try:
                for event in self.engine.generate(request, cancel=cancel):
                    put(event)
                    if cancel.is_set():
                        break
            except BaseException as exc:
                put(exc)
            finally:
                put(DONE)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._lock.release)

        try:
            self._executor.submit(work)
        except BaseException:
            self._lock.release()
            raise
        try:
            async for event in drain(queue):
                yield event
        finally:
            cancel.set()
