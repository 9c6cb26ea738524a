"""Peers and their trust: earned when their adapters verify and measure as announced, lost when they do not.

Kept in ``<home>/mesh/peers.json`` (0600). A peer starts at :data:`INITIAL`; a score below
:data:`DROP_BELOW` (upstream's policy) drops it: its announcements are ignored and it is not asked for data.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from personad.state import write_private

INITIAL = 0.8
DROP_BELOW = 0.7
HISTORY = 20

#: Score changes per outcome. Rejections cost more the less innocent they can be: a bad signature or an
#: unsafe file is never an accident; a missing parent may be one.
DELTAS: dict[str, float] = {
    "verified": +0.05,
    "remeasured": +0.05,
    "mesh_bad_signature": -0.2,
    "mesh_unsafe_format": -0.2,
    "mesh_key_retired": -0.2,
    "mesh_replay": -0.2,
    "mesh_hash_mismatch": -0.15,
    "mesh_remeasure_failed": -0.15,
    "mesh_base_model_mismatch": -0.1,
    "mesh_bad_announcement": -0.1,
    "mesh_parent_missing": -0.05,
}


@dataclass
class Peer:
    node: str  # public key, hex
    addr: str = ""  # host:port of its libtorrent session (DHT over UDP, BitTorrent over TCP)
    name: str = ""
    score: float = INITIAL
    via: str = ""  # how we learned of it: invite, join, peer:<node>, mdns
    first_seen: float = field(default_factory=time.time)
    last_seen: float = 0.0
    dropped: bool = False
    retired_by: str = ""  # a newer key of the same node, once it rotated
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        return not self.dropped and not self.retired_by and self.score >= DROP_BELOW

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trusted"] = self.trusted
        return data


class TrustBook:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._peers: dict[str, Peer] = {}
        if self.path.exists():
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            known = set(Peer.__dataclass_fields__)
            for item in raw.get("peers", []):
                peer = Peer(**{k: v for k, v in item.items() if k in known})
                self._peers[peer.node] = peer

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        peers = [asdict(p) for p in self._peers.values()]
        write_private(self.path, json.dumps({"peers": peers}, indent=1) + "\n")

    def get(self, node: str) -> Peer | None:
        """A copy of what we know of ``node`` (changes go through add/record/retire)."""
        with self._lock:
            peer = self._peers.get(node)
            return _copy(peer) if peer is not None else None

    def peers(self) -> list[Peer]:
        with self._lock:
            return [_copy(p) for p in sorted(self._peers.values(), key=lambda p: (-p.score, p.node))]

    def trusted(self) -> list[Peer]:
        return [p for p in self.peers() if p.trusted]

    def add(
        self, node: str, *, addr: str = "", name: str = "", via: str = "", score: float = INITIAL
    ) -> tuple[Peer, bool]:
        """Know ``node`` (or refresh its address). Returns (peer, whether it is new)."""
        with self._lock:
            peer = self._peers.get(node)
            new = peer is None
            if peer is None:
                peer = self._peers[node] = Peer(node=node, addr=addr, name=name, via=via, score=score)
            else:
                peer.addr = addr or peer.addr
                peer.name = name or peer.name
            peer.last_seen = time.time()
            self._save()
            return _copy(peer), new

    def record(self, node: str, outcome: str, detail: str = "") -> Peer | None:
        """Apply ``outcome``'s delta to ``node``; drops the peer when it falls below the threshold."""
        delta = DELTAS.get(outcome, 0.0)
        with self._lock:
            peer = self._peers.get(node)
            if peer is None:
                return None
            peer.score = round(min(1.0, max(0.0, peer.score + delta)), 4)
            peer.history = [
                *peer.history,
                {"ts": time.time(), "outcome": outcome, "delta": delta, "detail": detail[:200]},
            ][-HISTORY:]
            if peer.score < DROP_BELOW:
                peer.dropped = True
            self._save()
            return _copy(peer)

    def retire(self, old: str, new: str) -> None:
        with self._lock:
            peer = self._peers.get(old)
            if peer is not None and not peer.retired_by:
                peer.retired_by = new
                self._save()

    def retired(self, node: str) -> bool:
        peer = self.get(node)
        return bool(peer and peer.retired_by)


def _copy(peer: Peer) -> Peer:
    return Peer(**{**asdict(peer), "history": list(peer.history)})
