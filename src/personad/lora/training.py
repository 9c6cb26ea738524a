"""LoRA SFT on chat data with PEFT, registered in the adapter registry when done.

A child adapter learns the residual on top of its parents: the whole parent chain is loaded into the same
PEFT model, active at scale 1.0 and frozen, so the child's factors are trained against the forward pass it
will later run in (the runtime applies ``parents + child`` as one stack). Only assistant tokens carry loss,
so the adapter learns to answer, not to predict the user. Runs are deterministic for a seed: the child's
initial factors, the shuffling and therefore the saved weights (and their ``lora_hash``) repeat.

An optional *anchor* set keeps behaviour that must not change: on its assistant tokens the loss is the KL
divergence from the model without the child (the frozen parents alone) to the model with it, so the child
is pulled back towards the parents' whole next-token distribution there — not just towards one sampled
answer, which is what hard self-distilled labels give and which let near-tie answers flip.
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from personad.errors import BadRequestError, ConflictError

from .manifest import CONFIG_FILE, AdapterManifest, validate_name
from .registry import AdapterParentMissingError, AdapterRegistry
from .weights import sha256_file

ROLES = ("system", "user", "assistant")
# PEFT adapter names cannot hold dots, so registry names map to safe internal ones; not "train", which
# would collide with nn.Module.train inside PEFT's ModuleDicts.
TRAIN_ADAPTER = "child"
IGNORE = -100
_TRAINABLE = re.compile(rf"\.lora_[AB]\.{TRAIN_ADAPTER}\.")


@dataclass
class TrainingConfig:
    """One training run: what to train on, where it goes in the registry, and the optimiser settings."""

    name: str  # dotted; its nearest prefix that is an adapter is an implied parent
    data: Path  # chat-format JSONL: one {"messages": [{"role": ..., "content": ...}, ...]} per line
    parents: list[str] = field(default_factory=list)  # explicit extra parents, beyond the implied one
    rank: int = 8
    alpha: float | None = None  # default 2 * rank
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    epochs: int = 1  # passes over the data; ignored when max_steps is given
    # exactly this many optimizer steps, the data reshuffled each pass (as HF Trainer: overrides epochs)
    max_steps: int | None = None
    lr: float = 1e-3
    seed: int = 0
    batch_size: int = 4
    max_length: int = 512
    device: str | None = None  # None = "cuda" if available, else "cpu"
    replace: bool = False  # replace an existing adapter of that name
    dropout: float = 0.0  # LoRA dropout; 0 keeps runs bit-reproducible on any device
    anchor_data: Path | None = None  # chat JSONL whose assistant turns must keep the parents' distribution
    anchor_weight: float = 1.0  # weight of the anchor KL term against the training loss

    def validate(self) -> None:
        """Refuse settings that could only fail (or silently do nothing) after the model is loaded."""
        validate_name(self.name)
        for parent in self.parents:
            validate_name(parent)
        problems = [
            msg
            for bad, msg in (
                (self.rank < 1, "rank must be at least 1"),
                (self.alpha is not None and self.alpha <= 0, "alpha must be positive"),
                (not self.targets, "targets must name at least one module"),
                (self.epochs < 1, "epochs must be at least 1"),
                (self.max_steps is not None and self.max_steps < 1, "max_steps must be at least 1"),
                (not self.lr > 0, "lr must be positive"),
                (self.batch_size < 1, "batch_size must be at least 1"),
                (self.max_length < 2, "max_length must be at least 2"),
                (not 0 <= self.dropout < 1, "dropout must be in [0, 1)"),
                (self.anchor_weight < 0, "anchor_weight must not be negative"),
                (self.name in self.parents, "an adapter cannot be its own parent"),
            )
            if bad
        ]
        if problems:
            raise BadRequestError(f"invalid training config: {'; '.join(problems)}", code="invalid_params")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank


@dataclass
class TrainingProgress:
    """Passed to ``on_step`` after every optimizer step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    elapsed_s: float


@dataclass
class TrainingResult:
    manifest: AdapterManifest
    losses: list[float]
    steps: int
    seconds: float
    examples: int
    tokens: int
    epochs: int  # passes over the data run (the last may be partial)


def _data_error(path: Path, line: int | None, problem: str) -> BadRequestError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return BadRequestError(
        f"training data {where}: {problem}; each line must be"
        ' {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]} with at least one'
        " assistant message",
        code="invalid_training_data",
    )


