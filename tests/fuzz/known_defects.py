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


KNOWN: list[Known] = [
    Known(
        "nonfinite-json",
        "NaN/Infinity go out as non-strict JSON over WS: echoed inputs (ping echo) and computed values"
        " (browser_js 'NaN' or '1/0', brain_query 'SELECT 1e999') (lead: strict JSON on every transport,"
        " non-finite floats out as null)",
        frozenset({"non_strict", "http_unrendered"}),
        lambda command, params, transport: nonfinite(params) or command in ("browser_js", "brain_query"),
    ),
    Known(
        "lone-surrogate-http",
        "a lone surrogate (\\ud800) accepted in an HTTP body and echoed back cannot be encoded: plain-text"
        " HTTP 500 (lead: strict JSON in, lone surrogates refused as invalid_json)",
        frozenset({"http_unrendered"}),
        lambda command, params, transport: transport == "http" and lone_surrogate(params),
    ),
    Known(
        "file-write-base64",
        "file_write with invalid (non-ASCII) base64 content raises ValueError -> internal_error (lead)",
        frozenset({"internal_error", "http_500"}),
        lambda command, params, transport: (
            command == "file_write"
            and _field(params, "encoding") == "base64"
            and isinstance(_field(params, "content"), str)
        ),
    ),
    Known(
        "file-names",
        "non-UTF-8-encodable or >255-byte file names: UnicodeEncodeError / File name too long"
        " -> internal_error (lead: files/confine.py)",
        frozenset({"internal_error", "http_500"}),
        lambda command, params, transport: any(
            bad_file_name(_field(params, key)) for key in PATH_FIELDS.get(command, ())
        ),
    ),
    Known(
        "brain-query-binding",
        "brain_query: a NUL in the SQL (ValueError) or an int past 64 bits in params (OverflowError)"
        " -> internal_error (lead: brain_query bindings)",
        frozenset({"internal_error", "http_500"}),
        lambda command, params, transport: (
            command == "brain_query"
            and ("\x00" in str(_field(params, "sql")) or huge_int(_field(params, "params")))
        ),
    ),
    Known(
        "lora-stack-bare-names",
        "lora_load_stack / lora_export with a bare adapter name of '' or >200 chars: the handler's"
        " AdapterSpec()"
        " raises pydantic ValidationError -> internal_error (lora/commands.py, lead's file)",
        frozenset({"internal_error", "http_500"}),
        lambda command, params, transport: command in ("lora_load_stack", "lora_export"),
    ),
    Known(
        "file-write-parent-is-a-file",
        "file_write 'a/b' when artifacts/a is a file: mkdir raises FileExistsError -> internal_error"
        " (files/commands.py, lead's file)",
        frozenset({"internal_error", "http_500"}),
        lambda command, params, transport: command == "file_write" and "/" in str(_field(params, "path")),
    ),
    Known(
        "remember-null-content",
        'remember {"type": "x", "content": "null", "importance": 0.5} for a persona gets no reply (lead)',
        frozenset({"no_reply"}),
        lambda command, params, transport: (
            command == "remember"
            and isinstance(_field(params, "memory"), dict)
            and params["memory"].get("content") == "null"
        ),
    ),
    Known(
        "recall-astral-query",
        "recall with emoji / surrogate queries gets no reply (lead)",
        frozenset({"no_reply"}),
        lambda command, params, transport: (
            command == "recall"
            and isinstance(_field(params, "query"), str)
            and any(ord(c) > 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF for c in params["query"])
        ),
    ),
]


def known_defect(command: str, params: Any, transport: str) -> Known | None:
    for known in KNOWN:
        if known.matches(command, params, transport):
            return known
    return None
