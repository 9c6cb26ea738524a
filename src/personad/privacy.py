"""What the daemon writes stays private: a home only its user can read, and no token or key in a log.

- :func:`make_home_private` sets the process umask to ``077`` (so every file the daemon, its persona processes
  and its inference worker create is ``0600``, every folder ``0700``; SQLite gives ``-wal``/``-shm`` the
  database file's mode) and tightens a home created before that.
- :func:`redact_params` masks the fields of a command's params that hold secrets (a params model marks them
  with ``json_schema_extra={"secret": True}``; any key that names a key, secret, token or password anywhere
  inside is masked too) before they are recorded in ``commands.jsonl`` or echoed.
- :class:`RedactingFilter` rewrites log records: ``token=…`` in URLs, ``Bearer …`` headers and every secret
  value the process knows (:func:`register_secret`: the admin token, persona and worker tokens, API keys)
  become ``***``. :func:`install_log_redaction` puts it on every handler, uvicorn's access log included.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "***"
PRIVATE_UMASK = 0o077
SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|passphrase|authorization|credential)", re.I)
_QUERY_TOKEN = re.compile(r"((?:[?&]|\b)(?:token|api_key|key)=)[A-Za-z0-9._~%+/=-]+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_MIN_SECRET = 8  # shorter values would mask ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()
_known: re.Pattern[str] | None = None  # every registered secret, longest first, as one pattern


def register_secret(value: object) -> None:
    """Mask ``value`` wherever it would appear in a log line or a recorded error from now on."""
    global _known
    if isinstance(value, str) and len(value) >= _MIN_SECRET and value not in _secrets:
        with _lock:
            _secrets.add(value)
            _known = re.compile("|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True)))


def redact_text(text: str) -> str:
    """``text`` with tokens in URLs, bearer headers and every registered secret masked."""
    known = _known
    if known is not None:
        text = known.sub(MASK, text)
    if "=" in text:
        text = _QUERY_TOKEN.sub(rf"\1{MASK}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{MASK}", text)
    return text


def redact_params(value: Any, secret_fields: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with the named top-level fields, and any key that names a secret, masked."""
    fields = set(secret_fields)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if item is not None and (key in fields or (isinstance(key, str) and SECRET_KEY.search(key))):
                out[key] = MASK
            else:
                out[key] = redact_params(item)
        return out
    if isinstance(value, list):
        return [redact_params(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def secret_fields(model: type[Any]) -> frozenset[str]:
    """The fields of a pydantic model marked ``json_schema_extra={"secret": True}``."""
    fields = getattr(model, "model_fields", {})
    return frozenset(
        name
        for name, info in fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret")
    )


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and its string arguments (keeping the arguments' shape, which
    uvicorn's access formatter needs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_text(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


_FILTER = RedactingFilter()
LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error")


def install_log_redaction() -> None:
    """Put the redacting filter on every handler of the root and uvicorn loggers (records propagated from
    other loggers pass handler filters, not logger filters), and on the access logger itself."""
    logging.getLogger("uvicorn.access").addFilter(_FILTER)
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def make_home_private(home: Path) -> int:
    """Set the umask to 077 and make ``home`` and everything in it owner-only (folders 0700, files 0600;
    symlinks and other users' files are left alone). Returns how many modes were tightened."""
    os.umask(PRIVATE_UMASK)
    changed = 0
    uid = os.getuid()
    home.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(home):
        for name in [".", *dirs, *files]:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode) or info.st_uid != uid:
                continue
            if stat.S_ISDIR(info.st_mode):
                wanted = stat.S_IMODE(info.st_mode) & 0o700 | 0o700
            elif stat.S_ISSOCK(info.st_mode) or stat.S_ISREG(info.st_mode):
                wanted = stat.S_IMODE(info.st_mode) & 0o700 | 0o600
            else:
                continue
            if stat.S_IMODE(info.st_mode) != wanted:
                os.chmod(path, wanted)
                changed += 1
    return changed
