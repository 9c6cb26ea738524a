"""One libtorrent session per daemon: the DHT (BEP 44 items) and BitTorrent transfers (BEP 52 torrents).

libtorrent does the work; this module adapts its alert stream to asyncio. One pump task pops alerts every
few milliseconds and completes the futures of DHT gets and puts, and the waiters of torrent events.
Everything is on loopback unless the user binds the mesh elsewhere; DHT bootstrap routers, LSD, UPnP and
NAT-PMP are off, so nothing leaves the machine but traffic to peers we were told about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import libtorrent as lt

from .identity import NodeKey

log = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.02
#: While a transfer runs the pump polls faster: its end waits on an alert (the resume data that becomes
#: the .torrent), and a 2 MB adapter takes ~20 ms on loopback.
BUSY_PUMP_INTERVAL_S = 0.002


def session_settings(listen: str) -> dict[str, Any]:
    """Settings for a mesh session listening on ``host:port`` (TCP for BitTorrent, UDP for the DHT)."""
    return {
        "listen_interfaces": listen,
        "outgoing_interfaces": "",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "dht_bootstrap_nodes": "",  # no public routers: only peers from invites and peer lists
        # Peers share one address on loopback (and often a NAT elsewhere): allow several per IP.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        # Every peer on loopback (or behind one NAT) shares an address: the per-IP query limit (5/s) would
        # block the whole mesh for five minutes.
        "dht_block_ratelimit": 1000,
        "dht_upload_rate_limit": 1_000_000,
        "allow_multiple_connections_per_ip": True,
        "user_agent": "personad-mesh",
        "peer_fingerprint": "-PD0001-",
        "alert_mask": (
            lt.alert_category.error
            | lt.alert_category.status
            | lt.alert_category.storage
            | lt.alert_category.dht
            | lt.alert_category.dht_operation
            | lt.alert_category.peer
        ),
        "alert_queue_size": 10000,
        # A mesh torrent is small and wanted now: no queueing behind other torrents.
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "auto_manage_startup": 0,
        "smooth_connects": False,
        "connection_speed": 200,
        "unchoke_slots_limit": -1,
        "request_timeout": 10,
        "peer_connect_timeout": 3,
        # A seeder that failed once (busy, restarting) is tried again after a second, not the default
        # minute times its failures: a mesh has few seeders per adapter and each one matters.
        "min_reconnect_time": 1,
        "max_failcount": 1000,
        "tick_interval": 100,  # the default 500 ms delays every connect_peer by up to that
    }


def item_value(data: bytes) -> bytes:
    """A BEP 44 value for ``data``: a bencoded byte string."""
    return str(len(data)).encode() + b":" + data


def value_bytes(item: bytes) -> bytes | None:
    """``data`` back from a bencoded byte string (None for any other bencoded value)."""
    head, sep, rest = item.partition(b":")
    if not sep or not head.isdigit() or len(rest) != int(head):
        return None
    return rest


@dataclass
class DhtItem:
    value: bytes
    seq: int


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class TorrentEngine:
    """The daemon's libtorrent session and its alert pump."""

    def __init__(self, listen: str, *, download_limit: int = 0, upload_limit: int = 0) -> None:
        settings = session_settings(listen)
        # A limit the user sets holds for peers on the local network too (libtorrent exempts them by default).
        settings.update(
            {
                "download_rate_limit": download_limit,
                "upload_rate_limit": upload_limit,
                "ignore_limits_on_local_network": False,
            }
        )
        self.session = lt.session(settings)  # type: ignore[call-overload]  # the stubs lack the dict form
        self._gets: dict[tuple[bytes, bytes], list[tuple[asyncio.Future[DhtItem | None], list[DhtItem]]]] = (
            defaultdict(list)
        )
        self._puts: dict[tuple[bytes, bytes], list[asyncio.Future[int]]] = defaultdict(list)
        self._torrent_listeners: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self._pump: asyncio.Task[None] | None = None
        self._busy = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pump = asyncio.create_task(self._run_pump(), name="mesh-alert-pump")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for waiters in self._gets.values():
            for future, _ in waiters:
                if not future.done():
                    future.set_result(None)
        for puts in self._puts.values():
            for put in puts:
                if not put.done():
                    put.set_result(0)
        # Pausing closes the connections and stops the DHT; the session itself goes with this object.
        await asyncio.to_thread(self.session.pause)

    # -- DHT ---------------------------------------------------------------------------------------

    def add_dht_node(self, addr: str) -> None:
        self.session.add_dht_node(parse_addr(addr))

    async def dht_put(self, key: NodeKey, salt: bytes, data: bytes, timeout: float = 5.0) -> int:
        """Store ``data`` as ``key``'s mutable item under ``salt``; returns how many nodes stored it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._puts[(key.public, salt)].append(future)
        self.session.dht_put_mutable_item(key.libtorrent_secret(), key.public, item_value(data), salt)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return 0
        finally:
            with contextlib.suppress(ValueError):
                self._puts[(key.public, salt)].remove(future)

    async def dht_get(self, public: bytes, salt: bytes, timeout: float = 3.0) -> DhtItem | None:
        """``public``'s mutable item under ``salt`` (the highest seq heard), or None. libtorrent checked its
        BEP 44 signature before we see it."""
        future: asyncio.Future[DhtItem | None] = asyncio.get_running_loop().create_future()
        heard: list[DhtItem] = []
        self._gets[(public, salt)].append((future, heard))
        self.session.dht_get_mutable_item(public, salt)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return max(heard, key=lambda i: i.seq) if heard else None
        finally:
            with contextlib.suppress(ValueError):
                self._gets[(public, salt)].remove((future, heard))

    # -- torrents ----------------------------------------------------------------------------------

    def on_torrent(self, info_hash: str, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``listener(alert)`` for each alert about the torrent ``info_hash`` (v2 hex)."""
        self._torrent_listeners[info_hash].append(listener)
        return lambda: self._torrent_listeners[info_hash].remove(listener)

    def find(self, info_hash: str) -> Any | None:
        handle = self.session.find_torrent(_sha1_or_v2(info_hash))
        return handle if handle.is_valid() else None

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Pump alerts at the fast rate for the duration (a transfer in progress)."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    # -- the pump ----------------------------------------------------------------------------------

    async def _run_pump(self) -> None:
        while True:
            try:
                for alert in self.session.pop_alerts():
                    self._dispatch(alert)
            except Exception:  # one bad alert must not stop the mesh; it is logged with its traceback
                log.exception("mesh alert handling failed")
            await asyncio.sleep(BUSY_PUMP_INTERVAL_S if self._busy else PUMP_INTERVAL_S)

    def _dispatch(self, alert: Any) -> None:
        if isinstance(alert, lt.dht_mutable_item_alert):
            key = (bytes(alert.key), bytes(alert.salt))
            value = value_bytes(cast(bytes, alert.item))  # the binding hands over the bencoded bytes
            if value is None:  # not one of ours (we only put byte strings)
                return
            item = DhtItem(value, int(alert.seq))
            for future, heard in self._gets.get(key, []):
                heard.append(item)
                if alert.authoritative and not future.done():
                    future.set_result(max(heard, key=lambda i: i.seq))
            return
        if isinstance(alert, lt.dht_put_alert):
            key = (bytes(alert.public_key), bytes(alert.salt))
            for put in self._puts.get(key, []):
                if not put.done():
                    put.set_result(int(alert.num_success))
            return
        if isinstance(alert, lt.torrent_alert):
            with contextlib.suppress(RuntimeError):
                handle = alert.handle
                if handle.is_valid():
                    hashes = handle.info_hashes()
                    if hashes.has_v2():
                        for listener in list(self._torrent_listeners.get(str(hashes.v2), [])):
                            listener(alert)


def _sha1_or_v2(info_hash: str) -> Any:
    """libtorrent finds torrents by the truncated v2 hash for v2/hybrid torrents."""
    return lt.sha1_hash(bytes.fromhex(info_hash)[:20])


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