def load_chat_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """The conversations in a chat JSONL file, validated line by line (blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _data_error(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _data_error(path, None, f"cannot be read as UTF-8 text ({exc})") from None
    conversations: list[list[dict[str, str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _data_error(path, number, f"not valid JSON ({exc.msg})") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise _data_error(path, number, 'no "messages" list')
        conversation: list[dict[str, str]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _data_error(path, number, f"message {index} is not an object")
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                raise _data_error(path, number, f"message {index} has role {role!r}, not one of {ROLES}")
            if not isinstance(content, str):
                raise _data_error(
                    path, number, f"message {index} content is {type(content).__name__}, not str"
                )
            conversation.append({"role": role, "content": content})
        if not any(m["role"] == "assistant" for m in conversation):
            raise _data_error(path, number, "no assistant message to learn from")
        if conversation[0]["role"] == "assistant":  # chat templates cannot render the empty prompt before it
            raise _data_error(
                path, number, "the first message is an assistant reply; put a user message first"
            )
        conversations.append(conversation)
    if not conversations:
        raise _data_error(path, None, "no conversations (the file is empty)")
    return conversations


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return str(
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    )


def encode_conversation(
    tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one conversation; labels are IGNORE outside the assistant turns.

    An assistant turn's span runs from the end of the prefix rendered with the generation prompt to the end
    of the prefix including the message, so it covers the reply and its end-of-turn token but not the
    template's role header. Spans are measured in characters and mapped through the tokenizer's offsets,
    which stays right where a BPE merge would straddle a token-count boundary.
    """
    full = _render(tokenizer, messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], True)
        through = _render(tokenizer, messages[: index + 1], False)
        if not (full.startswith(before) and full.startswith(through)):
            raise BadRequestError(
                "the tokenizer's chat template does not render conversations prefix by prefix, so assistant"
                " turns cannot be located for training",
                code="unsupported_chat_template",
            )
        spans.append((len(before), len(through)))
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])[:max_length]
        starts = [begin for begin, _ in encoded["offset_mapping"]]
        inside = [any(a <= starts[i] < b for a, b in spans) for i in range(len(ids))]
    else:  # no offsets: count the tokens of each boundary's prefix instead
        ids = list(tokenizer(full, add_special_tokens=False)["input_ids"])[:max_length]
        count = [
            len(tokenizer(full[:c], add_special_tokens=False)["input_ids"]) for span in spans for c in span
        ]
        inside = [any(count[j] <= i < count[j + 1] for j in range(0, len(count), 2)) for i in range(len(ids))]
    return ids, [token if keep else IGNORE for token, keep in zip(ids, inside, strict=True)]


@dataclass
class _Example:
    ids: list[int]
    labels: list[int]


