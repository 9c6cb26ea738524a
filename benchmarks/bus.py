"""Benchmark the daemon's WebSocket command bus against a raw ``websockets`` echo server.

Both servers run in their own subprocess and are driven by the same asyncio load generator:

* latency: one client, sequential ``execute_command`` -> ``command_result`` round trips (p50/p99/mean);
* throughput: 1 and 32 concurrent clients (one connection each) doing sequential round trips for a
  fixed duration; commands/s = completed / elapsed, plus the server's CPU time per command (/proc).

Both servers run at the same time and are measured in alternating rounds (echo, personad, personad,
echo, ...), so drifting load on a shared machine hits both alike; the throughput ratio is the median of
the per-round ratios. The machine's cores are shared by the servers and the load generator, which is
the same for both servers, so the ratios are fair even where the absolute numbers are not.

The daemon runs the ``ping`` command, which goes through the whole command processor (validation,
capability check, recording in the session dir, event publishing). The baseline ("raw echo") is a bare
``websockets.asyncio.server`` that parses each message as JSON and answers with the same
``command_result`` envelope the daemon sends, on the same event loop implementation uvicorn uses.

Then a load phase against the daemon alone, where every reply and event is checked, not only timed:

* load: 200 connections opened at once, each running 50 commands (seven in ten ``ping`` with a payload
  unique to the request, and ``session``, ``rooms``, ``chat_history``), first as sequential round trips
  (200 in flight), then pipelined (all 50 sent at once on every connection: 10,000 in flight). Each reply
  must answer an id its connection sent, once, with the content that request asked for: ``lost``,
  ``duplicated``, ``mismatched`` and ``errors`` must be 0. Latency p50/p99/max and commands/s.
* chat fan-out: 50 members of one room post one message each at the same moment, then one member posts
  50 at once: every member must get all 50 ``chat_message`` events exactly once, in the order of the
  server's message ids, which ``chat_history`` (all 50, once each) must have too. Delivery p50/p99.

``--load-clients 0`` skips the load phase.

Measured (December 2026, 2 cores shared by the daemon, the load generator and other work; four runs,
so ranges): 0 lost, 0 duplicated, 0 mismatched, 0 errors in every run.

* 200 x 50 sequential (200 in flight): p50 54-82 ms, p99 92-236 ms, 2,160-3,240 commands/s, about
  220 us of daemon CPU per command; 419 descriptors open in the daemon (two per client).
* 200 x 50 pipelined (10,000 in flight): p50 1.2-2.3 s, p99 1.5-4.0 s (queueing: latency is in-flight
  count / throughput), 1,870-4,650 commands/s.
* chat fan-out, 50 senders -> 50 members (2,500 events): delivery p50 160-460 ms, p99 250-750 ms, all
  delivered in 0.26-0.79 s; one sender, 50 at once: p50 150-430 ms, p99 270-600 ms. Each ``chat`` commits
  with an fsync (``synchronous=FULL``) on the event loop: 1.3 ms on an idle disk here, 4-13 ms when loaded.

The last line of stdout is one JSON object with the numbers (the load figures under ``load``,
``load_pipelined`` and ``chat_fanout``). Run::

    .venv/bin/python benchmarks/bus.py            # full run (about 2 minutes)
    .venv/bin/python benchmarks/bus.py --quick    # a few seconds
    .venv/bin/python benchmarks/bus.py --profile /tmp/daemon.prof   # + cProfile of the daemon
    .venv/bin/python -m pstats /tmp/daemon.prof   # then: sort tottime / stats 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

P99_TARGET_MS = 5.0
THROUGHPUT_RATIO_TARGET = 0.5
STARTUP_TIMEOUT_S = 30.0
BASELINE = "websockets asyncio server, JSON parse + command_result reply"
WELCOME = json.dumps({"type": "welcome", "id": None, "data": {}}, separators=(",", ":"))


def _event_loop_policy(name: str) -> None:
    """Use uvloop when asked and installed (uvicorn's ``loop="auto"`` picks it, so the daemon runs on it)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _loop_name(requested: str) -> str:
    if requested == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
    return requested


# --------------------------------------------------------------------------------------------------------
# The raw echo server (run in its own process with --echo-server)
# --------------------------------------------------------------------------------------------------------


async def _echo_handler(ws: Any) -> None:
    await ws.send(WELCOME)
    dumps = json.dumps
    loads = json.loads
    async for raw in ws:
        envelope = loads(raw)
        reply = {
            "type": "command_result",
            "id": envelope.get("id"),
            "ok": True,
            "result": {"pong": True, "echo": None},
        }
        await ws.send(dumps(reply, separators=(",", ":")))


def _run_profiled_daemon(out: str, serve_args: list[str]) -> None:
    """``personad`` under cProfile. uvicorn re-raises SIGTERM after its graceful shutdown, which would
    kill the process before the stats are written, so SIGTERM gets a no-op Python handler first."""
    import cProfile

    from personad.cli import main as personad_main

    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        personad_main(serve_args, standalone_mode=False)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


async def _run_echo_server(port: int, compression: str) -> None:
    from websockets.asyncio.server import serve

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    # websockets' "deflate" uses the same permessage-deflate settings as uvicorn (window bits 12, memLevel 5)
    deflate = "deflate" if compression == "deflate" else None
    async with serve(_echo_handler, "127.0.0.1", port, max_size=16 << 20, compression=deflate) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"echo listening on ws://127.0.0.1:{bound}/", flush=True)
        await stop


