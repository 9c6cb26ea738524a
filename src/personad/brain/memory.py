"""Validating and normalising what a caller asks the brain to remember."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from personad.errors import BadRequestError

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# `self`, `system`, or `kind:name` (user:ana, persona:scout-1, tool:browser); no control characters.
SOURCE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}(:[^\x00-\x1f\x7f]{1,200})?$")
MAX_CONTENT_CHARS = 100_000
MAX_KEY_CHARS = 500

_INTERACTION_KEYS = ("with_persona", "room_id", "outcome", "learned")
ALLOWED_KEYS = frozenset(
    {
        "type",
        "content",
        "context",
        "importance",
        "relevance",
        "source",
        "key",
        "timestamp",
        *_INTERACTION_KEYS,
    }
)
_WHITESPACE = re.compile(r"\s+")
_KEY_SEPARATORS = re.compile(r"[._\-/:]+")


def invalid(message: str) -> BadRequestError:
    """The one error every malformed memory raises."""
    return BadRequestError(message, code="invalid_memory")


def normalise_text(text: str) -> str:
    """Collapse runs of whitespace, so re-sending the same thing reformatted is still the same thing."""
    return _WHITESPACE.sub(" ", text).strip()


def normalise_key(key: str) -> str:
    """Fact subjects compare case-insensitively: "User.Name" and "user.name" are one subject."""
    return normalise_text(key).casefold()


def embed_text(content: str, key: str | None) -> str:
    """What the embedder sees: the subject matters as much as the words, so prefix it."""
    if key is None:
        return content
    subject = _KEY_SEPARATORS.sub(" ", key)
    return f"{subject}: {content}"


def content_hash(type_: str, key: str | None, content: str, source: str) -> str:
    """What makes two memories "the same": type, subject, normalised content and who said it."""
    payload = json.dumps([type_, key, normalise_text(content), source], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Interaction:
    with_persona: str
    room_id: str | None
    outcome: str | None
    learned: Any


@dataclass(frozen=True)
class MemoryInput:
    type: str
    content: str
    context: dict[str, Any]
    importance: float
    relevance: float
    source: str
    key: str | None
    timestamp: float
    content_hash: str
    interaction: Interaction | None

    @property
    def text_for_embedding(self) -> str:
        """The text the embedder sees for this memory."""
        return embed_text(self.content, self.key)


def _unit(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise invalid(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _optional_str(raw: dict[str, Any], name: str, limit: int = 500) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise invalid(f"{name} must be a non-empty string of at most {limit} characters, got {value!r}")
    return value.strip()


def _learned_text(learned: Any) -> str:
    if isinstance(learned, str):
        return learned
    if isinstance(learned, list):
        return "; ".join(item if isinstance(item, str) else json.dumps(item) for item in learned)
    return json.dumps(learned, ensure_ascii=False, sort_keys=True)


def _interaction(raw: dict[str, Any], context: dict[str, Any]) -> Interaction:
    # Collaboration details may come top-level or inside context; top-level wins.
    merged = {
        name: raw[name] if raw.get(name) is not None else context.get(name) for name in _INTERACTION_KEYS
    }
    with_persona = _optional_str(merged, "with_persona", 200)
    if with_persona is None:
        raise invalid("a collaboration memory needs with_persona (the persona id it worked with)")
    learned = merged["learned"]
    try:
        json.dumps(learned)
    except (TypeError, ValueError) as exc:
        raise invalid(f"learned must be JSON-serialisable: {exc}") from None
    return Interaction(
        with_persona=with_persona,
        room_id=_optional_str(merged, "room_id", 200),
        outcome=_optional_str(merged, "outcome", 10_000),
        learned=learned,
    )


def _epoch(value: Any) -> Any:
    """A datetime (naive ones are local time, as Python's ``datetime.now()``) or an ISO 8601 string
    (``2026-12-04T10:00:00Z``, the seed's JavaScript ``Date``) as epoch seconds; anything else as given."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid(
                f"timestamp {value!r} is not an ISO 8601 date-time (e.g. 2026-12-04T10:00:00Z)"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def parse_memory(raw: Any, now: float) -> MemoryInput:
    """Validate one memory dict (see Brain.remember) and return it normalised."""
    if not isinstance(raw, dict):
        raise invalid(f"a memory must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - ALLOWED_KEYS)
    if unknown:
        raise invalid(f"unknown memory field(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")

    type_ = raw.get("type")
    if not isinstance(type_, str) or not TYPE_PATTERN.match(type_):
        raise invalid(
            f"type must be a lowercase identifier such as 'fact' or 'learning_experience', got {type_!r}"
        )

    context = raw.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise invalid(f"context must be an object, got {type(context).__name__}")
    try:
        json.dumps(context)
    except (TypeError, ValueError) as exc:
        raise invalid(f"context must be JSON-serialisable: {exc}") from None

    interaction = _interaction(raw, context) if type_ == "collaboration" else None
    if interaction is not None:
        # Keep the memory row self-describing: recall returns the collaboration details with it.
        context = {**context, **{k: v for k, v in vars(interaction).items() if v is not None}}
    else:
        # The seed's learning_experience carries `outcome` (and may carry the others) top-level: kept in
        # the context, top-level winning, so nothing a caller gave is dropped.
        extra = {k: raw[k] for k in _INTERACTION_KEYS if raw.get(k) is not None}
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise invalid(f"outcome/learned must be JSON-serialisable: {exc}") from None
        context = {**context, **extra}

    content = raw.get("content")
    if content is None and interaction is not None and (interaction.learned or interaction.outcome):
        parts = [f"Collaborated with {interaction.with_persona}"]
        if interaction.room_id:
            parts[0] += f" in room {interaction.room_id}"
        if interaction.outcome:
            parts.append(f"Outcome: {interaction.outcome}")
        if interaction.learned:
            parts.append(f"Learned: {_learned_text(interaction.learned)}")
        content = ". ".join(parts)
    if not isinstance(content, str) or not content.strip():
        raise invalid("content must be a non-empty string (a collaboration may give learned/outcome instead)")
    if len(content) > MAX_CONTENT_CHARS:
        raise invalid(f"content is {len(content)} characters; the limit is {MAX_CONTENT_CHARS}")
    content = content.strip()

    source = raw.get("source", "self")
    if not isinstance(source, str) or not SOURCE_PATTERN.match(source.strip()):
        raise invalid(
            f"source must look like 'self', 'system', 'user:<name>' or 'persona:<id>', got {source!r}"
        )
    source = source.strip()

    key = raw.get("key")
    if key is not None:
        if not isinstance(key, str) or not normalise_key(key) or len(key) > MAX_KEY_CHARS:
            raise invalid(
                f"key must be a non-empty string of at most {MAX_KEY_CHARS} characters, got {key!r}"
            )
        key = normalise_key(key)

    timestamp = _epoch(raw.get("timestamp"))
    if timestamp is None:
        timestamp = now
    elif (
        isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp)
    ):
        raise invalid(f"timestamp must be epoch seconds, a datetime or an ISO 8601 string, got {timestamp!r}")
    elif timestamp < 0:
        raise invalid(f"timestamp must not be negative, got {timestamp!r}")

    return MemoryInput(
        type=type_,
        content=content,
        context=context,
        importance=_unit(raw.get("importance"), "importance", 0.5),
        relevance=_unit(raw.get("relevance"), "relevance", 1.0),
        source=source,
        key=key,
        timestamp=float(timestamp),
        content_hash=content_hash(type_, key, content, source),
        interaction=interaction,
    )
