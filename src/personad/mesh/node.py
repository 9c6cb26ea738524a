"""A mesh node: one daemon's identity, directory view, seeds and downloads.

The seed's API by its Python names: :meth:`MeshNode.broadcast_capability`, :meth:`MeshNode.acquire_skill`,
:meth:`MeshNode.update_persona_status`, :meth:`MeshNode.status`. Everything a peer tells us is verified
before it is believed, and everything it sends before it is loaded (:mod:`.verify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personad.lora.manifest import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from personad.lora.registry import AdapterRegistry

from . import identity, transfer
from .announcement import Announcement
from .engine import TorrentEngine, ensure_private_dir
from .errors import (
    AdapterConflictError,
    BadAnnouncementError,
    KeyRetiredError,
    ParentMissingError,
    RejectedError,
    ReplayError,
    SkillNotFoundError,
)
from .exams import ExamRegistry, ExamRequest, default_exams
from .invite import Invite, InviteBook, join_statement
from .records import (
    JOIN_SALT,
    MAX_LISTED_PEERS,
    NODE_SALT,
    PERSONAS_SALT,
    SEEDS_PER_PAGE,
    NodeRecord,
    SeedEntry,
    announcement_salt,
    decode,
    encode,
    parse_seeds_page,
    seeds_page,
    seeds_salt,
)
from .store import MeshStore
from .trust import Peer, TrustBook
from .verify import Verifier

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]

MAX_AGE_S = 30 * 24 * 3600  # an announcement older than this is a replay (origins refresh theirs)
MAX_SKEW_S = 300.0
DEMAND_SCALE = 20.0
REPLICATE_ABOVE = 0.7
REPLICATE_NOW_ABOVE = 0.8
REPLICATION_TARGET = 3
REPLICATIONS_PER_MINUTE = 5


@dataclass
class MeshConfig:
    home: Path
    listen: str = "127.0.0.1:0"
    name: str = ""
    base_model_sha256: str = ""  # the base our adapters must match (the daemon passes the local model's)
    poll_s: float = 1.0
    refresh_s: float = 600.0
    replicate: bool = True
    download_limit: int = 0  # bytes/s, 0 = none
    upload_limit: int = 0
    mdns: bool = False  # discover peers on the local network (zeroconf)
    advertise: str = ""  # host[:port] peers should use, when the listen address is not it (0.0.0.0, NAT)


@dataclass
class Known:
    """What the directory knows of one torrent: the origin's announcement and who seeds it."""

    announcement: Announcement
    seeders: dict[str, SeedEntry] = field(default_factory=dict)  # node -> its seed entry

    def demand(self) -> float:
        return demand_score(
            sum(e.loads for e in self.seeders.values()), sum(e.acquires for e in self.seeders.values())
        )


def demand_score(loads: int, acquires: int) -> float:
    """Demand from use: 1 - exp(-(loads + acquires) / 20); 0.7 is about 24 uses, 0.8 about 32."""
    return 1.0 - math.exp(-(loads + acquires) / DEMAND_SCALE)


