"""Local model through the bus vs calling ``generate`` directly on the same model, in one run.

Through the bus: a WebSocket client posts in a room; the daemon pushes the event to a persona process,
which asks the shared inference worker over its Unix socket and streams ``chat_delta`` events back through
the daemon. Time to first token is measured at the client from sending ``chat`` to the first delta; tokens/s
from sending to the final message. Direct: ``LocalEngine.generate`` in this process on the same prompt
(greedy, so both produce the same tokens). Both run alternately on the same machine.

Prints one JSON object as its last line; the target is through-bus ÷ direct ≥ 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from personad.models.base import ChatMessage
from personad.models.local.engine import LocalEngine
from personad.personas.config import PersonaConfig
from personad.personas.conversation import build_request, tools_from_commands

QUESTION = "Write a short story about a dragon who learns to fly."
TARGET = 0.9


def log(line: str) -> None:
    print(line, flush=True)


def start_daemon(
    home: Path, *, default_persona: bool = False
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    env = {**os.environ} if default_persona else {**os.environ, "PERSONAD_DEFAULT_PERSONA": ""}
    cmd = [
        sys.executable,
        "-m",
        "personad.cli",
        "serve",
        "--home",
        str(home),
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the daemon exited during start")
        state_file = home / "daemon.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            try:
                if httpx.get(state["url"] + "/healthz", timeout=1).status_code == 200:
                    return proc, state
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not start")
        time.sleep(0.1)


async def bus_trial(ws: Any, room: str, text: str, ids: list[int]) -> dict[str, Any]:
    """Post ``text`` and time the persona's streamed answer at the client."""
    ids[0] += 1
    request_id = f"b{ids[0]}"
    started = time.perf_counter()
    await ws.send(
        json.dumps(
            {
                "type": "execute_command",
                "id": request_id,
                "data": {"command": "chat", "params": {"room": room, "text": text}},
            }
        )
    )
    my_message: int | None = None
    first: float | None = None
    deltas: list[str] = []
    pending: list[dict[str, Any]] = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 300))
        now = time.perf_counter()
        if message.get("id") == request_id:
            if not message.get("ok"):
                raise RuntimeError(f"chat failed: {message}")
            my_message = message["result"]["message"]["id"]
        elif message.get("event") == "chat_delta":
            first = first or now
            deltas.append(message["data"]["delta"])
        elif message.get("event") == "chat_message":
            pending.append({**message["data"], "_at": now})
        for item in pending:
            if my_message is not None and (item.get("meta") or {}).get("in_reply_to") == my_message:
                meta = item["meta"]
                if "error" in meta:
                    raise RuntimeError(f"the persona failed: {meta['error']}")
                end = item["_at"]
                tokens = meta["usage"]["completion_tokens"]
                return {
                    "ttft": (first or end) - started,
                    "total": end - started,
                    "tokens": tokens,
                    "text": item["text"],
                }


