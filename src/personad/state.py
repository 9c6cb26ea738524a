"""The files a daemon keeps in its home: the token and ``daemon.json`` (how clients find it)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

STATE_FILE = "daemon.json"
TOKEN_FILE = "token"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (never a moment with looser permissions)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_token(home: Path) -> str:
    path = home / TOKEN_FILE
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def read_state(home: Path) -> dict[str, Any] | None:
    """The running daemon's ``daemon.json`` (url, port, token, pid), or None when there is none."""
    try:
        return json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