class MeshNode:
    def __init__(
        self,
        config: MeshConfig,
        *,
        emit: Emit | None = None,
        exams: ExamRegistry | None = None,
        loads: Callable[[str], int] | None = None,
    ) -> None:
        self.config = config
        self.home = Path(config.home)
        self.dir = ensure_private_dir(self.home / "mesh")
        self.key = identity.load_or_create(self.home)
        self._retired = {k.node_id for k in identity.retired_keys(self.home)}  # our own former keys
        self.registry = AdapterRegistry.for_home(self.home)
        self.store = MeshStore(self.dir / "store")
        self.trust = TrustBook(self.dir / "peers.json")
        self.invites = InviteBook(self.dir / "invites.json")
        self.exams = exams or default_exams()
        self._emit = emit or (lambda event, data: None)
        self._loads = loads or (lambda lora_hash: 0)
        self.engine: TorrentEngine | None = None
        self.directory: dict[str, Known] = {}
        self.rejected: dict[str, RejectedError] = {}  # info_hash -> why its announcement was refused
        self.rejected_names: dict[str, RejectedError] = {}  # adapter or skill -> the same, by name
        self.own: dict[str, Announcement] = {}  # info_hash -> announcement we seed (ours or relayed)
        self.acquires: dict[str, int] = {}
        self.persona_status: dict[str, dict[str, Any]] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._acquiring: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._replications: deque[float] = deque()
        self._dirty = True
        self._published_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._mdns: Any = None
        self.verifier = Verifier(self)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.key.node_id

    @property
    def addr(self) -> str:
        """Where peers reach us: ``advertise`` if set, else the listen host (a wildcard becomes the
        address of the interface that routes outwards) and the port libtorrent listens on."""
        port = self._engine().port
        if self.config.advertise:
            host, sep, given = self.config.advertise.rpartition(":")
            return self.config.advertise if sep and given.isdigit() else f"{self.config.advertise}:{port}"
        host = self.config.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = _outward_address()
        return f"{host}:{port}"

    def _engine(self) -> TorrentEngine:
        if self.engine is None:
            raise RuntimeError("the mesh node is not started")
        return self.engine

    async def start(self) -> None:
        self.engine = TorrentEngine(
            _listen(self.config.listen, self.dir / "port"),
            download_limit=self.config.download_limit,
            upload_limit=self.config.upload_limit,
        )
        self.engine.start()
        (self.dir / "port").write_text(f"{self.engine.port}\n", encoding="utf-8")
        for peer in self.trust.peers():
            if peer.addr and peer.trusted:
                self.engine.add_dht_node(peer.addr)
        for info_hash in self.store.seeded():
            with contextlib.suppress(Exception):  # a damaged store entry is skipped, not fatal
                ann = Announcement.from_bytes(
                    (self.store.folder(info_hash) / "announcement.json").read_bytes()
                )
                self.own[info_hash] = ann
                transfer.seed(self.engine, self.store, info_hash)
        if self.config.mdns:
            from .mdns import MdnsDiscovery

            host = self.config.listen.rpartition(":")[0]
            self._mdns = MdnsDiscovery(self.node_id, host, self.engine.port, self._discovered)
            await self._mdns.start()
        self._task = asyncio.create_task(self._run(), name="mesh-node")

    def _discovered(self, node: str, addr: str) -> None:
        """A node found by mDNS: a peer like an invited one, if we did not know (or drop) it already."""
        if self.trust.get(node) is not None or self.engine is None:
            return
        self.trust.add(node, addr=addr, via="mdns")
        self.engine.add_dht_node(addr)
        self._dirty = True
        self._emit("mesh_peer_joined", {"node": node, "addr": addr, "via": "mdns"})

    async def close(self) -> None:
        if self._mdns is not None:
            await self._mdns.close()
            self._mdns = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._acquiring.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed round is retried next period; the traceback is logged
                log.exception("mesh round failed")
            await asyncio.sleep(self.config.poll_s)

    async def tick(self) -> None:
        """One round: admit joiners, read every trusted peer's records, publish ours, replicate."""
        await self._admit_joiners()
        await asyncio.gather(*(self._refresh_peer(p) for p in self.trust.trusted()))
        if self._dirty or time.time() - self._published_at > self.config.refresh_s:
            await self.publish()
        if self.config.replicate:
            self._replicate()

    # -- invites -------------------------------------------------------------------------------------

    def invite(self, ttl_s: float = 24 * 3600) -> str:
        return self.invites.create(self.addr, self.node_id, ttl_s).code()

    async def join(self, code: str) -> dict[str, Any]:
        """Join the mesh of an invite code's node: trust its key, then ask it to admit us."""
        invite = Invite.parse(code)
        engine = self._engine()
        engine.add_dht_node(invite.addr)
        peer, new = self.trust.add(invite.node, addr=invite.addr, via="invite")
        statement = join_statement(invite.node, self.node_id, self.addr)
        slot = encode({"node": self.node_id, "addr": self.addr, "sig": self.key.sign(statement).hex()})
        await self.publish()
        stored = 0
        for _ in range(5):  # the DHT may need a moment to see the inviter
            stored = await engine.dht_put(invite.slot_key, JOIN_SALT, slot)
            if stored:
                break
            await asyncio.sleep(0.5)
        if new:
            self._emit("mesh_peer_joined", {"node": peer.node, "addr": peer.addr, "via": "invite"})
        await self._refresh_peer(peer)
        return {"joined": invite.node, "addr": invite.addr, "stored_on": stored}

    async def _admit_joiners(self) -> None:
        engine = self._engine()
        for invite in self.invites.open_invites():
            item = await engine.dht_get(invite.slot_key.public, JOIN_SALT, timeout=1.0)
            data = decode(item.value) if item else None
            if not data:
                continue
            node, addr, sig = str(data.get("node", "")), str(data.get("addr", "")), str(data.get("sig", ""))
            try:
                ok = identity.verify(
                    bytes.fromhex(node), join_statement(self.node_id, node, addr), bytes.fromhex(sig)
                )
            except ValueError:
                ok = False
            if not ok or node == self.node_id or not self.invites.mark_used(invite.secret, node):
                continue
            _, new = self.trust.add(node, addr=addr, via="join")
            engine.add_dht_node(addr)
            self._dirty = True
            if new:
                self._emit("mesh_peer_joined", {"node": node, "addr": addr, "via": "join"})

    # -- publishing ----------------------------------------------------------------------------------

    async def publish(self) -> None:
        """Put our node record, seed pages and the announcements of what we seed into the DHT."""
        engine = self._engine()
        entries = [
            SeedEntry(ih, ann.ts, self._loads(ann.lora_hash), self.acquires.get(ih, 0))
            for ih, ann in sorted(self.own.items())
        ]
        pages = [entries[i : i + SEEDS_PER_PAGE] for i in range(0, len(entries), SEEDS_PER_PAGE)]
        listed = [[p.node, p.addr] for p in self.trust.trusted() if p.addr][:MAX_LISTED_PEERS]
        record = NodeRecord(self.addr, self.config.name, listed, len(pages), round(time.time(), 3))
        puts = [engine.dht_put(self.key, NODE_SALT, record.to_bytes())]
        puts += [engine.dht_put(self.key, seeds_salt(i), seeds_page(page)) for i, page in enumerate(pages)]
        puts += [
            engine.dht_put(self.key, announcement_salt(ih), ann.to_bytes()) for ih, ann in self.own.items()
        ]
        if self.persona_status:
            puts.append(engine.dht_put(self.key, PERSONAS_SALT, encode(self.persona_status)))
        self._dirty = False
        self._published_at = time.time()
        stored = await asyncio.gather(*puts)
        if not all(stored):
            self._dirty = True  # nobody to store on yet (a lone node), or a put lost: again next round

    async def broadcast_capability(
        self,
        adapter: str,
        *,
        skill: str | None = None,
        persona: str = "",
        metrics: dict[str, Any] | None = None,
        exam: str | None = None,
    ) -> Announcement:
        """Seed a registered adapter and announce it, signed by this node (``broadcastCapability``).

        With ``exam``, the adapter is measured here first and the figure announced, so acquirers re-run
        the same exam and refuse the adapter if it does not reproduce.
        """
        manifest = self.registry.manifest(adapter)
        for parent in manifest.parents:
            self.registry.manifest(parent)
        chosen = dict(metrics) if metrics is not None else _announced_metrics(manifest.metrics)
        if exam is not None:
            run = self.exams.get(exam)
            if run is None:
                raise SkillNotFoundError(
                    f"no mesh exam {exam!r} on this daemon; it has {', '.join(self.exams.names()) or 'none'}"
                )
            result = await run(ExamRequest(adapter, self.registry.root, chosen))
            chosen.update({"exam": exam, result.metric: result.value, "ci": [result.value, result.value]})
        folder = self.registry.folder(adapter)
        files = [CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE]
        info_hash, _ = await asyncio.to_thread(self.store.import_adapter, adapter, folder, files)
        ann = Announcement(
            skill=skill or adapter,
            adapter=adapter,
            parents=list(manifest.parents),
            lora_hash=manifest.lora_hash,
            base_model_sha256=manifest.base_model_sha256,
            info_hash=info_hash,
            size=sum((folder / f).stat().st_size for f in files),
            node=self.node_id,
            persona=persona,
            metrics=chosen,
        ).signed(self.key)
        ann.to_bytes()  # refuse what would not fit the DHT before seeding it
        self._seed(ann)
        await self.publish()
        return ann

    def seed(self, ann: Announcement) -> None:
        """Seed the store's torrent ``ann.info_hash`` under ``ann`` (ours, or a verified one we relay)."""
        self._seed(ann)

    def _seed(self, ann: Announcement) -> None:
        (self.store.folder(ann.info_hash) / "announcement.json").write_bytes(ann.to_bytes())
        transfer.seed(self._engine(), self.store, ann.info_hash)
        self.own[ann.info_hash] = ann
        known = self.directory.setdefault(ann.info_hash, Known(ann))
        known.seeders[self.node_id] = SeedEntry(ann.info_hash, ann.ts)
        self._dirty = True

    async def update_persona_status(
        self,
        persona: str,
        *,
        status: str,
        ready_for_deployment: bool = False,
        specializations: list[str] | None = None,
    ) -> dict[str, Any]:
        """Publish a persona's mesh status (``updatePersonaStatus``), e.g. graduated and its skills."""
        entry = {"status": status, "ready": ready_for_deployment, "specializations": specializations or []}
        candidate = {**self.persona_status, persona: entry}
        encode(candidate)  # must fit one DHT item
        self.persona_status = candidate
        self._dirty = True
        await self.publish()
        return {"persona": persona, **entry}

    # -- reading peers -------------------------------------------------------------------------------

    async def _refresh_peer(self, peer: Peer) -> None:
        if peer.node == self.node_id:
            return
        engine = self._engine()
        public = bytes.fromhex(peer.node)
        item = await engine.dht_get(public, NODE_SALT)
        record = NodeRecord.parse(item.value) if item else None
        if record is None:
            return
        if record.retired_by:
            self._retire(peer, record.retired_by)
            return
        if record.addr != peer.addr:
            engine.add_dht_node(record.addr)
        self.trust.add(peer.node, addr=record.addr, name=record.name)
        for node, addr in record.peers:
            if node == self.node_id or node in self._retired:
                continue
            known = self.trust.get(node)
            if known is None:
                learned, _ = self.trust.add(node, addr=addr, via=f"peer:{peer.node[:16]}")
                engine.add_dht_node(addr)
                self._emit("mesh_peer_joined", {"node": node, "addr": addr, "via": learned.via})
        pages = await asyncio.gather(*(engine.dht_get(public, seeds_salt(i)) for i in range(record.pages)))
        listed: set[str] = set()
        for page in pages:
            for entry in parse_seeds_page(page.value) if page else []:
                listed.add(entry.info_hash)
                await self._consider_entry(peer, entry)
        for listing in self.directory.values():
            if peer.node in listing.seeders and listing.announcement.info_hash not in listed:
                del listing.seeders[peer.node]  # it stopped seeding

    async def _consider_entry(self, peer: Peer, entry: SeedEntry) -> None:
        known = self.directory.get(entry.info_hash)
        if known is not None and self._seen.get((peer.node, entry.info_hash)) == entry.ts:
            known.seeders[peer.node] = entry  # same announcement; refresh its use counts
            return
        if entry.info_hash in self.rejected and self._seen.get((peer.node, entry.info_hash)) == entry.ts:
            return
        self._seen[(peer.node, entry.info_hash)] = entry.ts
        item = await self._engine().dht_get(bytes.fromhex(peer.node), announcement_salt(entry.info_hash))
        if item is None:
            return
        try:
            ann = Announcement.from_bytes(item.value)
        except RejectedError as exc:
            self._reject_announcement(peer, entry.info_hash, exc, names=())
            return
        try:
            self.check_announcement(ann, entry.info_hash)
        except RejectedError as exc:
            self._reject_announcement(peer, entry.info_hash, exc, names=(ann.adapter, ann.skill))
            return
        new = entry.info_hash not in self.directory
        known = self.directory.setdefault(entry.info_hash, Known(ann))
        if ann.ts > known.announcement.ts:  # a newer announcement of the same torrent (new metrics)
            known.announcement = ann
        known.seeders[peer.node] = entry
        self.rejected.pop(entry.info_hash, None)
        self.rejected_names.pop(ann.adapter, None)
        if new:
            self._emit(
                "mesh_skill_announced",
                {**_summary(ann), "from": peer.node, "seeders": len(known.seeders)},
            )

    def check_announcement(self, ann: Announcement, info_hash: str) -> None:
        """The checks an announcement passes before it is listed: signature, key, age."""
        if ann.info_hash != info_hash:
            raise BadAnnouncementError(f"the announcement of {ann.adapter!r} names another torrent")
        ann.check_signature()
        if self.trust.retired(ann.node) or ann.node in self._retired:
            raise KeyRetiredError(
                f"the announcement of {ann.adapter!r} is signed by a retired key ({ann.node[:12]}); its"
                " node announces with its new key now",
            )
        now = time.time()
        if ann.ts > now + MAX_SKEW_S:
            raise BadAnnouncementError(f"the announcement of {ann.adapter!r} is dated in the future")
        if ann.ts < now - MAX_AGE_S:
            raise ReplayError(f"the announcement of {ann.adapter!r} is older than 30 days: a replay")

    def _reject_announcement(
        self, peer: Peer, info_hash: str, exc: RejectedError, names: tuple[str, ...]
    ) -> None:
        self.rejected[info_hash] = exc
        for name in names:
            self.rejected_names[name] = exc
        self.directory.pop(info_hash, None)
        updated = self.trust.record(peer.node, exc.code, exc.message)
        self._emit(
            "mesh_skill_rejected",
            {
                "info_hash": info_hash,
                "code": exc.code,
                "message": exc.message,
                "from": peer.node,
                "trust": updated.score if updated else None,
                "stage": "announcement",
            },
        )
        self._dropped(updated)

    def _dropped(self, peer: Peer | None) -> None:
        if peer is not None and peer.dropped:
            for known in self.directory.values():
                known.seeders.pop(peer.node, None)
            self._dirty = True
            self._emit("mesh_peer_dropped", {"node": peer.node, "score": peer.score})

    def _retire(self, peer: Peer, new_node: str) -> None:
        if self.trust.retired(peer.node):
            return
        self.trust.retire(peer.node, new_node)
        # The new key inherits the old one's standing (the old key signed the hand-over).
        self.trust.add(
            new_node, addr=peer.addr, name=peer.name, via=f"rotated:{peer.node[:16]}", score=peer.score
        )
        for known in list(self.directory.values()):
            known.seeders.pop(peer.node, None)
        self._emit("mesh_peer_joined", {"node": new_node, "addr": peer.addr, "via": "key rotation"})

    # -- rotating our key ------------------------------------------------------------------------------

    async def rotate_key(self) -> dict[str, Any]:
        """Make a new node key; the old key's record says ``retired_by`` so peers follow (and refuse
        anything still signed with the old key). Our own announcements are re-signed."""
        engine = self._engine()
        old, new = identity.rotate(self.home)
        self.key = new
        self._retired.add(old.node_id)
        notice = NodeRecord(self.addr, self.config.name, retired_by=new.node_id, ts=round(time.time(), 3))
        await engine.dht_put(old, NODE_SALT, notice.to_bytes())
        for info_hash, ann in list(self.own.items()):
            if ann.node == old.node_id:
                fresh = Announcement(**{**ann.to_dict(), "ts": 0.0, "sig": ""}).signed(new)
                (self.store.folder(info_hash) / "announcement.json").write_bytes(fresh.to_bytes())
                self.own[info_hash] = fresh
                if info_hash in self.directory:
                    self.directory[info_hash].announcement = fresh
        self._dirty = True
        await self.publish()
        return {"old": old.node_id, "new": new.node_id}

    # -- acquiring -----------------------------------------------------------------------------------

    def find(self, skill: str) -> Known:
        """The best-trusted, newest listing of ``skill`` (a skill id or adapter name)."""
        matches = [
            k
            for k in self.directory.values()
            if skill in (k.announcement.skill, k.announcement.adapter) and self._trusted_seeders(k)
        ]
        if not matches:
            error = self.rejected_names.get(skill) or self.rejected.get(skill)
            if error is not None:
                raise type(error)(error.message)
            raise SkillNotFoundError(
                f"no trusted peer announces {skill!r}; `personad mesh skills` lists what the mesh offers",
            )
        return max(matches, key=lambda k: (k.announcement.ts, len(k.seeders)))

    def _trusted_seeders(self, known: Known) -> list[Peer]:
        peers = []
        for node in known.seeders:
            peer = self.trust.get(node)
            if peer is not None and peer.trusted and peer.addr and node != self.node_id:
                peers.append(peer)
        return peers

    async def acquire_skill(
        self,
        skill: str,
        *,
        progress: transfer.Progress | None = None,
        replicate: bool = False,
    ) -> dict[str, Any]:
        """Fetch ``skill``'s adapter and its missing parents, verify everything, register and seed it
        (``acquireSkill``). Returns what was acquired, with the transfer reports."""
        known = self.find(skill)
        ann = known.announcement
        self.acquires[ann.info_hash] = self.acquires.get(ann.info_hash, 0) + 1
        self._dirty = True
        chain: list[Announcement] = []
        self._plan(ann, chain, trail=())
        reports = []
        for member in chain:
            reports.append(await self._acquire_one(member, progress))
        return {
            "skill": ann.skill,
            "adapter": ann.adapter,
            "lora_hash": ann.lora_hash,
            "acquired": [r["adapter"] for r in reports if r["downloaded"]],
            "chain": [a.adapter for a in chain],
            "transfers": reports,
            "replicated": replicate,
        }

    def _plan(self, ann: Announcement, chain: list[Announcement], trail: tuple[str, ...]) -> None:
        """The announcements to acquire, parents first; a parent nobody seeds fails the whole chain."""
        if ann.adapter in trail:
            raise BadAnnouncementError(f"adapter parents form a cycle: {' → '.join((*trail, ann.adapter))}")
        for parent in ann.parents:
            if self.registry.exists(parent):
                continue
            try:
                parent_ann = self.find(parent).announcement
            except SkillNotFoundError:
                error = ParentMissingError(
                    f"{ann.adapter!r} needs its parent {parent!r}, which is neither in the registry nor"
                    " announced by a trusted peer",
                )
                self._reject(ann, error)
                raise error from None
            self._plan(parent_ann, chain, (*trail, ann.adapter))
        if ann not in chain:
            chain.append(ann)

    async def _acquire_one(self, ann: Announcement, progress: transfer.Progress | None) -> dict[str, Any]:
        if self.registry.exists(ann.adapter):
            if self.registry.manifest(ann.adapter).lora_hash == ann.lora_hash:
                return {"adapter": ann.adapter, "downloaded": False, "info_hash": ann.info_hash}
            raise AdapterConflictError(
                f"this registry has another adapter named {ann.adapter!r} (a different lora_hash); delete or"
                " rename it to acquire the mesh's",
            )
        running = self._acquiring.get(ann.info_hash)
        if running is None:
            running = asyncio.create_task(self._download_and_verify(ann, progress))
            self._acquiring[ann.info_hash] = running
            running.add_done_callback(lambda _: self._acquiring.pop(ann.info_hash, None))
        return await asyncio.shield(running)

    async def _download_and_verify(
        self, ann: Announcement, progress: transfer.Progress | None
    ) -> dict[str, Any]:
        known = self.directory.get(ann.info_hash) or Known(ann)
        try:
            self.verifier.before_download(ann)
        except RejectedError as error:
            self._reject(ann, error)
            raise
        seeders = self._trusted_seeders(known)
        addrs = [p.addr for p in seeders]

        def report_progress(data: dict[str, Any]) -> None:
            data = {**data, "adapter": ann.adapter}
            self._emit("mesh_transfer_progress", data)
            if progress is not None:
                progress(data)

        engine = self._engine()
        try:
            report = await transfer.download(
                engine,
                self.store,
                ann.info_hash,
                addrs,
                progress=report_progress,
                check_metadata=lambda handle: self.verifier.check_metadata(ann, handle),
            )
        except RejectedError as error:  # refused on its metadata, before any piece was fetched
            self.store.quarantine(ann.info_hash, f"{error.code}: {error.message}")
            self._reject(ann, error)
            raise
        try:
            handle = engine.find(ann.info_hash)
            names = transfer.file_names(handle) if handle is not None else []
            folder = self.store.folder(ann.info_hash) / ann.adapter
            # First: it flushes libtorrent's write buffers, so the files hold every verified piece.
            await transfer.save_torrent(engine, self.store, ann.info_hash)
            measured = await self.verifier.after_download(ann, folder, names)
            await asyncio.to_thread(self.verifier.register, ann, folder, names, measured)
        except RejectedError as error:
            transfer.remove(engine, ann.info_hash)
            self.store.quarantine(ann.info_hash, f"{error.code}: {error.message}")
            self._reject(ann, error)
            raise
        self.store.mark_complete(ann.info_hash)
        self._seed(ann)
        by_addr = {p.addr: p.node for p in seeders}
        served = {by_addr.get(a, a): n for a, n in report.from_peers.items() if n > 0}
        for node in {ann.node, *served}:
            updated = self.trust.record(node, "verified", ann.adapter)
            if measured and updated is not None:
                self.trust.record(node, "remeasured", ann.adapter)
        result = {
            "adapter": ann.adapter,
            "downloaded": True,
            "info_hash": ann.info_hash,
            "lora_hash": ann.lora_hash,
            "bytes": report.size,
            "seconds": round(report.seconds, 3),
            "from_peers": served,
            "resumed_bytes": report.resumed_bytes,
            "downloaded_bytes": report.downloaded_bytes,
            "hash_failures": report.hash_failures,
            "remeasured": measured,
        }
        # Seeding it marked the record dirty: the next tick publishes it (awaiting a put here would hold
        # the acquisition up to the put's timeout while the tick's own put of the same record runs).
        self._emit("mesh_skill_acquired", {**_summary(ann), **result})
        return result

    def _reject(self, ann: Announcement, error: RejectedError) -> None:
        """Blame the origin and every peer that seeds it (each vouched for it by seeding)."""
        known = self.directory.get(ann.info_hash)
        blamed = {ann.node, *(known.seeders if known else {})} - {self.node_id}
        scores = {}
        for node in blamed:
            updated = self.trust.record(node, error.code, error.message)
            if updated is not None:
                scores[node] = updated.score
                self._dropped(updated)
        self.rejected[ann.info_hash] = error
        self.rejected_names[ann.adapter] = self.rejected_names[ann.skill] = error
        self.directory.pop(ann.info_hash, None)
        self._emit(
            "mesh_skill_rejected",
            {
                **_summary(ann),
                "code": error.code,
                "message": error.message,
                "trust": scores,
                "stage": "acquire",
            },
        )

    # -- replication ---------------------------------------------------------------------------------

    def _replicate(self) -> None:
        """Fetch popular skills we lack: at once above 0.8 demand, above 0.7 while fewer than 3 seed it,
        at most 5 a minute."""
        now = time.monotonic()
        while self._replications and now - self._replications[0] > 60:
            self._replications.popleft()
        for info_hash, known in list(self.directory.items()):
            if info_hash in self.own or info_hash in self._acquiring or info_hash in self.rejected:
                continue
            demand = known.demand()
            wanted = demand > REPLICATE_NOW_ABOVE or (
                demand > REPLICATE_ABOVE and len(known.seeders) < REPLICATION_TARGET
            )
            if not wanted or len(self._replications) >= REPLICATIONS_PER_MINUTE:
                continue
            if self.registry.exists(known.announcement.adapter):
                continue
            self._replications.append(now)
            task = asyncio.create_task(self._replicate_one(known.announcement.adapter, demand))
            task.add_done_callback(_log_failure)

    async def _replicate_one(self, adapter: str, demand: float) -> dict[str, Any]:
        self._emit("mesh_replicating", {"adapter": adapter, "demand": round(demand, 3)})
        return await self.acquire_skill(adapter, replicate=True)

    # -- views ---------------------------------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.trust.peers()]

    def skills(self) -> list[dict[str, Any]]:
        rows = []
        for info_hash, known in sorted(self.directory.items(), key=lambda kv: kv[1].announcement.adapter):
            rows.append(
                {
                    **_summary(known.announcement),
                    "seeders": sorted(known.seeders),
                    "seeding_here": info_hash in self.own,
                    "demand_score": round(known.demand(), 4),
                    "metrics": known.announcement.metrics,
                    "compatible": known.announcement.base_model_sha256 == self.config.base_model_sha256,
                }
            )
        return rows

    def seed_stats(self) -> list[dict[str, Any]]:
        """Per torrent we seed: payload bytes uploaded to peers since this start (libtorrent's count)."""
        engine = self._engine()
        rows = []
        for info_hash, ann in sorted(self.own.items(), key=lambda kv: kv[1].adapter):
            handle = engine.find(info_hash)
            status = handle.status() if handle is not None else None
            rows.append(
                {
                    "adapter": ann.adapter,
                    "info_hash": info_hash,
                    "uploaded": int(status.total_payload_upload) if status is not None else 0,
                    "peers": int(status.num_peers) if status is not None else 0,
                }
            )
        return rows

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "node": self.node_id,
            "addr": self.addr,
            "name": self.config.name,
            "peers": len(self.trust.peers()),
            "trusted_peers": len(self.trust.trusted()),
            "skills_known": len(self.directory),
            "seeding": sorted(a.adapter for a in self.own.values()),
            "seeds": self.seed_stats(),
            "downloading": sorted(self._acquiring),
            "rejected": {ih: e.code for ih, e in self.rejected.items()},
            "base_model_sha256": self.config.base_model_sha256,
            "personas": self.persona_status,
        }