# --------------------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str  # the ws:// URL a client connects to
    proc: subprocess.Popen[bytes]


def _wait_for_line(path: Path, prefix: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = path.read_text(errors="replace")
            raise RuntimeError(f"server exited with {proc.returncode}; output:\n{output}")
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.05)
    raise TimeoutError(f"no {prefix!r} line after {timeout}s in {path}")


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def daemon_process(
    workdir: Path, *, profile: Path | None = None, preexec_fn: Callable[[], None] | None = None
) -> Iterator[Target]:
    """``personad serve --port 0`` in a fresh home; yields once ``daemon.json`` exists and /healthz is 200.

    With ``profile`` the daemon runs under cProfile (through this script) and dumps its stats there on exit;
    ``preexec_fn`` runs in the child before it starts (to set resource limits, say).
    """
    home = workdir / "home"
    out = workdir / "daemon.out"
    serve_args = ["serve", "--home", str(home), "--port", "0", "--log-level", "warning"]
    if profile is None:
        cmd = [sys.executable, "-m", "personad.cli", *serve_args]
    else:
        script = os.path.abspath(__file__)
        cmd = [sys.executable, script, "--profiled-daemon", str(profile), "--", *serve_args]
    env = dict(os.environ)
    env.pop("PERSONAD_TOKEN", None)
    env.pop("PERSONAD_PORT", None)
    # No default persona: its process and the local inference worker would compete for the cores.
    env["PERSONAD_DEFAULT_PERSONA"] = ""
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=preexec_fn,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        state: dict[str, Any] | None = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}:\n{_tail(out)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon not up after {STARTUP_TIMEOUT_S}s:\n{_tail(out)}")
            if state is None:
                with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                    state = json.loads((home / "daemon.json").read_text(encoding="utf-8"))
            if state is not None:
                try:
                    with urllib.request.urlopen(f"{state['url']}/healthz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{state['port']}/ws?token={state['token']}&kind=api"
        yield Target("personad", url, proc)
    finally:
        _stop(proc, timeout=10.0 if profile is None else 60.0)  # writing the profile takes a while


@contextlib.contextmanager
def echo_process(workdir: Path, loop: str, compression: str) -> Iterator[Target]:
    out = workdir / "echo.out"
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--echo-server",
        "0",
        "--loop",
        loop,
        "--echo-compression",
        compression,
    ]
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        line = _wait_for_line(out, "echo listening on ", proc, STARTUP_TIMEOUT_S)
        yield Target("raw echo", line.removeprefix("echo listening on ").strip(), proc)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------------------------------------
# The load generator (identical for both servers)
# --------------------------------------------------------------------------------------------------------


class BusClient:
    """One connection doing sequential execute_command -> command_result round trips."""

    def __init__(self, url: str, tag: str) -> None:
        self.url = url
        self.tag = tag
        self.seq = 0
        self.ws: Any = None

    async def __aenter__(self) -> BusClient:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=16 << 20, open_timeout=10)
        welcome = json.loads(await self.ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome message, got {welcome}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def call(self) -> None:
        self.seq += 1
        rid = f"{self.tag}-{self.seq}"
        await self.ws.send(
            '{"type":"execute_command","id":"' + rid + '","data":{"command":"ping","params":{}}}'
        )
        # Only one request is in flight per connection, but match by id anyway (events could interleave).
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == rid and reply.get("type") == "command_result":
                break
        if not reply.get("ok") or reply.get("result", {}).get("pong") is not True:
            raise RuntimeError(f"bad reply: {reply}")


async def negotiated_compression(url: str) -> str:
    """``deflate`` when the server accepted the client's permessage-deflate offer, else ``none``."""
    async with BusClient(url, "probe") as client:
        extensions = client.ws.response.headers.get("Sec-WebSocket-Extensions") or ""
    return "deflate" if "permessage-deflate" in extensions else "none"


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int | None:
    """How many file descriptors ``pid`` has open (Linux); None elsewhere."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _order(targets: list[Target], round_no: int) -> list[Target]:
    """Alternate which server goes first, so neither always runs right after the other."""
    return targets if round_no % 2 == 0 else targets[::-1]


async def measure_latency(
    targets: list[Target], warmup: int, samples: int, rounds: int
) -> dict[str, list[float]]:
    """One connection per server; the samples are taken in ``rounds`` chunks, alternating servers."""
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    async with contextlib.AsyncExitStack() as stack:
        clients = {t.name: await stack.enter_async_context(BusClient(t.url, "lat")) for t in targets}
        for client in clients.values():
            for _ in range(warmup):
                await client.call()
        clock = time.perf_counter_ns
        chunk = -(-samples // rounds)
        for r in range(rounds):
            for target in _order(targets, r):
                client, samples_out = clients[target.name], out[target.name]
                for _ in range(min(chunk, samples - len(samples_out))):
                    t0 = clock()
                    await client.call()
                    samples_out.append((clock() - t0) / 1e6)
    return out


@dataclass
class Throughput:
    rate: float  # commands per second: the median over the rounds
    rates: list[float]  # per round
    server_cpu_us: float | None  # server CPU time per command (user + system), microseconds
    client_cpu_us: float  # load generator CPU time per command, microseconds


async def _timed_window(
    conns: list[BusClient], seconds: float, pid: int
) -> tuple[int, float, float | None, float]:
    """All ``conns`` do round trips for ``seconds``: (done, elapsed, server CPU s, client CPU s)."""
    counts = [0] * len(conns)
    start = asyncio.Event()
    deadline = 0.0

    async def worker(i: int) -> None:
        await start.wait()
        conn, clock, n = conns[i], time.perf_counter, 0
        while clock() < deadline:
            await conn.call()
            n += 1
        counts[i] = n

    tasks = [asyncio.create_task(worker(i)) for i in range(len(conns))]
    await asyncio.sleep(0)
    server0, client0 = process_cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    server1, client1 = process_cpu_seconds(pid), time.process_time()
    server = None if server0 is None or server1 is None else server1 - server0
    return sum(counts), elapsed, server, client1 - client0


async def measure_throughput(
    targets: list[Target], clients: int, duration: float, rounds: int, warmup: int
) -> dict[str, Throughput]:
    """``clients`` connections per server; ``duration`` seconds per server, split in alternating rounds."""
    async with contextlib.AsyncExitStack() as stack:
        conns: dict[str, list[BusClient]] = {}
        for target in targets:
            conns[target.name] = [
                await stack.enter_async_context(BusClient(target.url, f"c{i}")) for i in range(clients)
            ]
            for conn in conns[target.name]:  # a few round trips each so every connection is warm
                for _ in range(warmup):
                    await conn.call()
        rates: dict[str, list[float]] = {t.name: [] for t in targets}
        done: dict[str, int] = dict.fromkeys(rates, 0)
        server_cpu: dict[str, float | None] = dict.fromkeys(rates, 0.0)
        client_cpu: dict[str, float] = dict.fromkeys(rates, 0.0)
        for r in range(rounds):
            for target in _order(targets, r):
                name = target.name
                window = duration / rounds
                n, elapsed, server, client = await _timed_window(conns[name], window, target.proc.pid)
                rates[name].append(n / elapsed)
                done[name] += n
                prev = server_cpu[name]
                server_cpu[name] = None if prev is None or server is None else prev + server
                client_cpu[name] += client
    out: dict[str, Throughput] = {}
    for name, per_round in rates.items():
        total = max(done[name], 1)
        cpu = server_cpu[name]
        out[name] = Throughput(
            statistics.median(per_round),
            per_round,
            None if cpu is None else cpu / total * 1e6,
            client_cpu[name] / total * 1e6,
        )
    return out


def _pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class Result:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    throughput_1: Throughput
    throughput_32: Throughput


def _describe(t: Throughput) -> str:
    server = "?" if t.server_cpu_us is None else f"{t.server_cpu_us:.0f}"
    spread = f"{min(t.rates):.0f}-{max(t.rates):.0f}"
    return (
        f"{t.rate:9.0f} commands/s (rounds {spread}; CPU per command: server {server} us, "
        f"load generator {t.client_cpu_us:.0f} us)"
    )


async def run_suite(
    targets: list[Target], args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Result]:
    latencies = await measure_latency(targets, args.warmup, args.samples, args.rounds)
    t1 = await measure_throughput(targets, 1, args.duration, args.rounds, warmup=20)
    tn = await measure_throughput(targets, args.clients, args.duration, args.rounds, warmup=5)
    results: dict[str, Result] = {}
    for target in targets:
        name = target.name
        lat = sorted(latencies[name])
        p50, p99, mean = _pct(lat, 50), _pct(lat, 99), statistics.fmean(lat)
        log(
            f"  [{name}] latency  p50 {p50:.3f} ms  p99 {p99:.3f} ms  mean {mean:.3f} ms  "
            f"max {lat[-1]:.3f} ms  ({len(lat)} samples)"
        )
        log(f"  [{name}] throughput  1 client : {_describe(t1[name])}")
        log(f"  [{name}] throughput {args.clients:2d} clients: {_describe(tn[name])}")
        results[name] = Result(p50, p99, mean, lat[-1], t1[name], tn[name])
    return results


def paired_ratio(ours: Throughput, base: Throughput) -> float:
    """Median over rounds of ours/base, each pair measured back to back (robust to drifting machine load)."""
    pairs = [o / b for o, b in zip(ours.rates, base.rates, strict=True) if b > 0]
    return statistics.median(pairs) if pairs else 0.0


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------------------------------------
# Load and chat fan-out (personad only): many clients at once, every reply and every event checked
# --------------------------------------------------------------------------------------------------------

LOAD_ROOM = "load"
LOAD_SEED = "load: the seed message every chat_history must return"
REPLY_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 60.0


def _latency_ms(seconds: list[float]) -> dict[str, float | None]:
    ordered = sorted(s * 1000 for s in seconds)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(_pct(ordered, 50), 3),
        "p99_ms": round(_pct(ordered, 99), 3),
        "max_ms": round(ordered[-1], 3),
    }


class CheckedConn:
    """One asyncio ``websockets`` connection with a reader task that matches command results by id.

    Every result must answer an id this connection sent and is still waiting for: a second result for an
    answered id counts in ``duplicated``, a result for an id never sent in ``unexpected``. Events are kept,
    with their arrival time, in ``events``.
    """

    def __init__(self, url: str, tag: str, name: str | None = None) -> None:
        self.url = url if name is None else f"{url}&name={name}"
        self.tag = tag
        self.ws: Any = None
        self.welcome: dict[str, Any] = {}
        self.pending: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        self.answered: set[str] = set()
        self.duplicated = 0
        self.unexpected = 0
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.closed: str | None = None  # why the connection closed under us, if it did
        self._seq = 0
        self._reader: asyncio.Task[None] | None = None
        self._event_arrived = asyncio.Event()

    async def open(self) -> CheckedConn:
        from websockets.asyncio.client import connect

        # No client keepalive pings: a loaded daemon answering a pong late must not fail the load generator.
        self.ws = await connect(
            self.url, max_size=None, max_queue=None, open_timeout=CONNECT_TIMEOUT_S, ping_interval=None
        )
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), CONNECT_TIMEOUT_S))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome message, got {welcome}")
        self.welcome = welcome["data"]
        self._reader = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        clock = time.perf_counter
        try:
            async for raw in self.ws:
                now = clock()
                message = json.loads(raw)
                if message.get("type") == "event":
                    self.events.append((now, message))
                    self._event_arrived.set()
                    continue
                rid = message.get("id")
                future = self.pending.pop(rid, None) if isinstance(rid, str) else None
                if future is None:
                    if rid in self.answered:
                        self.duplicated += 1
                    else:
                        self.unexpected += 1
                    continue
                self.answered.add(rid)
                if not future.done():
                    future.set_result((now, message))
        except ConnectionClosed as exc:
            self.closed = f"{type(exc).__name__}: {exc}"
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(self.closed or "connection closed"))
            self._event_arrived.set()

    async def send(
        self, command: str, params: dict[str, Any] | None = None
    ) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        """Send one execute_command; the future resolves to (arrival time, the command_result)."""
        self._seq += 1
        rid = f"{self.tag}-{self._seq}"
        future: asyncio.Future[tuple[float, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        envelope = {
            "type": "execute_command",
            "id": rid,
            "data": {"command": command, "params": params or {}},
        }
        await self.ws.send(json.dumps(envelope, separators=(",", ":")))
        return future

    async def call(self, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        future = await self.send(command, params)
        _, message = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        if not message.get("ok"):
            raise RuntimeError(f"{command} failed on {self.tag}: {message.get('error')}")
        return message["result"]

    async def flush(self) -> None:
        """One more round trip: a duplicate of anything answered before it has arrived by now."""
        await self.call("ping", {"echo": "flush"})

    def room_events(self, event: str, room: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.events if m.get("event") == event and m["data"].get("room") == room]

    async def wait_room_events(self, event: str, room: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.room_events(event, room)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._reader is None or self._reader.done():
                return
            self._event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_arrived.wait(), remaining)


def _load_request(
    tag: str, i: int, room: str
) -> tuple[str, dict[str, Any], Callable[[dict[str, Any], dict[str, Any]], bool]]:
    """The i-th command of a load client and the check of its result (given the connection's welcome).

    Per ten: seven ``ping`` with a payload unique to this request, one ``session``, one ``rooms``, one
    ``chat_history``; each check ties the reply to this request on this connection.
    """
    slot = i % 10
    if slot == 3:
        return (
            "session",
            {},
            lambda r, w: r.get("session_id") == w["session_id"] and r.get("client_id") == w["client_id"],
        )
    if slot == 6:
        return "rooms", {}, lambda r, w: any(x["id"] == room and x["joined"] for x in r.get("rooms", []))
    if slot == 9:
        return (
            "chat_history",
            {"room": room, "limit": 5},
            lambda r, w: r.get("room") == room and [m["text"] for m in r["messages"]] == [LOAD_SEED],
        )
    echo = {"client": tag, "i": i, "nonce": os.urandom(6).hex()}
    return "ping", {"echo": echo}, lambda r, w: r == {"pong": True, "echo": echo}


@dataclass
class LoadClientStats:
    latencies: list[float]
    completed: int = 0
    lost: int = 0
    mismatched: int = 0
    errors: int = 0


async def _load_client(conn: CheckedConn, commands: int, depth: int, room: str) -> LoadClientStats:
    """``commands`` commands with at most ``depth`` in flight (1: sequential round trips)."""
    stats = LoadClientStats([])
    window = asyncio.Semaphore(depth)
    clock = time.perf_counter

    async def one(i: int) -> None:
        command, params, check = _load_request(conn.tag, i, room)
        async with window:
            t0 = clock()
            future = await conn.send(command, params)
            try:
                t1, message = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
            except (TimeoutError, ConnectionError):
                stats.lost += 1
                return
        stats.completed += 1
        stats.latencies.append(t1 - t0)
        if not message.get("ok"):
            stats.errors += 1
        elif not check(message["result"], conn.welcome):
            stats.mismatched += 1

    if depth == 1:
        for i in range(commands):
            await one(i)
    else:
        await asyncio.gather(*(one(i) for i in range(commands)))
    return stats


async def _open_all(url: str, tags: list[str]) -> tuple[list[CheckedConn], list[str]]:
    """Open every connection at once; returns the open ones and the errors of the others."""
    conns = [CheckedConn(url, tag, name=tag) for tag in tags]
    outcomes = await asyncio.gather(*(c.open() for c in conns), return_exceptions=True)
    opened = [c for c, o in zip(conns, outcomes, strict=True) if not isinstance(o, BaseException)]
    failed = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return opened, failed


async def _close_all(conns: list[CheckedConn]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def run_load(
    url: str,
    clients: int = 200,
    commands: int = 50,
    depth: int = 1,
    *,
    room: str = LOAD_ROOM,
    pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` connections at once, each running ``commands`` commands; every reply checked.

    lost: a request with no reply (within REPLY_TIMEOUT_S, or its connection closed); duplicated: a second
    reply to an id; mismatched: a reply whose content is not the answer to the request with that id (or a
    reply to an id never sent); errors: ok=false replies.
    """
    ctl = await CheckedConn(url, "ctl", name="load-ctl").open()
    try:
        await ctl.call("room_create", {"room": room})
        await ctl.call("chat", {"room": room, "text": LOAD_SEED})
        t_connect = time.perf_counter()
        conns, connect_errors = await _open_all(url, [f"L{i}" for i in range(clients)])
        connect_s = time.perf_counter() - t_connect
        try:
            await asyncio.gather(*(c.call("room_join", {"room": room}) for c in conns))
            fds = open_fds(pid) if pid is not None else None
            cpu0 = process_cpu_seconds(pid) if pid is not None else None
            t0 = time.perf_counter()
            per_client = await asyncio.gather(*(_load_client(c, commands, depth, room) for c in conns))
            elapsed = time.perf_counter() - t0
            cpu1 = process_cpu_seconds(pid) if pid is not None else None
            await asyncio.gather(*(c.flush() for c in conns), return_exceptions=True)
        finally:
            await _close_all(conns)
    finally:
        await ctl.close()
    completed = sum(s.completed for s in per_client)
    latencies = [x for s in per_client for x in s.latencies]
    server_cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / max(completed, 1) * 1e6
    return {
        "clients": clients,
        "connected": len(conns),
        "connect_failed": len(connect_errors),
        "connect_errors": connect_errors[:5],
        "commands_per_client": commands,
        "in_flight_per_client": depth,
        "requests": clients * commands,
        "completed": completed,
        # a client that could not connect lost all its commands
        "lost": sum(s.lost for s in per_client) + len(connect_errors) * commands,
        "duplicated": sum(c.duplicated for c in conns),
        "mismatched": sum(s.mismatched for s in per_client) + sum(c.unexpected for c in conns),
        "errors": sum(s.errors for s in per_client),
        "closed_early": sum(c.closed is not None for c in conns),
        **_latency_ms(latencies),
        "throughput": round(completed / elapsed, 1) if elapsed > 0 else None,
        "elapsed_s": round(elapsed, 3),
        "connect_s": round(connect_s, 3),
        "server_cpu_us_per_cmd": _round(server_cpu),
        "server_open_fds": fds,  # with every client connected and joined
        "events_received": sum(len(c.events) for c in conns),
    }


async def run_chat_fanout(url: str, members: int = 50, *, burst: bool = False, room: str = "fanout") -> dict:
    """``members`` connections in one room post ``members`` messages at once: each member one (or, with
    ``burst``, the first member all of them, pipelined on its one connection).

    Checks that every member got every message exactly once and in the order of the ids the server
    assigned, that ``chat_history`` holds each message once in that order, and that every member saw the
    same order as the history.
    """
    conns, connect_errors = await _open_all(url, [f"{room}-{i}" for i in range(members)])
    if connect_errors:
        await _close_all(conns)
        raise RuntimeError(f"{len(connect_errors)} of {members} connections failed: {connect_errors[:3]}")
    try:
        await conns[0].call("room_create", {"room": room})
        await asyncio.gather(*(c.call("room_join", {"room": room}) for c in conns[1:]))
        count = members
        texts = [f"{room}: message {k} of {count}" for k in range(count)]
        senders = [conns[0]] * count if burst else conns
        sent_at: dict[str, float] = {}

        async def post(conn: CheckedConn, text: str) -> tuple[str, dict[str, Any]]:
            sent_at[text] = time.perf_counter()
            future = await conn.send("chat", {"room": room, "text": text})
            try:
                _, message = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
            except (TimeoutError, ConnectionError) as exc:
                return text, {"ok": False, "error": {"code": "lost", "message": str(exc)}}
            return text, message

        t0 = time.perf_counter()
        replies = await asyncio.gather(*(post(c, t) for c, t in zip(senders, texts, strict=True)))
        await asyncio.gather(
            *(c.wait_room_events("chat_message", room, count, REPLY_TIMEOUT_S) for c in conns)
        )
        delivered_s = time.perf_counter() - t0
        await asyncio.gather(*(c.flush() for c in conns), return_exceptions=True)
        history = (await conns[0].call("chat_history", {"room": room, "limit": 500}))["messages"]
    finally:
        await _close_all(conns)

    # What the server assigned: id -> text, from the chat results.
    assigned: dict[int, str] = {}
    chat_errors = mismatched = short_delivery = 0
    for text, reply in replies:
        if not reply.get("ok"):
            chat_errors += 1
            continue
        message = reply["result"]["message"]
        if message["text"] != text or message["room"] != room:
            mismatched += 1
        assigned[message["id"]] = message["text"]
        if reply["result"]["delivered_sessions"] != members:
            short_delivery += 1
    server_order = sorted(assigned)
    send_order = [m for t in texts for m, x in assigned.items() if x == t]

    hist_ids = [m["id"] for m in history]
    hist_ts = [m["ts"] for m in history]
    lost = duplicated = order_mismatches = 0
    latencies: list[float] = []
    for conn in conns:
        events = conn.room_events("chat_message", room)
        ids = [m["data"]["id"] for _, m in events]
        lost += len(set(assigned) - set(ids))
        duplicated += len(ids) - len(set(ids))
        mismatched += sum(1 for _, m in events if assigned.get(m["data"]["id"]) != m["data"]["text"])
        order_mismatches += ids != hist_ids
        latencies += [t - sent_at[m["data"]["text"]] for t, m in events if m["data"]["text"] in sent_at]
    history_lost = len(set(assigned) - set(hist_ids))
    history_duplicated = len(hist_ids) - len(set(hist_ids))
    return {
        "members": members,
        "senders": 1 if burst else members,
        "messages": count,
        "chat_errors": chat_errors,
        "delivered_short": short_delivery,
        "events_expected": members * count,
        "events_received": sum(len(c.room_events("chat_message", room)) for c in conns),
        "lost": lost + chat_errors * members,
        "duplicated": duplicated,
        "mismatched": mismatched + sum(c.unexpected for c in conns),
        "order_mismatches": order_mismatches,
        "history_count": len(history),
        "history_lost": history_lost,
        "history_duplicated": history_duplicated,
        "history_in_id_order": hist_ids == server_order,
        "history_ts_nondecreasing": all(a <= b for a, b in itertools.pairwise(hist_ts)),
        "send_order_kept": send_order == server_order,  # informative: the protocol does not promise it
        "closed_early": sum(c.closed is not None for c in conns),
        "delivered_s": round(delivered_s, 3),
        **_latency_ms(latencies),
    }


def load_ok(load: dict[str, Any]) -> bool:
    keys = ("lost", "duplicated", "mismatched", "errors", "connect_failed", "closed_early")
    return all(load[k] == 0 for k in keys) and load["completed"] == load["requests"]


def fanout_ok(fanout: dict[str, Any]) -> bool:
    zero = ("chat_errors", "delivered_short", "lost", "duplicated", "mismatched", "order_mismatches")
    return (
        all(fanout[k] == 0 for k in zero)
        and fanout["history_lost"] == 0
        and fanout["history_duplicated"] == 0
        and fanout["history_count"] == fanout["messages"]
        and fanout["history_in_id_order"]
        and fanout["events_received"] == fanout["events_expected"]
    )


def _describe_load(name: str, r: dict[str, Any]) -> str:
    return (
        f"  [{name}] {r['clients']} clients x {r['commands_per_client']} commands "
        f"({r['in_flight_per_client']} in flight each): {r['completed']}/{r['requests']} answered, "
        f"lost {r['lost']}, duplicated {r['duplicated']}, mismatched {r['mismatched']}, "
        f"errors {r['errors']}; "
        f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms; {r['throughput']} commands/s "
        f"(server CPU {r['server_cpu_us_per_cmd']} us/command, {r['server_open_fds']} fds open)"
    )


def _describe_fanout(name: str, r: dict[str, Any]) -> str:
    return (
        f"  [{name}] {r['senders']} sender(s) -> {r['members']} members: "
        f"{r['events_received']}/{r['events_expected']} chat_message events, lost {r['lost']}, "
        f"duplicated {r['duplicated']}, mismatched {r['mismatched']}, "
        f"order mismatches {r['order_mismatches']}; "
        f"history {r['history_count']} (in id order: {r['history_in_id_order']}); "
        f"delivery p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms; all delivered in {r['delivered_s']} s"
    )


async def run_load_phases(
    url: str, args: argparse.Namespace, pid: int | None, log: Callable[[str], None]
) -> dict[str, Any]:
    """The load phases: sequential and pipelined command load, then chat fan-out (concurrent and burst)."""
    clients, commands, members = args.load_clients, args.load_commands, args.chat_members
    sequential = await run_load(url, clients, commands, 1, room="load-sequential", pid=pid)
    log(_describe_load("load, sequential", sequential))
    pipelined = await run_load(url, clients, commands, commands, room="load-pipelined", pid=pid)
    log(_describe_load("load, pipelined", pipelined))
    concurrent = await run_chat_fanout(url, members, room="fanout-concurrent")
    log(_describe_fanout("chat fan-out, concurrent", concurrent))
    burst = await run_chat_fanout(url, members, burst=True, room="fanout-burst")
    log(_describe_fanout("chat fan-out, burst", burst))
    return {
        "load": sequential,
        "load_pipelined": pipelined,
        "load_ok": load_ok(sequential) and load_ok(pipelined),
        "chat_fanout": {"concurrent": concurrent, "burst": burst},
        "chat_fanout_ok": fanout_ok(concurrent) and fanout_ok(burst),
    }


# --------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter runs (smoke test)")
    parser.add_argument("--samples", type=int, default=None, help="latency samples (default 2000; quick 300)")
    parser.add_argument("--warmup", type=int, default=None, help="latency warm-up round trips (default 200)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per throughput run (default 3; quick 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternate the two servers this many times per measurement (default 6; quick 2)",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for the throughput run")
    parser.add_argument(
        "--load-clients", type=int, default=200, help="concurrent connections in the load phase (0: skip it)"
    )
    parser.add_argument("--load-commands", type=int, default=50, help="commands per load connection")
    parser.add_argument(
        "--chat-members", type=int, default=50, help="room members (and messages) in the chat fan-out phase"
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop for the echo server and the load generator (the daemon: uvicorn's)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PATH",
        help="run the daemon under cProfile and write its stats to PATH (slows it down)",
    )
    parser.add_argument("--echo-server", type=int, default=None, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--echo-compression", choices=("deflate", "none"), default="deflate", help=argparse.SUPPRESS
    )
    parser.add_argument("--profiled-daemon", default=None, metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("serve_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.samples is None:
        args.samples = 300 if args.quick else 2000
    if args.warmup is None:
        args.warmup = 50 if args.quick else 200
    if args.rounds is None:
        args.rounds = 2 if args.quick else 6
    if args.duration is None:
        args.duration = 1.0 if args.quick else 3.0
    if args.serve_args and args.profiled_daemon is None:
        parser.error(f"unexpected arguments: {' '.join(args.serve_args)}")
    if args.samples < 1 or args.warmup < 0 or args.rounds < 1 or args.clients < 1 or args.duration <= 0:
        parser.error("--samples, --rounds and --clients must be >= 1, --warmup >= 0, --duration > 0")
    if args.load_clients < 0 or args.load_commands < 1 or args.chat_members < 1:
        parser.error("--load-clients must be >= 0, --load-commands and --chat-members >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo_server is not None:
        _event_loop_policy(args.loop)
        asyncio.run(_run_echo_server(args.echo_server, args.echo_compression))
        return 0
    if args.profiled_daemon is not None:
        _run_profiled_daemon(args.profiled_daemon, args.serve_args)
        return 0

    def log(line: str) -> None:
        print(line, flush=True)

    loop = _loop_name(args.loop)
    log(
        f"bus benchmark: {args.samples} latency samples, {args.duration:g}s throughput runs, "
        f"1 and {args.clients} clients, {os.cpu_count()} cores (servers and load generator share them), "
        f"client/echo loop {loop}"
    )
    profile = args.profile.resolve() if args.profile is not None else None
    if profile is not None:
        log(f"profiling the daemon with cProfile into {profile}: its numbers are slowed down")
    workdir = Path(tempfile.mkdtemp(prefix="personad-bench-bus-"))
    try:
        with daemon_process(workdir, profile=profile) as daemon:
            log(f"personad daemon (ping through the command processor): pid {daemon.proc.pid}")
            _event_loop_policy(loop)
            # The client offers permessage-deflate like browsers; the baseline matches what the daemon chose.
            compression = asyncio.run(negotiated_compression(daemon.url))
            with echo_process(workdir, loop, compression) as echo:
                log(f"raw echo baseline ({BASELINE}): {echo.url}")
                log(f"permessage-deflate: {compression}; both measured in {args.rounds} alternating rounds")
                results = asyncio.run(run_suite([echo, daemon], args, log))
            load: dict[str, Any] = {}
            if args.load_clients:
                log(
                    f"load: {args.load_clients} connections x {args.load_commands} commands, "
                    f"then chat fan-out to {args.chat_members} members (personad only, every reply checked)"
                )
                load = asyncio.run(run_load_phases(daemon.url, args, daemon.proc.pid, log))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base, ours = results[echo.name], results[daemon.name]
    if profile is not None:
        found = "written" if profile.exists() else "MISSING (the daemon did not exit cleanly)"
        log(f"daemon profile {profile}: {found}")

    ratio_1 = paired_ratio(ours.throughput_1, base.throughput_1)
    ratio_n = paired_ratio(ours.throughput_32, base.throughput_32)
    cpu_ratio_n = (
        base.throughput_32.server_cpu_us / ours.throughput_32.server_cpu_us
        if base.throughput_32.server_cpu_us and ours.throughput_32.server_cpu_us
        else None
    )
    p99_ok = ours.p99_ms <= P99_TARGET_MS
    throughput_ok = min(ratio_1, ratio_n) >= THROUGHPUT_RATIO_TARGET
    log(
        f"throughput ratio personad / raw echo (median of back-to-back rounds): 1 client {ratio_1:.2f}, "
        f"{args.clients} clients {ratio_n:.2f} (target >= {THROUGHPUT_RATIO_TARGET}) -> "
        f"{'ok' if throughput_ok else 'MISSED'}"
    )
    if cpu_ratio_n is not None:
        ours_cpu, base_cpu = ours.throughput_32.server_cpu_us, base.throughput_32.server_cpu_us
        log(
            f"server CPU per command at {args.clients} clients: personad {ours_cpu:.0f} us, "
            f"raw echo {base_cpu:.0f} us (echo/personad {cpu_ratio_n:.2f})"
        )
    verdict = "ok" if p99_ok else "MISSED"
    log(f"personad p99 {ours.p99_ms:.3f} ms (target <= {P99_TARGET_MS:g} ms) -> {verdict}")
    if load:
        log(
            f"load: lost/duplicated/mismatched all 0 -> {'ok' if load['load_ok'] else 'FAILED'}; "
            f"chat fan-out: every member got every message once, in history order -> "
            f"{'ok' if load['chat_fanout_ok'] else 'FAILED'}"
        )
    r3 = 3
    summary = {
        "benchmark": "bus",
        "baseline": f"raw echo: {BASELINE}",
        "p50_ms": round(ours.p50_ms, r3),
        "p99_ms": round(ours.p99_ms, r3),
        "mean_ms": round(ours.mean_ms, r3),
        "echo_p50_ms": round(base.p50_ms, r3),
        "echo_p99_ms": round(base.p99_ms, r3),
        "echo_mean_ms": round(base.mean_ms, r3),
        "throughput_1": round(ours.throughput_1.rate, 1),
        "throughput_32": round(ours.throughput_32.rate, 1),
        "echo_throughput_1": round(base.throughput_1.rate, 1),
        "echo_throughput_32": round(base.throughput_32.rate, 1),
        "throughput_ratio_1": round(ratio_1, r3),
        "throughput_ratio_32": round(ratio_n, r3),
        "server_cpu_us_per_cmd_1": _round(ours.throughput_1.server_cpu_us),
        "echo_server_cpu_us_per_cmd_1": _round(base.throughput_1.server_cpu_us),
        "server_cpu_us_per_cmd_32": _round(ours.throughput_32.server_cpu_us),
        "echo_server_cpu_us_per_cmd_32": _round(base.throughput_32.server_cpu_us),
        "server_cpu_ratio_32": _round(cpu_ratio_n, 3),
        "p99_target_ms": P99_TARGET_MS,
        "p99_ok": p99_ok,
        "throughput_ratio_target": THROUGHPUT_RATIO_TARGET,
        "throughput_ok": throughput_ok,
        "samples": args.samples,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "clients": args.clients,
        "loop": loop,
        "compression": compression,
        "cores": os.cpu_count(),
        **load,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
