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

The last line of stdout is one JSON object with the numbers. Run::

    .venv/bin/python benchmarks/bus.py            # full run (well under 2 minutes)
    .venv/bin/python benchmarks/bus.py --quick    # a few seconds
    .venv/bin/python benchmarks/bus.py --profile /tmp/daemon.prof   # + cProfile of the daemon
    .venv/bin/python -m pstats /tmp/daemon.prof   # then: sort tottime / stats 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
def daemon_process(workdir: Path, *, profile: Path | None = None) -> Iterator[Target]:
    """``personad serve --port 0`` in a fresh home; yields once ``daemon.json`` exists and /healthz is 200.

    With ``profile`` the daemon runs under cProfile (through this script) and dumps its stats there on exit.
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
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
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
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
