"""Continuous batching for the shared inference worker: concurrent requests decode in one batch.

One decode thread owns the model. A request that arrives is prefilled on its own (batch 1, under its own
adapter stack), its KV cache is left-padded into the running batch, and from the next step on it decodes
together with every other active request: one forward pass per step for the whole batch, each row under
its own adapter stack through the LoRA runtime's gathered plan (see ``personad.lora.runtime``). A row
leaves the batch when it finishes or its client goes away; columns that became padding for every row are
trimmed.

Rows are left-padded: each row's real tokens end at the last column, the attention mask hides the
padding and ``position_ids`` count real tokens only, so a row computes what it would compute alone (up to
float rounding in the padded attention).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personad.errors import InvalidParamsError, UnavailableError
from personad.models.base import ChatRequest, Usage
from personad.models.local.engine import GenerationEvent, LocalEngine, _Sampler
from personad.models.local.runner import DONE, drain, threadsafe_put
from personad.models.local.textstream import IncrementalDetokenizer, StopFilter

if TYPE_CHECKING:
    import torch

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
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._plan: Any = None
        self._plan_key: tuple[Any, ...] | None = None
        self.steps = 0
        self.max_rows_seen = 0

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
        self._cache = self._mask = self._plan = self._plan_key = None

    def _adapters(self, rows: list[_Row]) -> Any:
        manager = self.engine.adapter_manager
        if manager is None or not any(r.request.adapters for r in rows):
            return contextlib.nullcontext()
        from personad.lora.manager import LoraAdapterManager

        if not isinstance(manager, LoraAdapterManager):  # rows share one gathered plan: the LoRA runtime's
            raise TypeError(f"batched adapters need a LoraAdapterManager, not {type(manager).__name__}")
        runtime = manager.runtime
        key = tuple(r.stack_key for r in rows)
        if key != self._plan_key:
            # Built when the batch's make-up changes (a row joins or leaves), then reused every step:
            # resolving names and gathering factors per step would cost more than the LoRA math.
            self._plan = runtime.plan([list(r.request.adapters) for r in rows])
            self._plan_key = key
        return runtime.apply(self._plan)

    def _admit(self, row: _Row) -> None:
        """Prefill one request alone, emit its first token, and left-pad its cache into the batch."""
        import torch
        from transformers import DynamicCache

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
            cache = DynamicCache(config=engine.model.config)
            with self._adapters([row]):
                out = engine.model(
                    input_ids=torch.tensor([row.prompt], dtype=torch.long),
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        except Exception as exc:
            row.emit(exc)
            row.emit(DONE)
            return
        row.length = len(row.prompt)
        self._take(row, out.logits[0, -1])
        if row.finish is not None:
            self._finish(row)
            return
        self._merge(row, cache)

    def _merge(self, row: _Row, cache: Any) -> None:
        import torch

        if not self._rows:
            self._rows = [row]
            self._cache = cache
            self._mask = torch.ones(1, row.length, dtype=torch.long)
            self._plan_key = None
            self._track()
            return
        assert self._mask is not None
        width = self._mask.shape[1]
        target = max(width, row.length)
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, target), _left_pad(new.keys, target)], dim=0)
            old.values = torch.cat([_left_pad(old.values, target), _left_pad(new.values, target)], dim=0)
        mask_new = torch.ones(1, row.length, dtype=torch.long)
        self._mask = torch.cat([_left_pad_mask(self._mask, target), _left_pad_mask(mask_new, target)], dim=0)
        self._rows.append(row)
        self._plan_key = None
        self._track()

    def _track(self) -> None:
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _step(self) -> None:
        """One forward pass for every active row."""
        import torch

        assert self._mask is not None
        rows = self._rows
        tokens = torch.tensor([[r.last_token] for r in rows], dtype=torch.long)
        positions = torch.tensor([[r.length] for r in rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
        padded = bool((self._mask == 0).any())
        with self._adapters(rows):
            out = self.engine.model(
                input_ids=tokens,
                attention_mask=self._mask if padded else None,
                position_ids=positions,
                cache=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.steps += 1
        for index, row in enumerate(rows):
            row.length += 1
            if row.cancel.is_set():
                row.finish = "cancelled"
                continue
            self._take(row, out.logits[index, -1])

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
        """Finish rows that are done or cancelled; remove them from the cache and trim dead columns."""
        for row in self._rows:
            if row.finish is None and row.cancel.is_set():
                row.finish = "cancelled"
        done = [i for i, r in enumerate(self._rows) if r.finish is not None]
        if not done:
            return
        import torch

        for index in done:
            self._finish(self._rows[index])
        keep = [i for i in range(len(self._rows)) if i not in set(done)]
        self._rows = [self._rows[i] for i in keep]
        self._plan_key = None
        if not self._rows:
            self._cache = self._mask = self._plan = None
            return
        assert self._mask is not None
        kept = torch.tensor(keep, dtype=torch.long)
        mask = self._mask[kept]
        live = int(torch.nonzero(mask.any(dim=0))[0])  # the first column any remaining row uses
        self._mask = mask[:, live:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[kept, :, live:, :]
            layer.values = layer.values[kept, :, live:, :]


def _closed_error() -> UnavailableError:
    return UnavailableError(
        "the batch scheduler was closed before the request finished", code="inference_unavailable"
    )


def _left_pad(tensor: Any, width: int) -> Any:
    import torch

    missing = width - tensor.shape[-2]
    if missing <= 0:
        return tensor
    pad = torch.zeros(*tensor.shape[:-2], missing, tensor.shape[-1], dtype=tensor.dtype)
    return torch.cat([pad, tensor], dim=-2)


def _left_pad_mask(mask: Any, width: int) -> Any:
    import torch

    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([torch.zeros(mask.shape[0], missing, dtype=mask.dtype), mask], dim=1)
