"""The mesh across hosts: two nodes in separate Linux network namespaces (own network stacks, joined by a
veth pair, 10.77.0.1 and 10.77.0.2), so nothing goes over loopback.

Node A registers a random adapter (~2 MB, for a tiny random Llama), announces it and prints an invite code;
node B joins with the code over 10.77.0.0/24, waits for the announcement through the DHT (BEP 44 items on
A's and B's libtorrent DHT nodes), acquires the adapter (BitTorrent, BEP 52) and verifies it. Measured: time
from join to the announcement listed on B, time to acquire, and whether B's copy has A's ``lora_hash``.

Needs root (``ip netns``); prints ``{"skipped": ...}`` as its last line otherwise. Run::

    sudo .venv/bin/python benchmarks/mesh_hosts.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NS = ("pdmesh-a", "pdmesh-b")
ADDR = ("10.77.0.1", "10.77.0.2")
BASE = "cfe6ac4595d3126f7a2fcd9a025e453c588bfe5ab4d1f9bd29b1bb04b0d5e0a2"  # any 64 hex: both sides agree

NODE_A = r"""
import asyncio, json, sys
from pathlib import Path
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from personad.lora.registry import AdapterRegistry
from personad.mesh.node import MeshConfig, MeshNode

async def main(home, addr, base):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    targets = ["q_proj", "v_proj", "o_proj"]
    peft = get_peft_model(model, LoraConfig(r=128, lora_alpha=16, target_modules=targets,
        init_lora_weights=False))
    peft.save_pretrained(str(Path(home) / "src"))
    AdapterRegistry.for_home(Path(home)).register("legal", Path(home) / "src", base_model="tiny",
        base_model_sha256=base)
    node = MeshNode(MeshConfig(home=Path(home), listen=f"{addr}:6881", name="a", base_model_sha256=base,
        poll_s=0.2))
    await node.start()
    ann = await node.broadcast_capability("legal")
    print(json.dumps({"code": node.invite(), "lora_hash": ann.lora_hash, "size": ann.size}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await node.close()

asyncio.run(main(*sys.argv[1:4]))
"""

NODE_B = r"""
import asyncio, json, sys, time
from pathlib import Path
from personad.mesh.node import MeshConfig, MeshNode

async def main(home, addr, base, code):
    node = MeshNode(MeshConfig(home=Path(home), listen=f"{addr}:6881", name="b", base_model_sha256=base,
        poll_s=0.2))
    await node.start()
    started = time.perf_counter()
    await node.join(code)
    while not node.skills():
        await asyncio.sleep(0.02)
    listed = time.perf_counter() - started
    result = await node.acquire_skill("legal")
    transfer = result["transfers"][0]
    print(json.dumps({"listed_s": round(listed, 3), "acquire_s": transfer["seconds"],
        "bytes": transfer["bytes"], "lora_hash": result["lora_hash"], "peer": node.trust.peers()[0].addr}),
        flush=True)
    await node.close()

asyncio.run(main(*sys.argv[1:5]))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def setup() -> None:
    teardown()
    for ns in NS:
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "pdm-a", "type", "veth", "peer", "name", "pdm-b")
    for ns, dev, addr in zip(NS, ("pdm-a", "pdm-b"), ADDR, strict=True):
        sh("ip", "link", "set", dev, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown() -> None:
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print(json.dumps({"skipped": "needs root and iproute2 (ip netns)"}))
        return
    setup()
    work = Path(tempfile.mkdtemp(prefix="mesh-hosts-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    a = subprocess.Popen(
        ["ip", "netns", "exec", NS[0], sys.executable, "-c", NODE_A, str(work / "a"), ADDR[0], BASE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert a.stdout is not None and a.stdin is not None
        first = json.loads(a.stdout.readline())
        print(f"A on {ADDR[0]}: announced {first['size']:,} bytes; invite {first['code'][:24]}…", flush=True)
        started = time.perf_counter()
        node_b_args = [str(work / "b"), ADDR[1], BASE, first["code"]]
        b = subprocess.run(
            ["ip", "netns", "exec", NS[1], sys.executable, "-c", NODE_B, *node_b_args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        wall = time.perf_counter() - started
        if b.returncode != 0:
            raise SystemExit(f"node B failed:\n{b.stderr[-3000:]}")
        second = json.loads(b.stdout.strip().splitlines()[-1])
        a.stdin.write("quit\n")
        a.stdin.flush()
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            a.kill()
        teardown()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "hosts": list(ADDR),
        "announcement_listed_s": second["listed_s"],
        "acquire_s": second["acquire_s"],
        "bytes": second["bytes"],
        "same_lora_hash": second["lora_hash"] == first["lora_hash"],
        "b_reached_a_at": second["peer"],
        "node_b_wall_s": round(wall, 2),
    }
    listed, took = result["announcement_listed_s"], result["acquire_s"]
    print(f"B on {ADDR[1]}: listed after {listed} s, acquired in {took} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
