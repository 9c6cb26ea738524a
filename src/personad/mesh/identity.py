"""A daemon's mesh identity: one ed25519 key in ``<home>/mesh/node.key`` (0600).

The file holds the 32-byte RFC 8032 seed, hex encoded. The same key signs our announcements (verified by
peers with ``cryptography``) and our BEP 44 items in libtorrent's DHT, which wants the key in orlp/ed25519's
expanded form (SHA-512 of the seed, clamped): :meth:`NodeKey.libtorrent_secret` derives it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from personad.state import write_private

KEY_FILE = "node.key"
RETIRED_FILE = "retired.keys"


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class NodeKey:
    """An ed25519 key pair; ``public`` (32 bytes) is the node's id on the mesh."""

    seed: bytes

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(os.urandom(32))

    @classmethod
    def from_secret(cls, label: bytes, secret: bytes) -> NodeKey:
        """A key anyone holding ``secret`` can derive (invite codes use it for the joiner's reply slot)."""
        return cls(hashlib.sha256(b"personad-mesh/" + label + b"/" + secret).digest())

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public(self) -> bytes:
        return _public_bytes(self._private)

    @property
    def node_id(self) -> str:
        return self.public.hex()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def libtorrent_secret(self) -> bytes:
        """The 64-byte expanded secret libtorrent's BEP 44 puts sign with (same public key)."""
        h = bytearray(hashlib.sha512(self.seed).digest())
        h[0] &= 248
        h[31] &= 63
        h[31] |= 64
        return bytes(h)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public``'s ed25519 signature of ``message``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_path(home: Path) -> Path:
    return Path(home) / "mesh" / KEY_FILE


def load_or_create(home: Path) -> NodeKey:
    """The node key of ``home``, created (0600, in a 0700 folder) on first use."""
    path = key_path(home)
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        seed = bytes.fromhex(text)
        if len(seed) != 32:
            raise ValueError(f"{path} does not hold a 32-byte ed25519 seed; move it away to make a new key")
        return NodeKey(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = NodeKey.generate()
    write_private(path, key.seed.hex() + "\n")
    return key


def rotate(home: Path) -> tuple[NodeKey, NodeKey]:
    """Replace the node key; the old public key is kept in ``retired.keys``. Returns (old, new)."""
    old = load_or_create(home)
    new = NodeKey.generate()
    retired = key_path(home).with_name(RETIRED_FILE)
    previous = retired.read_text(encoding="utf-8") if retired.exists() else ""
    write_private(retired, previous + old.seed.hex() + "\n")
    write_private(key_path(home), new.seed.hex() + "\n")
    return old, new


def retired_keys(home: Path) -> list[NodeKey]:
    """Keys this node used before (their seeds, so it can sign its own retirement notices)."""
    path = key_path(home).with_name(RETIRED_FILE)
    if not path.exists():
        return []
    return [NodeKey(bytes.fromhex(line)) for line in path.read_text(encoding="utf-8").split() if line]
