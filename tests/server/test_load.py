"""Load through the public WebSocket interface: many clients at once, every reply and chat event checked.

The load generator is the one in ``benchmarks/bus.py`` (which also records the latency figures); here it
runs against an in-process daemon and only correctness is asserted, never timing: every request gets
exactly one reply, the reply is the answer to that request, every room member gets every chat message
exactly once, and every member sees the order ``chat_history`` has (the order of the server's ids).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import RunningDaemon

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bus.py"


def _load_bench() -> ModuleType:
    name = "personad_bench_bus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


bench = _load_bench()


def _url(running: RunningDaemon) -> str:
    return f"{running.ws_url}?token={running.token}&kind=api"


def _assert_load(result: dict[str, Any]) -> None:
    counts = {k: result[k] for k in ("lost", "duplicated", "mismatched", "errors", "connect_failed")}
    assert counts == dict.fromkeys(counts, 0), result
    assert result["closed_early"] == 0, result
    assert result["completed"] == result["requests"] == result["clients"] * result["commands_per_client"]
    assert bench.load_ok(result)


def _assert_fanout(result: dict[str, Any]) -> None:
    counts = {
        k: result[k]
        for k in ("chat_errors", "delivered_short", "lost", "duplicated", "mismatched", "order_mismatches")
    }
    assert counts == dict.fromkeys(counts, 0), result
    assert result["events_received"] == result["events_expected"] == result["members"] * result["messages"]
    assert result["history_count"] == result["messages"], result
    assert result["history_lost"] == result["history_duplicated"] == 0, result
    assert result["history_in_id_order"], result
    assert bench.fanout_ok(result)


async def test_200_clients_x_50_commands_every_reply_once_and_matched(running: RunningDaemon) -> None:
    """200 connections at once, each 50 sequential round trips (ping with a unique echo, session, rooms,
    chat_history): 10,000 replies, none lost, none duplicated, each the answer to its own request."""
    result = await bench.run_load(_url(running), clients=200, commands=50, depth=1, room="load-seq")
    _assert_load(result)


async def test_pipelined_commands_every_reply_once_and_matched(running: RunningDaemon) -> None:
    """Every connection sends all its commands without waiting (past the daemon's 64 in flight)."""
    result = await bench.run_load(_url(running), clients=50, commands=100, depth=100, room="load-pipe")
    _assert_load(result)


@pytest.mark.parametrize("burst", [False, True], ids=["50-senders", "one-sender-50-at-once"])
async def test_chat_fanout_every_member_gets_every_message_once_in_history_order(
    running: RunningDaemon, burst: bool
) -> None:
    result = await bench.run_chat_fanout(_url(running), members=50, burst=burst, room="fanout")
    _assert_fanout(result)
    assert result["senders"] == (1 if burst else 50)


async def test_a_stalled_reader_is_closed_not_served_a_gap(
    running: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that stops reading while events pile up must be closed (1013), as the protocol says; what
    it received before the close must be a gap-free prefix. It must never get later events past a gap."""
    import asyncio
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = _url(running)
    # The sender is a member of the room it floods, so it gets its own 800 events back: it keeps the
    # daemon's outbox (4096), or a loaded machine that slows its reader would close it instead.
    sender = await bench.CheckedConn(url, "sender").open()
    # A small outbox for the stalled member, so a few MB overflow it; read when each connection is made.
    monkeypatch.setattr("personad.server.websocket.OUTBOX_LIMIT", 64)
    # max_queue=1: the client stops reading from the socket after one buffered frame, and a small receive
    # buffer keeps TCP from absorbing much, so the stalled connection's outbox overflows.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(running.url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    stalled = await connect(f"{url}&name=stalled", sock=sock, max_size=None, max_queue=1, ping_interval=None)
    try:
        assert json.loads(await stalled.recv())["type"] == "welcome"
        await sender.call("room_create", {"room": "stall"})
        await stalled.send(
            json.dumps(
                {
                    "type": "execute_command",
                    "id": "j",
                    "data": {"command": "room_join", "params": {"room": "stall"}},
                }
            )
        )
        while json.loads(await stalled.recv()).get("id") != "j":
            pass
        pad = "x" * 15_000
        count = 800  # 12 MB of events: several times the socket buffers plus 64 queued messages
        pending = [
            await sender.send("chat_delta", {"room": "stall", "stream_id": "s", "delta": f"{k}:{pad}"})
            for k in range(count)
        ]
        await asyncio.gather(*pending)
        seen: list[int] = []

        async def drain(until: int) -> bool:
            """Read deltas until ``until`` has arrived; False when the daemon closed the connection."""
            try:
                while not seen or seen[-1] != until:
                    message = json.loads(await asyncio.wait_for(stalled.recv(), 2))
                    if message.get("event") == "chat_delta":
                        seen.append(int(message["data"]["delta"].split(":", 1)[0]))
            except ConnectionClosed:
                return False
            except TimeoutError:
                pass
            return True

        still_open = await drain(count - 1)
        if still_open:
            # The stalled client reads again; one more event must not arrive past a gap.
            await sender.call("chat_delta", {"room": "stall", "stream_id": "s", "delta": f"{count}:end"})
            still_open = await drain(count)
        assert seen == list(range(len(seen))), f"gap after {len(seen)} events: {seen[-3:]}"
        if still_open:
            assert seen == list(range(count + 1)), f"{count + 1 - len(seen)} events dropped silently"
        else:
            assert stalled.close_code == 1013, stalled.close_code
    finally:
        await stalled.close()
        await sender.close()


def test_daemon_lifts_a_low_open_file_limit(tmp_path: Path) -> None:
    """Two descriptors per client: under a soft limit of 256 a daemon that kept it could not serve 200
    clients (connections fail, command records are lost). ``personad serve`` lifts it to the hard limit."""
    import asyncio
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to lift")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with bench.daemon_process(tmp_path, preexec_fn=low_limit) as daemon:
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        result = asyncio.run(bench.run_load(daemon.url, clients=200, commands=5, depth=1))
        _assert_load(result)
    output = (tmp_path / "daemon.out").read_text(errors="replace")
    assert "Too many open files" not in output, output[-2000:]
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert int(line.split()[3]) > 256, line
