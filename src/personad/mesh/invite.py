"""Invite codes: how a daemon joins a mesh.

``personad mesh invite`` makes a code carrying the inviter's address (its libtorrent session: DHT and
BitTorrent), its node key, and a one-time secret. ``personad mesh join CODE`` on another daemon:

1. adds the inviter as a DHT node and trusts its key (it was given out of band, in the code);
2. writes a ``join`` item under a key *derived from the secret*: only a holder of the code can sign it.
   The item names the joiner's key and address, signed by the joiner's own key too;
3. the inviter, which watches the derived keys of its open invites, verifies the item, adds the joiner to
   its peers and lists it in its node record, and marks the invite used. One code admits one node.

No home-made protocol: it is all BEP 44 items in libtorrent's DHT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personad.state import write_private

from .errors import InviteInvalidError
from .identity import NodeKey

PREFIX = "pdmesh1-"
DEFAULT_TTL_S = 24 * 3600


@dataclass(frozen=True)
class Invite:
    addr: str
    node: str
    secret: bytes
    expires: float

    def code(self) -> str:
        raw = json.dumps(
            {"a": self.addr, "k": self.node, "s": self.secret.hex(), "e": int(self.expires)},
            separators=(",", ":"),
        ).encode()
        return PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()

    @classmethod
    def parse(cls, code: str) -> Invite:
        text = code.strip()
        if not text.startswith(PREFIX):
            raise InviteInvalidError(f"not a mesh invite code (it starts with {PREFIX!r})")
        body = text[len(PREFIX) :].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
            data = json.loads(raw)
            invite = cls(str(data["a"]), str(data["k"]), bytes.fromhex(data["s"]), float(data["e"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InviteInvalidError(
                "the invite code is damaged; copy it again from `personad mesh invite`"
            ) from None
        if len(invite.node) != 64 or len(invite.secret) != 16 or ":" not in invite.addr:
            raise InviteInvalidError("the invite code is damaged; copy it again from `personad mesh invite`")
        if invite.expires < time.time():
            raise InviteInvalidError("the invite code has expired; ask for a new one")
        return invite

    @property
    def slot_key(self) -> NodeKey:
        """The key the joiner signs its ``join`` item with; the inviter derives it from the same secret."""
        return NodeKey.from_secret(b"join", self.secret)


def join_statement(inviter: str, joiner: str, addr: str) -> bytes:
    """What the joiner signs with its own key: it asks ``inviter`` to admit ``joiner`` at ``addr``."""
    return f"personad-mesh-join:{inviter}:{joiner}:{addr}".encode()


class InviteBook:
    """The open invites of one node (``<home>/mesh/invites.json``, 0600). Secrets are kept so the node can
    watch their slots; a used or expired invite is dropped from the watch list."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.path, json.dumps(data, indent=1) + "\n")

    def create(self, addr: str, node: str, ttl_s: float = DEFAULT_TTL_S) -> Invite:
        invite = Invite(addr, node, secrets.token_bytes(16), time.time() + ttl_s)
        data = self._read()
        data[_digest(invite.secret)] = {
            "secret": invite.secret.hex(),
            "expires": invite.expires,
            "used_by": "",
        }
        self._write(data)
        return invite

    def open_invites(self) -> list[Invite]:
        now = time.time()
        return [
            Invite("", "", bytes.fromhex(v["secret"]), float(v["expires"]))
            for v in self._read().values()
            if not v.get("used_by") and float(v.get("expires", 0)) > now
        ]

    def mark_used(self, secret: bytes, joiner: str) -> bool:
        """Consume the invite for ``joiner``; False if it was used already (one code, one node)."""
        data = self._read()
        entry = data.get(_digest(secret))
        if entry is None or entry.get("used_by"):
            return False
        entry["used_by"] = joiner
        entry["used_at"] = time.time()
        self._write(data)
        return True


def _digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:32]
