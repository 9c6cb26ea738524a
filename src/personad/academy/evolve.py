"""evolveCapabilities: turn what a persona has learned (its brain's learning_experience memories) into an
adapter, and keep the adapter only if it measurably helps.

A learning experience that can teach carries a prompt and the answer that should have been given::

    {"type": "learning_experience", "content": "…what was learned…",
     "context": {"domain": "geography", "prompt": "…", "answer": "…", "outcome": "failure" | "success"}}

or is the seed's shape — ``{"content": "Successfully solved …", "context": {"domain": "physics"},
"outcome": "mastery_achieved"}`` — about the exchange it names (``context.message_id``) or follows: a
successful one teaches the answer the persona gave then (see :func:`learning_clusters`).

The domain with the most such experiences (repeated failures or successes cluster there) becomes a dataset;
a quarter of it (at least one example) is held out. The score is the mean per-token negative log-likelihood
of the held-out answers under the persona's stack, with and without the new adapter — a measurement, not a
guess. The adapter joins the persona's stack only when that loss drops; either way the attempt is recorded
in ``evolution_history`` with its success rate (the relative loss reduction, 0 when none).
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personad.errors import ConflictError
from personad.lora.registry import AdapterRegistry
from personad.models.base import AdapterRef
from personad.personas.config import PersonaStore
from personad.personas.conversation import system_prompt as persona_system_prompt

MIN_EXAMPLES = 4
POINT_WINDOW_S = 3600.0  # a seed-shaped experience is about the exchange it follows within this long
_FIND = (
    "SELECT content, context, timestamp FROM memories WHERE type = 'learning_experience'"
    " AND valid_to IS NULL ORDER BY timestamp DESC LIMIT 1000"
)
_EXCHANGES = (
    "SELECT type, content, source, context, timestamp FROM memories"
    " WHERE type IN ('conversation', 'collaboration') AND valid_to IS NULL"
    " ORDER BY timestamp DESC, rowid DESC LIMIT 1000"
)
# Outcomes that say the answer given was right (the seed's 'mastery_achieved', 'successful_…').
_GOOD = re.compile(r"success|master|achiev|solved|correct|pass|right|good|learned", re.IGNORECASE)


def _context(row: dict[str, Any]) -> dict[str, Any]:
    value = row.get("context")
    try:
        parsed = json.loads(value) if isinstance(value, str) else (value or {})
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def exchanges(brain: Any) -> list[dict[str, Any]]:
    """The persona's question → answer pairs, oldest first: a conversation message and the persona's reply
    to it (``in_reply_to``, else the reply stored right after it), and collaborations' ``learned``
    {asked, answered}."""
    rows = list(reversed(brain.query(_EXCHANGES)))
    pairs: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        context = _context(row)
        if row["type"] == "collaboration":
            learned = context.get("learned")
            if isinstance(learned, dict) and learned.get("asked") and learned.get("answered"):
                asked, answered = str(learned["asked"]), str(learned["answered"])
                pairs.append({"prompt": asked, "answer": answered, "timestamp": row["timestamp"]})
            continue
        if row["source"] != "self" or i == 0:
            continue
        question = rows[i - 1]
        asked_context = _context(question)
        reply_to = context.get("in_reply_to")
        if question["type"] != "conversation" or question["source"] == "self":
            continue
        if reply_to is not None and reply_to != asked_context.get("message_id"):
            continue
        pairs.append(
            {
                "prompt": question["content"],
                "answer": row["content"],
                "timestamp": row["timestamp"],
                "message_id": asked_context.get("message_id"),
            }
        )
    return pairs


def _pointed_to(
    experience: dict[str, Any], context: dict[str, Any], pairs: list[dict[str, Any]], used: set[int]
) -> int | None:
    """The exchange a learning experience is about: the message its context names (``message_id`` or
    ``in_reply_to``), else the latest one before it (within :data:`POINT_WINDOW_S`) no other took."""
    named = context.get("message_id") or context.get("in_reply_to")
    if named is not None:
        return next((i for i, p in enumerate(pairs) if p.get("message_id") == named), None)
    when = float(experience["timestamp"])
    for i in range(len(pairs) - 1, -1, -1):
        at = float(pairs[i]["timestamp"])
        if at <= when and i not in used:
            return i if when - at <= POINT_WINDOW_S else None
    return None


def learning_clusters(brain: Any) -> dict[str, list[dict[str, str]]]:
    """Teachable learning experiences grouped by domain: ``{domain: [{"prompt", "answer", "outcome"}]}``.

    An experience teaches when it carries ``context.prompt`` and ``context.answer`` (the answer that should
    have been given), or — the seed's shape, ``{content, context: {domain, …}, outcome}`` — when its outcome
    is a success and it points to an exchange (see :func:`_pointed_to`): the answer given then is the one
    to learn. A failed outcome without a corrected answer teaches nothing (the answer given was wrong).
    """
    clusters: dict[str, list[dict[str, str]]] = defaultdict(list)
    pairs: list[dict[str, Any]] | None = None
    used: set[int] = set()
    for row in reversed(brain.query(_FIND)):
        context = _context(row)
        domain = str(context.get("domain") or "general").lower()
        outcome = str(context.get("outcome", ""))
        prompt, answer = context.get("prompt"), context.get("answer")
        if isinstance(prompt, str) and isinstance(answer, str) and prompt.strip() and answer.strip():
            clusters[domain].append({"prompt": prompt, "answer": answer, "outcome": outcome})
            continue
        if not _GOOD.search(outcome):
            continue
        if pairs is None:
            pairs = exchanges(brain)
        index = _pointed_to(row, context, pairs, used)
        if index is not None:
            used.add(index)
            pair = pairs[index]
            clusters[domain].append({"prompt": pair["prompt"], "answer": pair["answer"], "outcome": outcome})
    return dict(clusters)


def answer_loss(
    engine: Any, system: str, pairs: Sequence[dict[str, str]], stack: Sequence[AdapterRef]
) -> float:
    """Mean per-token NLL of the answers given the prompts, under ``stack`` (teacher forcing)."""
    import torch

    from personad.lora.training import IGNORE, encode_conversation

    total, count = 0.0, 0
    manager = engine.adapter_manager
    with torch.inference_mode():
        for pair in pairs:
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": pair["prompt"]},
                {"role": "assistant", "content": pair["answer"]},
            ]
            ids, labels = encode_conversation(engine.tokenizer, messages, 1024)
            context = manager.activate(engine.model, list(stack)) if stack else _null()
            with context:
                logits = engine.model(input_ids=torch.tensor([ids])).logits[0, :-1]
            targets = torch.tensor(labels[1:])
            mask = targets != IGNORE
            losses = torch.nn.functional.cross_entropy(logits[mask], targets[mask], reduction="sum")
            total += float(losses)
            count += int(mask.sum())
    return total / max(count, 1)


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def evolve(
    home: Path,
    persona_id: str,
    engine: Any,
    *,
    train: Any = None,
    steps: int = 30,
    lr: float = 2e-3,
    seed: int = 0,
    brain: Any = None,
) -> dict[str, Any]:
    """One evolution step for a local persona; returns what was tried, measured and kept."""
    from personad.brain import Brain

    from .academy import _train_on_fresh_model

    store = PersonaStore(Path(home))
    config = store.load(persona_id)
    if config.model_provider != "local":
        raise ConflictError(
            f"persona {persona_id!r} is not on the local model; adapters need it", code="not_local"
        )
    own = brain is None
    brain = brain or Brain.open(PersonaStore(Path(home)).brain_path(persona_id))
    try:
        clusters = {d: p for d, p in learning_clusters(brain).items() if len(p) >= MIN_EXAMPLES}
        if not clusters:
            result = {
                "persona": persona_id,
                "evolved": False,
                "reason": f"no domain has {MIN_EXAMPLES}+ learning_experience memories with a prompt and"
                " an answer",
            }
            return result
        domain, pairs = max(clusters.items(), key=lambda kv: (len(kv[1]), kv[0]))
        rng = random.Random(seed)
        shuffled = pairs[:]
        rng.shuffle(shuffled)
        held = max(1, len(shuffled) // 4)
        heldout, training = shuffled[:held], shuffled[held:]
        system = persona_system_prompt(config, [], native_tools=False)
        name = f"evolved-{domain}-{persona_id}".lower().replace("_", "-")
        stack = [AdapterRef(n, config.lora_scales.get(n, 1.0)) for n in config.lora_adapters if n != name]
        before = answer_loss(engine, system, heldout, stack)
        registry = AdapterRegistry.for_home(Path(home))
        from personad.lora.training import TrainingConfig

        with tempfile.TemporaryDirectory(prefix="personad-evolve-") as tmp:
            data = Path(tmp) / "data.jsonl"
            data.write_text(
                "".join(
                    json.dumps(
                        {
                            "messages": [
                                {"role": "system", "content": system},
                                {"role": "user", "content": p["prompt"]},
                                {"role": "assistant", "content": p["answer"]},
                            ]
                        }
                    )
                    + "\n"
                    for p in training
                ),
                encoding="utf-8",
            )
            trained = (train or _train_on_fresh_model)(
                TrainingConfig(
                    name=name,
                    data=data,
                    parents=[a.name for a in stack],
                    max_steps=steps,
                    epochs=max(1, steps),
                    lr=lr,
                    seed=seed,
                    replace=True,
                ),
                registry,
                engine,
            )
        after = answer_loss(engine, system, heldout, [*stack, AdapterRef(name)])
        improvement = (before - after) / before if before > 0 else 0.0
        kept = after < before
        if kept:
            config = store.load(persona_id)
            config.lora_adapters = [n for n in config.lora_adapters if n != name] + [name]
            store.save(config)
            registry.update_metrics(
                name, {"evolve": {"heldout_loss_before": before, "heldout_loss_after": after}}
            )
        else:
            registry.delete(name)
        evolution = brain.record_evolution(
            f"learning_experience:{domain}:{len(pairs)}", name if kept else None, max(0.0, improvement)
        )
        return {
            "persona": persona_id,
            "evolved": kept,
            "domain": domain,
            "examples": len(training),
            "heldout": len(heldout),
            "heldout_loss_before": before,
            "heldout_loss_after": after,
            "improvement": improvement,
            "adapter": name if kept else None,
            "lora_hash": trained.manifest.lora_hash if kept else None,
            "evolution": evolution,
        }
    finally:
        if own:
            brain.close()