def direct_trial(engine: LocalEngine, request: Any) -> dict[str, Any]:
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    tokens = 0
    for event in engine.generate(request):
        if event.text:
            first = first or time.perf_counter()
            parts.append(event.text)
        if event.usage is not None:
            tokens = event.usage.completion_tokens
    end = time.perf_counter()
    return {
        "ttft": (first or end) - started,
        "total": end - started,
        "tokens": tokens,
        "text": "".join(parts).strip(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="personad-chatbench-") as tmp:
        home = Path(tmp)
        proc, state = start_daemon(home)
        try:
            headers = {"Authorization": f"Bearer {state['token']}"}
            persona = {
                "id": "bench",
                "name": "Bench",
                "capabilities": ["chat"],
                "rooms": ["bench"],
                "respond_in": ["bench"],
                "history_messages": 0,
                "temperature": 0.0,
                "max_tokens": args.max_tokens,
                "system_prompt": "You are a helpful assistant.",
            }
            async with httpx.AsyncClient(base_url=state["url"], headers=headers, timeout=300) as http:
                (await http.post("/api/commands/room_create", json={"room": "bench"})).raise_for_status()
                started = time.perf_counter()
                created = (
                    await http.post("/api/commands/persona_create", json={**persona, "start": True})
                ).json()
                if not created.get("ok"):
                    raise RuntimeError(f"persona_create failed: {created}")
                log(f"persona process and inference worker up in {time.perf_counter() - started:.1f}s")
                listing = (
                    await http.post(
                        "/api/commands/commands",
                        headers={"X-Personad-Session": "caps", "X-Personad-Capabilities": "chat"},
                    )
                ).json()
            config = PersonaConfig.model_validate({k: v for k, v in persona.items()})
            tools = tools_from_commands(listing["result"]["commands"])
            request = build_request(config, [ChatMessage("user", f"bench: {QUESTION}")], tools=tools)
            engine = LocalEngine.load()
            log(f"direct engine loaded in {engine.load_seconds:.2f}s ({engine.threads} threads)")
            url = state["url"].replace("http://", "ws://") + f"/ws?token={state['token']}&name=bench"
            async with connect(url, max_size=None) as ws:
                await ws.recv()  # welcome
                await ws.send(
                    json.dumps(
                        {
                            "type": "execute_command",
                            "id": "j",
                            "data": {"command": "room_join", "params": {"room": "bench"}},
                        }
                    )
                )
                await ws.recv()
                ids = [0]
                await bus_trial(ws, "bench", QUESTION, ids)  # warm-up both paths
                direct_trial(engine, request)
                bus_runs, direct_runs = [], []
                for i in range(args.trials):
                    bus_runs.append(await bus_trial(ws, "bench", QUESTION, ids))
                    direct_runs.append(direct_trial(engine, request))
                    b, d = bus_runs[-1], direct_runs[-1]
                    log(
                        f"  trial {i + 1}: bus ttft {b['ttft'] * 1000:.0f} ms,"
                        f" {b['tokens'] / b['total']:.1f} tok/s"
                        f" | direct ttft {d['ttft'] * 1000:.0f} ms, {d['tokens'] / d['total']:.1f} tok/s"
                        f" ({b['tokens']} / {d['tokens']} tokens)"
                    )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def tps(runs: list[dict[str, Any]]) -> float:
        return statistics.median(r["tokens"] / r["total"] for r in runs)

    bus_ttft, direct_ttft = median(bus_runs, "ttft"), median(direct_runs, "ttft")
    bus_tps, direct_tps = tps(bus_runs), tps(direct_runs)
    ttft_ratio = direct_ttft / bus_ttft
    tps_ratio = bus_tps / direct_tps
    return {
        "benchmark": "chat",
        "model": engine.model_id,
        "max_tokens": args.max_tokens,
        "trials": args.trials,
        "bus_ttft_ms": round(bus_ttft * 1000, 1),
        "direct_ttft_ms": round(direct_ttft * 1000, 1),
        "bus_tokens_per_s": round(bus_tps, 2),
        "direct_tokens_per_s": round(direct_tps, 2),
        "ttft_ratio_direct_over_bus": round(ttft_ratio, 3),
        "tokens_per_s_ratio_bus_over_direct": round(tps_ratio, 3),
        "target": TARGET,
        "ttft_ok": ttft_ratio >= TARGET,
        "tokens_per_s_ok": tps_ratio >= TARGET,
        "same_text": all(b["text"] == d["text"] for b, d in zip(bus_runs, direct_runs, strict=True)),
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="2 trials of 24 tokens")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.max_tokens = 2, 24
    result = asyncio.run(run(args))
    log(
        f"through the bus / direct: time to first token {result['ttft_ratio_direct_over_bus']:.2f},"
        f" tokens/s {result['tokens_per_s_ratio_bus_over_direct']:.2f} (target >= {TARGET})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
