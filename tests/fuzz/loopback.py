"""Keep a fuzzed Chromium on 127.0.0.1: every other request goes to a local sink "proxy" that hangs up.

Chromium is started with a proxy (our sink) and a bypass list that subtracts Chromium's implicit bypasses
(``<-loopback>`` drops localhost, ``[::1]``, 127/8 and link-local 169.254/16) and then bypasses only
``127.0.0.1``; the host resolver maps every name except 127.0.0.1 to NOTFOUND. So http://10.1.2.3/,
http://example.org/, https://…, http://localhost/ and http://169.254.169.254/ all end at the sink (which
records the request line and closes): nothing leaves the machine, and the test can see that it tried.
"""

from __future__ import annotations

import socket
import threading


class SinkProxy:
    """A TCP listener on 127.0.0.1 that records the first line of every connection, then closes it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="sink-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    line = ""
                with self._lock:
                    self.requests.append(line)

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._sock.close()


def loopback_only_chromium_args(proxy_port: int) -> list[str]:
    """Chromium flags under which only 127.0.0.1 is reachable (everything else hits the sink)."""
    return [
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>;127.0.0.1",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        # WebRTC may send UDP around a proxy; forbid it.
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--dns-prefetch-disable",
    ]