def _collate(batch: Sequence[_Example], pad_id: int, torch: Any) -> tuple[Any, Any, Any]:
    """Right-padded ``(input_ids, attention_mask, labels)`` tensors."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels)
    return ids, mask, labels


def _parent_chain(
    config: TrainingConfig, registry: AdapterRegistry, base_model_sha256: str
) -> tuple[list[str], list[str]]:
    """The new adapter's direct parents and every ancestor, outermost first; raises before any training if
    one is missing. A dotted prefix that is not an adapter is a namespace, not a parent."""
    direct = registry.direct_parents(config.name, config.parents)
    for parent in direct:
        if not registry.exists(parent):
            raise AdapterParentMissingError(
                f"adapter {config.name!r} needs its parent {parent!r}, which is not in the registry"
                f" ({registry.root}); train or import {parent!r} first",
            )
    chain = [entry.name for entry in registry.resolve(direct)] if direct else []
    if config.name in chain:
        raise ConflictError(
            f"adapter {config.name!r} would be its own ancestor through {', '.join(direct)}",
            code="adapter_cycle",
        )
    for name in chain:
        theirs = registry.manifest(name).base_model_sha256
        if theirs and base_model_sha256 and theirs != base_model_sha256:
            raise ConflictError(
                f"parent adapter {name!r} was trained on another base model ({theirs[:12]}), not the one"
                f" given ({base_model_sha256[:12]})",
                code="adapter_base_mismatch",
            )
        registry.load(name)  # re-hashes the weights: a tampered parent is refused here
    return direct, chain


def _build_peft_model(model: Any, config: TrainingConfig, registry: AdapterRegistry, chain: list[str]) -> Any:
    """``model`` wrapped by PEFT with the frozen parent chain and the fresh trainable adapter, all active."""
    import torch
    from peft import LoraConfig, LoraModel, get_peft_model
    from peft.tuners.lora.layer import Linear as LoraLinear

    lora_config = LoraConfig(
        r=config.rank,
        # PEFT annotates lora_alpha as int but only divides by it (scaling = alpha / r), so a float alpha
        # such as the default 2.0 * rank is honoured as given.
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)  # the child's initial A factors depend on the seed alone
    try:
        with warnings.catch_warnings():
            # PEFT probes transformers' deprecated is_gradient_checkpointing; not ours to fix, not the user's.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, lora_config, adapter_name=TRAIN_ADAPTER)
    except ValueError as exc:  # PEFT's "Target modules ... not found in the base model"
        raise BadRequestError(
            f"cannot train targets {config.targets}: {exc}", code="invalid_params"
        ) from None
    for name, module in peft_model.named_modules():
        if TRAIN_ADAPTER in getattr(module, "lora_A", {}) and not isinstance(module, LoraLinear):
            raise BadRequestError(
                f"target {name!r} is not a linear layer; only additive LoRA on linear layers is supported",
                code="invalid_params",
            )
    internal = [f"p{i}" for i in range(len(chain))]
    for parent, adapter_name in zip(chain, internal, strict=True):
        peft_model.load_adapter(str(registry.folder(parent)), adapter_name=adapter_name)
    # Every adapter in the list runs in the forward pass, each at its own alpha / r: scale 1.0 in stack terms.
    # PeftModel registers its tuner as a submodule, so its static type is only nn.Module's attribute type.
    cast(LoraModel, peft_model.base_model).set_adapter([*internal, TRAIN_ADAPTER])
    for name, param in peft_model.named_parameters():
        param.requires_grad_(_TRAINABLE.search(name) is not None)
    return peft_model


@contextmanager
def _child_off(peft_model: Any) -> Iterator[None]:
    """The forward pass of the frozen parents alone: the trainable adapter's scaling is 0 inside."""
    from peft.tuners.lora.layer import LoraLayer

    saved = [
        (module, module.scaling[TRAIN_ADAPTER])
        for module in peft_model.modules()
        if isinstance(module, LoraLayer) and TRAIN_ADAPTER in module.scaling
    ]
    for module, _ in saved:
        module.scaling[TRAIN_ADAPTER] = 0.0
    try:
        yield
    finally:
        for module, value in saved:
            module.scaling[TRAIN_ADAPTER] = value