def _outward_address() -> str:
    """The local address of the interface a packet to the outside would leave by (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only, UDP connect sends nothing
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _listen(listen: str, port_file: Path) -> str:
    """``host:0`` becomes the port this home listened on last time, so peers find it again after a
    restart (libtorrent moves on to a free port if that one is taken)."""
    host, _, port = listen.rpartition(":")
    if port == "0" and port_file.exists():
        with contextlib.suppress(ValueError):
            return f"{host}:{int(port_file.read_text(encoding='utf-8').strip())}"
    return listen


def _summary(ann: Announcement) -> dict[str, Any]:
    return {
        "skill": ann.skill,
        "adapter": ann.adapter,
        "parents": ann.parents,
        "info_hash": ann.info_hash,
        "lora_hash": ann.lora_hash,
        "node": ann.node,
        "persona": ann.persona,
        "effectiveness": ann.effectiveness,
        "size": ann.size,
        "ts": ann.ts,
    }


def _announced_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What of a manifest's metrics an announcement carries: the measured ones that fit a DHT item."""
    keep: dict[str, Any] = {}
    for key in ("effectiveness", "exam", "ci", "n", "probe_kl"):
        if key in metrics:
            keep[key] = metrics[key]
    return keep


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, RejectedError):
        log.warning("replication failed: %s", error)
