"""Strict JSON on every transport: what comes in and what goes out is RFC 8259 JSON, nothing looser.

Python's ``json`` accepts and writes ``NaN``/``Infinity`` and lone UTF-16 surrogates (``"\\ud800"``); strict
clients (browsers' ``JSON.parse`` for the first, every UTF-8 encoder for the second) choke on them. Inbound,
both are refused with ``invalid_json``; outbound, a non-finite float becomes ``null`` (what ``JSON.stringify``
does with ``NaN``) and text is ASCII-escaped, so every frame we send parses anywhere.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from personad.errors import BadRequestError

# Deeper than any real request; past it json's recursive parser would hit Python's recursion limit.
MAX_DEPTH = 64

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


class NotStrictJSONError(BadRequestError):
    """Parsed, but not strict JSON; ``value`` is what it parsed to, so a transport can still find the id."""

    code = "invalid_json"

    def __init__(self, message: str, value: Any) -> None:
        super().__init__(message)
        self.value = value


def _problem(value: Any, depth: int) -> str | None:
    """Why ``value`` is not strict JSON, or None."""
    if depth > MAX_DEPTH:
        return f"JSON nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and Infinity are not JSON; send a number, a string or null"
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            return "a JSON string holds a lone UTF-16 surrogate (e.g. \\ud800), which is not Unicode text"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _problem(key, depth + 1) or _problem(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _problem(item, depth + 1)
            if found:
                return found
    return None


def loads(raw: str | bytes | bytearray) -> Any:
    """Parse one strict JSON document; anything else raises ``BadRequestError(code="invalid_json")``.

    Input that parses but is not strict raises :class:`NotStrictJSONError`, which carries the parsed value.
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequestError(f"message is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequestError(f"JSON nested deeper than {MAX_DEPTH} levels", code="invalid_json") from None
    problem = _problem(value, 0)
    if problem is not None:
        raise NotStrictJSONError(problem, value)
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Serialise for the wire: compact, ASCII-only, non-finite floats as null, unknown objects as str."""
    try:
        return json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # Rare (a NaN from a page script or a metric): pay for one walk only then.
        return json.dumps(_finite(value), default=str, separators=(",", ":"), allow_nan=False)
