"""Load through the public WebSocket interface: many clients at once, every reply and chat event checked.

The load generator is the one in ``benchmarks/bus.py`` (which also records the latency figures); here it
runs against an in-process daemon and only correctness is asserted, never timing: every request gets
exactly one reply, the reply is the answer to that request, every room member gets every chat message
exactly once, and every member sees the order ``chat_history`` has (the order of the server's ids).
"""

from __future__ import annotations

import importlib.util
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
