"""Run the daemon under uvicorn on a socket we bind ourselves (so port 0 works and daemon.json is right)."""

from __future__ import annotations

import logging
import resource
import socket
import sys
from collections.abc import Callable

import uvicorn

from personad.daemon import Daemon
from personad.privacy import install_log_redaction
from personad.server.app import create_app
from personad.state import TOKEN_FILE

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.

    Every WebSocket client costs the daemon two descriptors (its socket and its session's open
    ``commands.jsonl``), so the usual soft limit of 1024 would cap it near 500 clients, past which
    command records are lost and new connections fail.
    """
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != unlimited else 1 << 20
    if soft == unlimited or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        log.warning("could not raise the open-file limit from %d to %d", soft, target)
        return soft
    return target


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def build_server(daemon: Daemon, sock: socket.socket, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(daemon),
        log_level=log_level,
        # The app enforces max_message_bytes itself with a structured error; this is only the hard stop.
        ws_max_size=max(16 << 20, daemon.settings.max_message_bytes * 4),
        ws_ping_interval=20,
        # Bus messages are small; compressing them costs more CPU than the bytes it saves.
        ws_per_message_deflate=False,
        ws_ping_timeout=20,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # uvicorn.Config has just (re)configured its loggers: mask tokens in what they write from here on.
    install_log_redaction()
    return server


def serve(daemon: Daemon, *, announce: Callable[[str], None] = print, log_level: str = "warning") -> None:
    """Serve until SIGINT/SIGTERM; uvicorn's handlers drive a clean lifespan shutdown."""
    settings = daemon.settings
    raise_open_file_limit()
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    daemon.write_state_file(settings.host, port)
    # The clickable URL carries the token only on a terminal: redirected output is a log, which must not.
    if sys.stdout.isatty():
        announce(f"personad {daemon.home} listening on {daemon.url}/?token={daemon.token}")
    else:
        announce(f"personad {daemon.home} listening on {daemon.url}/ (token in {daemon.home / TOKEN_FILE})")
    server = build_server(daemon, sock, log_level=log_level)
    try:
        server.run(sockets=[sock])
    finally:
        daemon.remove_state_file()
        sock.close()
