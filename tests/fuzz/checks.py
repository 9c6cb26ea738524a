"""What every reply must satisfy, whatever was sent."""

from __future__ import annotations

import json
import re
from typing import Any

# Internals that must never reach a client: tracebacks, source locations, exception and object reprs.
LEAK_PATTERNS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+", line \d+'),
    re.compile(r"<[A-Za-z_][\w.]* object at 0x[0-9a-fA-F]+>"),
    re.compile(r"\b[A-Z]\w*(?:Error|Exception)\((?:'|\")"),  # ValueError('…'): an exception repr
    re.compile(r"\bsqlite3\.\w+"),
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name} in a server frame")


def strict_loads(text: str | bytes, relax: Any = None) -> Any:
    """Parse as strict JSON (RFC 8259): NaN, Infinity and -Infinity are refused (unless a known defect)."""
    if relax is not None and "non_strict" in relax.symptoms:
        return json.loads(text)
    return json.loads(text, parse_constant=_reject_constant)


def check_no_leaks(reply_text: str, request_text: str) -> None:
    """No traceback or exception repr in a reply, unless it is an echo of what the client itself sent."""
    for pattern in LEAK_PATTERNS:
        for match in pattern.finditer(reply_text):
            assert match.group(0) in request_text, (
                f"reply leaks internals ({match.group(0)!r}): {reply_text[:600]}"
            )


def check_error_shape(error: Any, reply_text: str, relax: Any = None) -> None:
    assert isinstance(error, dict), reply_text[:600]
    assert isinstance(error.get("code"), str) and error["code"], reply_text[:600]
    assert isinstance(error.get("message"), str), reply_text[:600]
    if relax is None or "internal_error" not in relax.symptoms:
        assert error["code"] != "internal_error", f"internal_error: {reply_text[:600]}"


def check_command_result(reply: dict[str, Any], reply_text: str, relax: Any = None) -> None:
    assert reply.get("type") in ("command_result", "error"), reply_text[:600]
    if reply.get("ok") is True:
        assert reply["type"] == "command_result" and isinstance(reply.get("result"), dict), reply_text[:600]
    else:
        assert reply.get("ok") is False, reply_text[:600]
        check_error_shape(reply.get("error"), reply_text, relax)