def _anchor_kl(peft_model: Any, ids: Any, mask: Any, labels: Any, torch: Any) -> Any:
    """Mean KL(parents-only ‖ with child) of the next-token distributions at the labelled positions."""
    keep = labels[:, 1:] != IGNORE
    with torch.no_grad(), _child_off(peft_model):
        teacher = peft_model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
    student = peft_model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
    return torch.nn.functional.kl_div(
        torch.log_softmax(student.float(), dim=-1),
        torch.log_softmax(teacher.float(), dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def _encode_file(path: Path, tokenizer: Any, max_length: int) -> tuple[list[_Example], int]:
    """The file's conversations as examples with at least one labelled token, and how many were skipped."""
    encoded = [_Example(*encode_conversation(tokenizer, c, max_length)) for c in load_chat_jsonl(path)]
    examples = [e for e in encoded if any(label != IGNORE for label in e.labels)]
    if not examples:
        raise _data_error(Path(path), None, f"no assistant tokens within max_length {max_length}")
    return examples, len(encoded) - len(examples)


def _saved_folder(root: Path) -> Path:
    """The folder PEFT wrote the adapter into (non-"default" adapters land in a subfolder of their name)."""
    found = sorted(p.parent for p in root.rglob(CONFIG_FILE))
    if len(found) != 1:
        raise RuntimeError(f"expected one saved PEFT adapter under {root}, found {found}")
    return found[0]


def train_adapter(
    config: TrainingConfig,
    registry: AdapterRegistry,
    *,
    model: Any,
    tokenizer: Any,
    base_model: str,
    base_model_sha256: str,
    created_by: str = "personad",
    on_step: Callable[[TrainingProgress], None] | None = None,
) -> TrainingResult:
    """Train ``config.name`` on ``config.data`` over its frozen parents and register it.

    ``model`` is consumed: PEFT injects layers into it and it ends on the CPU, so pass a fresh copy that is
    not needed afterwards (never the model serving requests). Nothing is written to the base model's or the
    parents' files.
    """
    import torch

    config.validate()
    if registry.exists(config.name) and not config.replace:
        raise ConflictError(
            f"adapter {config.name!r} already exists; delete it first or pass replace", code="adapter_exists"
        )
    direct, chain = _parent_chain(config, registry, base_model_sha256)
    data_sha256 = sha256_file(Path(config.data)) if Path(config.data).is_file() else ""
    examples, skipped = _encode_file(Path(config.data), tokenizer, config.max_length)
    anchors = (
        _encode_file(Path(config.anchor_data), tokenizer, config.max_length)[0]
        if config.anchor_data is not None and config.anchor_weight > 0
        else []
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad_id = int(pad_id) if pad_id is not None else 0
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")

    peft_model = _build_peft_model(model, config, registry, chain)
    peft_model.to(device)
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / config.batch_size)
    # As in HF Trainer, max_steps overrides epochs: passes repeat, each reshuffled, until it is reached, and
    # the last pass stops part-way if per_epoch does not divide it. The shuffles come from one seeded
    # stream, so a run of N steps is the same (same lora_hash) whether N came from epochs or max_steps.
    total_steps = config.max_steps if config.max_steps is not None else per_epoch * config.epochs
    epochs_run = math.ceil(total_steps / per_epoch)
    shuffler = random.Random(config.seed)
    torch.manual_seed(config.seed)
    losses: list[float] = []
    anchor_losses: list[float] = []
    anchor_order: list[int] = []
    started = time.monotonic()
    step = 0
    for epoch in range(epochs_run):
        order = list(range(len(examples)))
        shuffler.shuffle(order)
        for first in range(0, len(order), config.batch_size)[: total_steps - step]:
            batch = [examples[i] for i in order[first : first + config.batch_size]]
            ids, mask, labels = (t.to(device) for t in _collate(batch, pad_id, torch))
            logits = peft_model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE,
            )
            if anchors:
                if len(anchor_order) < config.batch_size:  # a fresh shuffled pass over the anchors
                    anchor_order += shuffler.sample(range(len(anchors)), len(anchors))
                picked = [anchors[anchor_order.pop(0)] for _ in range(min(config.batch_size, len(anchors)))]
                a_ids, a_mask, a_labels = (t.to(device) for t in _collate(picked, pad_id, torch))
                kl = _anchor_kl(peft_model, a_ids, a_mask, a_labels, torch)
                anchor_losses.append(float(kl.detach()))
                loss = loss + config.anchor_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(TrainingProgress(step, total_steps, epoch, losses[-1], time.monotonic() - started))
    seconds = time.monotonic() - started

    peft_model.to("cpu")
    tokens = sum(len(e.ids) for e in examples)
    training = {
        "data_file": Path(config.data).name,
        "data_sha256": data_sha256,
        "examples": len(examples),
        "skipped_examples": skipped,
        "anchor_examples": len(anchors),
        "anchor_weight": config.anchor_weight if anchors else None,
        "anchor_kl": [anchor_losses[0], anchor_losses[-1]] if anchor_losses else None,
        "tokens": tokens,
        "labelled_tokens": sum(label != IGNORE for e in examples for label in e.labels),
        "epochs": epochs_run,  # passes over the data run (the last may be partial), not the setting
        "steps": step,
        "steps_per_epoch": per_epoch,
        "max_steps": config.max_steps,
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "lr": config.lr,
        "seed": config.seed,
        "rank": config.rank,
        "alpha": config.lora_alpha,
        "targets": list(config.targets),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 3),
        "device": device,
    }
    with tempfile.TemporaryDirectory(prefix="personad-train-") as tmp:
        peft_model.save_pretrained(tmp, selected_adapters=[TRAIN_ADAPTER])
        manifest = registry.register(
            config.name,
            _saved_folder(Path(tmp)),
            parents=direct,
            infer_parent=False,  # exactly the parents it was trained over
            base_model=base_model,
            base_model_sha256=base_model_sha256,
            created_by=created_by,
            training=training,
            metrics={},
            replace=config.replace,
        )
    return TrainingResult(manifest, losses, step, seconds, len(examples), tokens, epochs_run)
