"""Defects the fuzz found that are being fixed elsewhere (the lead's files), one entry each.

The fuzz tolerates exactly the listed symptom for exactly the matching inputs (inputs whose symptom is a
missing reply are not sent at all, a hang would only burn the time budget); test_known_defects.py checks
each one with a fixed input and is ``xfail(strict=False)`` until it is fixed. Delete an entry once its
test passes, and the fuzz covers those inputs fully again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Symptoms a known defect may show: internal_error (a reply with that code), non_strict (NaN/Infinity in a
# server frame), http_500 (an HTTP 5xx), http_unrendered (an HTTP 5xx whose body is not JSON: the response
# could not be rendered), no_reply (the request is not answered: never sent by the fuzz).
SYMPTOMS = frozenset({"internal_error", "non_strict", "http_500", "http_unrendered", "no_reply"})


@dataclass(frozen=True)
class Known:
    id: str
    reason: str
    symptoms: frozenset[str]
    matches: Callable[[str, Any, str], bool]


def nonfinite(value: Any) -> bool:
    """NaN or ±Infinity anywhere (sent as a NaN/Infinity literal)."""
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(nonfinite(k) or nonfinite(v) for k, v in value.items())
    if isinstance(value, list):
        return any(nonfinite(v) for v in value)
    return False


def lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(lone_surrogate(k) or lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(lone_surrogate(v) for v in value)
    return False


def huge_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(huge_int(v) for v in value.values())
    if isinstance(value, list):
        return any(huge_int(v) for v in value)
    return False


def bad_file_name(path: Any) -> bool:
    """A name the file system cannot take: not UTF-8 encodable, or a component over 255 bytes."""
    if not isinstance(path, str):
        return False
    for part in path.replace("\\", "/").split("/"):
        try:
            if len(part.encode("utf-8")) > 255:
                return True
        except UnicodeEncodeError:
            return True
    return False


# Fields that name a file in the session's artifacts (files/confine.py resolves them).
PATH_FIELDS = {
    "file_write": ("path",),
    "file_read": ("path",),
    "file_list": ("path",),
    "lora_export": ("out",),
    "lora_train": ("data", "anchor"),
}


def _field(params: Any, key: str) -> Any:
    return params.get(key) if isinstance(params, dict) else None


KNOWN: list[Known] = []  # every defect found so far is fixed; see test_known_defects.py


def known_defect(command: str, params: Any, transport: str) -> Known | None:
    for known in KNOWN:
        if known.matches(command, params, transport):
            return known
    return None
