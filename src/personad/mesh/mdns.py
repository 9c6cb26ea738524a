"""Discovery on the local network (python-zeroconf), when the user turns it on (``mesh_mdns``).

Each node advertises ``_personad-mesh._udp.local.`` with its public key and mesh address in the TXT
record, and browses for the others; a node found this way becomes a peer like an invited one (at the
initial trust). A forged record costs nothing: the key's DHT records are signed, so a wrong address only
leads to a node that cannot produce them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

log = logging.getLogger(__name__)

SERVICE = "_personad-mesh._udp.local."

Found = Callable[[str, str], None]  # (node hex, "host:port")


class MdnsDiscovery:
    def __init__(self, node_id: str, host: str, port: int, found: Found) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self._found = found
        self._loop: asyncio.AbstractEventLoop | None = None
        self._zeroconf: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None

    def _interfaces(self) -> Any:
        from zeroconf import InterfaceChoice

        return InterfaceChoice.All if self.host in ("", "0.0.0.0") else [self.host]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        zc = Zeroconf(interfaces=self._interfaces(), ip_version=IPVersion.V4Only)
        address = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        info = ServiceInfo(
            SERVICE,
            f"{self.node_id[:32]}.{SERVICE}",
            addresses=[socket.inet_aton(address)],
            port=self.port,
            properties={"node": self.node_id, "v": "1"},
        )
        zc.register_service(info)
        self._zeroconf = zc
        self._browser = ServiceBrowser(zc, SERVICE, handlers=[self._on_change])

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=2000)
        if info is None or info.port is None:
            return
        node = ((info.properties or {}).get(b"node") or b"").decode("ascii", "replace")
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if len(node) != 64 or node == self.node_id or not addresses or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._found, node, f"{addresses[0]}:{info.port}")

    async def close(self) -> None:
        zc, self._zeroconf = self._zeroconf, None
        if zc is not None:
            await asyncio.to_thread(zc.close)
