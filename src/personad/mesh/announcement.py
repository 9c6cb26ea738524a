"""Signed skill announcements: what a node tells the mesh about an adapter it seeds.

An announcement is canonical JSON (sorted keys, no spaces) signed with the origin node's ed25519 key; the
signature covers every field but ``sig``. Any peer that seeds the adapter relays the origin's announcement
unchanged, so a relayed copy verifies against the origin's key, never the relayer's. It travels as the value
of a BEP 44 item, which libtorrent limits to 1000 bytes bencoded, so the fields are kept short.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from personad.errors import BadRequestError
from personad.lora.manifest import validate_name
from personad.personas.config import PERSONA_ID

from .errors import BadAnnouncementError, BadSignatureError
from .identity import NodeKey, verify

VERSION = 1
MAX_BYTES = 990  # BEP 44's 1000-byte value limit, less the bencoded string's length prefix
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class Announcement:
    skill: str  # the brain's skill id (the adapter's name when it is not a graduated skill)
    adapter: str
    parents: list[str]
    lora_hash: str  # sha256 of adapter_model.safetensors
    base_model_sha256: str
    info_hash: str  # the torrent's v2 (sha256) info-hash, hex
    size: int  # bytes of the adapter's files
    node: str  # origin node's public key, hex
    persona: str = ""  # source persona
    metrics: dict[str, Any] = field(default_factory=dict)  # effectiveness, exam, ci, n
    ts: float = 0.0
    v: int = VERSION
    sig: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("sig")
        return data

    def signed(self, key: NodeKey) -> Announcement:
        unsigned = replace(self, node=key.node_id, ts=self.ts or round(time.time(), 3), sig="")
        return replace(unsigned, sig=key.sign(canonical(unsigned.body())).hex())

    def signature_valid(self) -> bool:
        try:
            public, signature = bytes.fromhex(self.node), bytes.fromhex(self.sig)
        except ValueError:
            return False
        return verify(public, canonical(self.body()), signature)

    def check_signature(self) -> None:
        if not self.signature_valid():
            raise BadSignatureError(
                f"the announcement of {self.adapter!r} is not signed by the node it names ({self.node[:12]})"
            )

    @property
    def effectiveness(self) -> float | None:
        value = self.metrics.get("effectiveness")
        return float(value) if isinstance(value, int | float) else None

    def to_bytes(self) -> bytes:
        data = canonical(asdict(self))
        if len(data) > MAX_BYTES:
            raise BadAnnouncementError(
                f"the announcement of {self.adapter!r} is {len(data)} bytes; a DHT item holds {MAX_BYTES}"
                " (shorten its metrics or names)",
            )
        return data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Announcement:
        """Parse a received announcement; malformed fields are ``mesh_bad_announcement``."""
        if not isinstance(data, dict):
            raise BadAnnouncementError("an announcement must be a JSON object")
        known = set(cls.__dataclass_fields__)
        try:
            ann = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise BadAnnouncementError(f"announcement fields missing: {exc}") from None
        ann._validate()
        return ann

    @classmethod
    def from_bytes(cls, raw: bytes) -> Announcement:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadAnnouncementError("an announcement is not valid JSON") from None
        return cls.from_dict(data)

    def _validate(self) -> None:
        def bad(why: str) -> BadAnnouncementError:
            return BadAnnouncementError(f"announcement of {self.adapter!r}: {why}")

        if self.v != VERSION:
            raise bad(f"version {self.v!r}, this daemon speaks {VERSION}")
        if not isinstance(self.parents, list):
            raise bad("parents must be a list")
        try:
            validate_name(self.adapter)
            for parent in self.parents:
                validate_name(parent)
        except BadRequestError:
            raise bad("invalid adapter or parent name") from None
        for label in ("lora_hash", "base_model_sha256", "info_hash", "node"):
            value = getattr(self, label)
            if not isinstance(value, str) or not _HEX64.match(value):
                raise bad(f"{label} must be 64 lowercase hex digits")
        if not isinstance(self.sig, str) or not re.match(r"^[0-9a-f]{128}$", self.sig):
            raise bad("sig must be 128 hex digits")
        if not isinstance(self.skill, str) or not 0 < len(self.skill) <= 120:
            raise bad("skill must be a non-empty string of at most 120 characters")
        if not isinstance(self.persona, str) or len(self.persona) > 64:
            raise bad("persona must be a string of at most 64 characters")
        if self.persona and not PERSONA_ID.match(self.persona):
            raise bad("persona is not a valid persona id")
        if not isinstance(self.size, int) or self.size < 0:
            raise bad("size must be a non-negative integer")
        if not isinstance(self.ts, int | float) or not math.isfinite(self.ts):
            raise bad("ts must be a number")
        if not isinstance(self.metrics, dict):
            raise bad("metrics must be an object")
