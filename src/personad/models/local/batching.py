"""Continuous batching for the shared inference worker: concurrent requests decode in one batch.

One decode thread owns the model. A request that arrives is prefilled on its own (batch 1, under its own
adapter stack) into the next free slot of the packed decoder's KV cache (``decoder.KVCache``), and from
the next step on it decodes together with every other active request: one forward pass per step for the
whole batch, each row under its own adapter stack through the LoRA runtime's gathered plan (see
``personad.lora.runtime``). Row ``i`` of the batch lives in slot ``i``, at its own position: its key and
value are written there and its attention sees only its own positions, so a row computes what it would
compute alone (up to float rounding). A row leaves the batch when it finishes or its client goes away;
the rows after it move down one slot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from personad.errors import InvalidParamsError, UnavailableError
from personad.models.base import ChatRequest, Usage
from personad.models.local.engine import GenerationEvent, LocalEngine, _Sampler
from personad.models.local.runner import DONE, drain, threadsafe_put
from personad.models.local.textstream import IncrementalDetokenizer, StopFilter

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8


@dataclass
class _Row:
    request: ChatRequest
    emit: Any  # callable(item) -> None, thread-safe
    cancel: threading.Event
    prompt: list[int] = field(default_factory=list)
    budget: int = 0
    sampler: Any = None
    detok: Any = None
    stops: Any = None
    generated: int = 0
    last_token: int = 0
    length: int = 0  # real tokens in this row's cache
    started: float = 0.0
    first_token_at: float | None = None
    finish: str | None = None

    @property
    def stack_key(self) -> tuple[tuple[str, float], ...]:
        return tuple((a.name, a.scale) for a in self.request.adapters)


class BatchScheduler:
    """Same interface as ``GenerationRunner`` (``stream``, ``busy``, ``waiting``), batching requests."""

    def __init__(self, engine: LocalEngine, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._cache: Any = None  # the decoder's KVCache: row i of the batch in slot i
        self._current_plan: Any = None
        self._plan_key: tuple[Any, ...] | None = None
        self.steps = 0
        self.max_rows_seen = 0
        self._all_threads = _torch_threads()

    # -- the runner interface -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._rows)

    async def stream(self, request: ChatRequest) -> AsyncIterator[GenerationEvent]:
        """Yield the request's events as its row decodes; errors are re-raised here."""
        self.engine.validate(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        row = _Row(request=request, emit=threadsafe_put(loop, queue), cancel=threading.Event())
        with self._cond:
            if self._closed:
                raise _closed_error()
            self._pending.append(row)
            self._ensure_thread()
            self._cond.notify()
        try:
            async for event in drain(queue):
                yield event
        finally:
            row.cancel.set()
            with self._cond:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            # One long-lived thread: OpenMP keeps a thread team per calling thread.
            self._thread = threading.Thread(target=self._loop, name="personad-batch", daemon=True)
            self._thread.start()

    # -- the decode loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._pending and not self._rows:
                        self._cond.wait()
                    if self._closed:
                        # Rows still waiting fail too: nothing else would ever end their streams.
                        self._fail_all(_closed_error(), self._pending)
                        self._pending.clear()
                        return
                    admitted: list[_Row] = []
                    while self._pending and len(self._rows) + len(admitted) < self.max_batch:
                        admitted.append(self._pending.popleft())
                try:
                    while admitted:
                        self._admit(admitted[0])
                        admitted.pop(0)
                    self._drop_finished()
                    if self._rows:
                        self._step()
                        self._drop_finished()
                except Exception as exc:  # a bug or OOM: every row in flight gets the error, not a hang
                    log.exception("batched decode failed")
                    # Admitted rows not merged into the batch yet are in flight too.
                    self._fail_all(exc, admitted)

    def _fail_all(self, exc: BaseException, also: Iterable[_Row] = ()) -> None:
        rows = list(self._rows)
        rows += [r for r in also if all(r is not other for other in rows)]
        for row in rows:
            row.emit(exc)
            row.emit(DONE)
        self._rows = []
        self._cache = self._current_plan = self._plan_key = None

    def _plan(self, rows: list[_Row]) -> Any:
        key = tuple(r.stack_key for r in rows)
        if key != self._plan_key:
            # Built when the batch's make-up changes (a row joins or leaves), then reused every step:
            # resolving names and gathering factors per step would cost more than the LoRA math.
            self._current_plan = self.engine.plan([list(r.request.adapters) for r in rows])
            self._plan_key = key
        return self._current_plan

    def _admit(self, row: _Row) -> None:
        """Prefill one request into the next free cache slot and emit its first token."""
        engine = self.engine
        row.started = time.perf_counter()
        try:
            row.prompt = engine.prompt_ids(row.request.messages)
            room = engine.max_context - len(row.prompt)
            if room < 1:
                raise InvalidParamsError(
                    f"the conversation is {len(row.prompt)} tokens; the local model's context is"
                    f" {engine.max_context}",
                    code="context_length_exceeded",
                )
            engine.check_adapters(row.request.adapters)
            row.budget = min(row.request.params.max_tokens, room)
            row.sampler = _Sampler(row.request.params)
            tokenizer = engine.tokenizer
            row.detok = IncrementalDetokenizer(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
            row.stops = StopFilter(row.request.params.stop)
            if row.cancel.is_set():
                row.finish = "cancelled"
                self._finish(row)
                return
            if self._cache is None:
                self._cache = engine.decoder.new_cache(self.max_batch, len(row.prompt) + 64)
            plan = engine.plan([row.request.adapters])
            self._threads(rows=len(row.prompt))
            logits = engine.decoder.prefill(row.prompt, self._cache, len(self._rows), plan)
        except Exception as exc:
            row.emit(exc)
            row.emit(DONE)
            return
        row.length = len(row.prompt)
        self._take(row, logits[0])
        if row.finish is not None:
            self._finish(row)
            return
        self._rows.append(row)  # its slot is its index: the prefill wrote slot len(rows)
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _threads(self, rows: int) -> None:
        """One thread for a one-row decode step, all of them for prefills and batched steps.

        In the worker, the event loop streams every token while the step runs; with two OpenMP threads on
        two cores they keep preempting each other and one row decodes at ~32 tok/s, on one thread at ~44.
        A prefill or a batch of rows has enough work per matmul to gain from both (docs/engine.md).
        """
        import torch

        want = self.engine.single_row_threads if rows == 1 else (self.engine.threads or self._all_threads)
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def _step(self) -> None:
        """One forward pass for every active row."""
        rows = self._rows
        self._threads(rows=len(rows))
        logits = self.engine.decoder.decode(
            [r.last_token for r in rows], [r.length for r in rows], self._cache, self._plan(rows)
        )
        self.steps += 1
        for index, row in enumerate(rows):
            row.length += 1
            if row.cancel.is_set():
                row.finish = "cancelled"
                continue
            self._take(row, logits[index])

    def _take(self, row: _Row, logits: Any) -> None:
        """Sample the row's next token and emit what became final; sets ``row.finish`` when done."""
        if row.cancel.is_set():
            row.finish = "cancelled"
            return
        token = row.sampler.pick(logits)
        row.generated += 1
        if row.first_token_at is None:
            row.first_token_at = time.perf_counter()
        if token in self.engine.stop_token_ids:
            row.finish = "stop"
            return
        delta = row.stops.feed(row.detok.push(token))
        if delta:
            row.emit(GenerationEvent(text=delta))
        if row.stops.stopped:
            row.finish = "stop"
            return
        row.last_token = token
        if row.generated >= row.budget:
            row.finish = "length"

    def _finish(self, row: _Row) -> None:
        if row.finish != "cancelled" and not row.stops.stopped:
            tail = row.stops.feed(row.detok.flush()) + row.stops.flush()
            if row.stops.stopped:
                row.finish = "stop"
            if tail:
                row.emit(GenerationEvent(text=tail))
        ended = time.perf_counter()
        timings = {"total_seconds": round(ended - row.started, 4)}
        if row.first_token_at is not None:
            timings["first_token_seconds"] = round(row.first_token_at - row.started, 4)
            if row.generated > 1:
                timings["decode_tokens_per_second"] = round(
                    (row.generated - 1) / max(ended - row.first_token_at, 1e-9), 2
                )
        usage = Usage(len(row.prompt), row.generated)
        row.emit(GenerationEvent(finish_reason=row.finish, usage=usage, timings=timings))
        row.emit(DONE)

    def _drop_finished(self) -> None:
        """Finish rows that are done or cancelled; move the rows after them down into the freed slots."""
        for row in self._rows:
            if row.finish is None and row.cancel.is_set():
                row.finish = "cancelled"
        if all(r.finish is None for r in self._rows):
            return
        kept: list[_Row] = []
        for slot, row in enumerate(self._rows):
            if row.finish is not None:
                self._finish(row)
                continue
            if slot != len(kept):
                self._cache.move(slot, len(kept), row.length)
            kept.append(row)
        self._rows = kept
        self._plan_key = None
        if not kept:
            self._cache = self._current_plan = None  # an idle worker holds no cache


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _closed_error() -> UnavailableError:
    return UnavailableError(
        "the batch scheduler was closed before the request finished", code="inference_unavailable"
    )
