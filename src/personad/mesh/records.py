"""The DHT records each node publishes under its key, besides its announcements.

* ``node``: where it listens, what it is called, up to :data:`MAX_LISTED_PEERS` peers it trusts (how
  others find the rest of the mesh), how many seed pages it has; after a key rotation, ``retired_by``.
* ``seeds/<i>``: pages of ``[info_hash, ts, loads, acquires]``, the torrents it seeds and their use.
* ``ann/<info_hash[:32]>``: the origin's signed announcement of each torrent it seeds.
* ``personas``: its personas' mesh status (``update_persona_status``).
* ``join``: written by a joiner under the key derived from an invite's secret (see :mod:`.invite`).

Each is canonical JSON inside a BEP 44 item, so libtorrent has checked the publisher's signature over it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from personad.errors import BadRequestError

from .announcement import MAX_BYTES, canonical

NODE_SALT = b"node"
PERSONAS_SALT = b"personas"
JOIN_SALT = b"join"
SEEDS_PER_PAGE = 9
MAX_LISTED_PEERS = 6


def seeds_salt(page: int) -> bytes:
    return f"seeds/{page}".encode()


def announcement_salt(info_hash: str) -> bytes:
    return f"ann/{info_hash[:32]}".encode()


def decode(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def encode(data: dict[str, Any]) -> bytes:
    raw = canonical(data)
    if len(raw) > MAX_BYTES:
        raise BadRequestError(
            f"this would make a mesh record of {len(raw)} bytes; a DHT item holds {MAX_BYTES} (say less)",
            code="mesh_record_too_large",
        )
    return raw


@dataclass
class NodeRecord:
    addr: str
    name: str = ""
    peers: list[list[str]] = field(default_factory=list)  # [[node hex, addr], ...]
    pages: int = 0
    ts: float = 0.0
    retired_by: str = ""

    def to_bytes(self) -> bytes:
        return encode(asdict(self))

    @classmethod
    def parse(cls, raw: bytes) -> NodeRecord | None:
        data = decode(raw)
        if data is None or not isinstance(data.get("addr"), str):
            return None
        peers = data.get("peers")
        listed = [
            [str(p[0]), str(p[1])]
            for p in (peers if isinstance(peers, list) else [])
            if isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        ]
        pages = data.get("pages")
        ts = data.get("ts")
        return cls(
            addr=data["addr"],
            name=str(data.get("name", ""))[:64],
            peers=listed[:MAX_LISTED_PEERS],
            pages=pages if isinstance(pages, int) and 0 <= pages <= 64 else 0,
            ts=float(ts) if isinstance(ts, int | float) else 0.0,
            retired_by=str(data.get("retired_by", "")),
        )


@dataclass
class SeedEntry:
    info_hash: str
    ts: float  # the announcement's timestamp: a change means a new announcement to fetch
    loads: int = 0  # requests answered with the adapter by this node's personas
    acquires: int = 0  # times this node's personas (or replication) asked the mesh for it


def seeds_page(entries: list[SeedEntry]) -> bytes:
    return encode({"s": [[e.info_hash, e.ts, e.loads, e.acquires] for e in entries]})


def parse_seeds_page(raw: bytes) -> list[SeedEntry]:
    data = decode(raw)
    rows = data.get("s") if data else None
    found: list[SeedEntry] = []
    for row in rows if isinstance(rows, list) else []:
        if (
            isinstance(row, list)
            and len(row) == 4
            and isinstance(row[0], str)
            and len(row[0]) == 64
            and all(isinstance(x, int | float) for x in row[1:])
        ):
            found.append(SeedEntry(row[0], float(row[1]), int(row[2]), int(row[3])))
    return found
