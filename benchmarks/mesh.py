"""Benchmark the mesh on loopback against raw libtorrent, in one run.

* acquire: node C acquires a ~2 MB and a ~20 MB adapter (random LoRA factors for a tiny random Llama) from
  1 seeder (A) and from 2 seeders (A and B), through the whole ``MeshNode.acquire_skill`` path: metadata
  from the seeders (``ut_metadata``), the swarm download, verification (file list, sha256 against the signed
  ``lora_hash``, manifest, weights parsed), registration, seeding. A fresh C (new home) each time; the
  median of ``--repeats``.
* raw: the same torrent bytes between bare libtorrent sessions with the same settings, added by the same
  v2 info-hash with the seeders as its peers (metadata from the seeders too), timed until libtorrent says
  finished. Nothing verified beyond libtorrent's own piece hashes, nothing registered.
* ratio: raw seconds / our transfer's seconds (= our throughput / raw throughput; the goal is ≥ 0.8);
  ratio_acquire: raw seconds / the whole acquisition's (flush, .torrent, verification, registration).
* propagation: one node announces, three others (joined by invite) list it: seconds until each has it,
  at ``poll_s`` 0.2 and at the default 1.0 (the directory is read once per poll).
* verify: the verification step alone on a downloaded folder, in ms per MB.

Run::

    .venv/bin/python benchmarks/mesh.py            # full run (a few minutes)
    .venv/bin/python benchmarks/mesh.py --quick    # 2 MB only, one repeat

The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import libtorrent as lt

from personad.lora.registry import AdapterRegistry
from personad.mesh.engine import session_settings
from personad.mesh.node import MeshConfig, MeshNode
from personad.mesh.store import MeshStore
from personad.mesh.transfer import file_names

BASE = hashlib.sha256(b"benchmark tiny llama").hexdigest()
SIZES = {
    "2mb": (192, ("q_proj", "v_proj", "o_proj")),  # 2.16 MB of fp32 factors
    "20mb": (608, ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj")),  # 19.9 MB
}


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def make_adapter(out: Path, rank: int, targets: tuple[str, ...], seed: int) -> Path:
    """A PEFT LoRA with random factors for a random 2-layer Llama (hidden 256)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = get_peft_model(
        LlamaForCausalLM(config).eval(),
        LoraConfig(r=rank, lora_alpha=16, target_modules=list(targets), init_lora_weights=False),
    )
    model.save_pretrained(str(out))
    return out


async def node(home: Path, name: str, poll_s: float = 0.2) -> MeshNode:
    mesh = MeshNode(MeshConfig(home=home, name=name, base_model_sha256=BASE, poll_s=poll_s, replicate=False))
    await mesh.start()
    return mesh


async def listed(mesh: MeshNode, adapter: str, timeout: float = 30) -> float:
    started = time.perf_counter()
    while adapter not in {s["adapter"] for s in mesh.skills()}:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{adapter} not listed on {mesh.config.name}")
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


async def acquire_fresh(
    work: Path, seed_node: MeshNode, adapter: str, seeders: int, tag: str
) -> dict[str, Any]:
    home = work / f"c-{tag}"
    c = await node(home, "c")
    try:
        await c.join(seed_node.invite())
        started = time.perf_counter()
        while True:
            rows = [s for s in c.skills() if s["adapter"] == adapter]
            if rows and len(rows[0]["seeders"]) >= seeders:
                break
            if time.perf_counter() - started > 30:
                raise TimeoutError("seeders not listed")
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        result = await c.acquire_skill(adapter)
        seconds = time.perf_counter() - t0
        transfer = result["transfers"][0]
        return {
            "seconds": seconds,
            "transfer_s": transfer["seconds"],
            "bytes": transfer["bytes"],
            "from_peers": len(transfer["from_peers"]),
        }
    finally:
        await c.close()
        shutil.rmtree(home, ignore_errors=True)


def raw_transfer(store: MeshStore, info_hash: str, seeders: int) -> float:
    """The same torrent between bare sessions: seeders from the store's files, a leecher by info-hash."""
    queued = lt.torrent_flags.auto_managed | lt.torrent_flags.paused
    sessions = []
    ports = []
    for _ in range(seeders):
        ses = lt.session(session_settings("127.0.0.1:0") | {"enable_dht": False})  # type: ignore[call-overload]
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(store.torrent_path(info_hash).read_bytes())
        params.save_path = str(store.folder(info_hash))
        params.flags = (params.flags | lt.torrent_flags.seed_mode) & ~queued
        ses.add_torrent(params)
        sessions.append(ses)
        ports.append(ses.listen_port())
    leech_dir = Path(tempfile.mkdtemp(prefix="raw-leech-"))
    leecher = lt.session(session_settings("127.0.0.1:0") | {"enable_dht": False})  # type: ignore[call-overload]
    params = lt.add_torrent_params()
    params.info_hashes = lt.info_hash_t(lt.sha256_hash(bytes.fromhex(info_hash)))
    params.save_path = str(leech_dir)
    params.flags &= ~queued
    # Peers given at add time are connected at once; connect_peer afterwards waits for a session tick.
    params.peers = [("127.0.0.1", port) for port in ports]
    time.sleep(0.5)  # fresh sessions settle (listen sockets, seed-mode torrents), as the nodes' have
    started = time.perf_counter()
    handle = leecher.add_torrent(params)
    while True:
        status = handle.status()
        if status.has_metadata and status.is_finished:
            break
        if time.perf_counter() - started > 120:
            raise TimeoutError("raw transfer did not finish")
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    for ses in (*sessions, leecher):
        ses.pause()
    shutil.rmtree(leech_dir, ignore_errors=True)
    return seconds


async def propagation(work: Path, poll_s: float, rounds: int) -> list[float]:
    nodes = [await node(work / f"p{poll_s}-{i}", f"p{i}", poll_s) for i in range(4)]
    try:
        for other in nodes[1:]:
            await other.join(nodes[0].invite())
        for other in nodes[1:]:
            while len(other.trust.trusted()) < 3:
                await asyncio.sleep(0.05)
        times: list[float] = []
        for r in range(rounds):
            name = f"prop{r}"
            folder = make_adapter(work / f"prop-src-{poll_s}-{r}", 4, ("q_proj",), seed=100 + r)
            AdapterRegistry.for_home(nodes[0].home).register(
                name, folder, base_model="tiny", base_model_sha256=BASE
            )
            t0 = time.perf_counter()
            await nodes[0].broadcast_capability(name)
            done = await asyncio.gather(*(listed(n, name) for n in nodes[1:]))
            times += [time.perf_counter() - t0 - (max(done) - d) for d in done]
        return times
    finally:
        for n in nodes:
            await n.close()


async def verify_cost(mesh: MeshNode, adapter: str, repeats: int) -> float:
    ann = next(a for a in mesh.own.values() if a.adapter == adapter)
    folder = mesh.store.folder(ann.info_hash) / adapter
    handle = mesh.engine.find(ann.info_hash) if mesh.engine else None
    names = file_names(handle) if handle is not None else []
    costs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await mesh.verifier.after_download(ann, folder, names)
        costs.append(time.perf_counter() - t0)
    return statistics.median(costs) * 1000 / (ann.size / 1e6)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
    result: dict[str, Any] = {"repeats": args.repeats}
    try:
        a = await node(work / "a", "a")
        b = await node(work / "b", "b")
        await b.join(a.invite())
        for size in args.sizes:
            rank, targets = SIZES[size]
            folder = make_adapter(work / f"src-{size}", rank, targets, seed=1)
            name = f"adapter-{size}"
            manifest = AdapterRegistry.for_home(a.home).register(
                name, folder, base_model="tiny", base_model_sha256=BASE
            )
            ann = await a.broadcast_capability(name)
            result[f"bytes_{size}"] = ann.size
            log(f"{size}: {ann.size:,} bytes ({manifest.size_bytes:,} of weights)")
            for seeders in (1, 2):
                if seeders == 2:
                    await listed(b, name)
                    await b.acquire_skill(name)
                ours = [
                    await acquire_fresh(work, a, name, seeders, f"{size}-{seeders}-{r}")
                    for r in range(args.repeats)
                ]
                raw = [raw_transfer(a.store, ann.info_hash, seeders) for _ in range(args.repeats)]
                ours_s = statistics.median(o["seconds"] for o in ours)
                transfer_s = statistics.median(o["transfer_s"] for o in ours)
                raw_s = statistics.median(raw)
                key = f"{size}_{seeders}seeder{'s' if seeders > 1 else ''}"
                result[f"acquire_{key}_s"] = round(ours_s, 4)
                result[f"transfer_{key}_s"] = round(transfer_s, 4)
                result[f"raw_{key}_s"] = round(raw_s, 4)
                result[f"ratio_{key}"] = round(raw_s / transfer_s, 3)
                result[f"ratio_acquire_{key}"] = round(raw_s / ours_s, 3)
                result[f"peers_sending_{key}"] = max(o["from_peers"] for o in ours)
                log(
                    f"  {seeders} seeder(s): transfer {transfer_s:.3f} s"
                    f" ({ann.size / transfer_s / 1e6:.1f} MB/s),"
                    f" raw {raw_s:.3f} s ({ann.size / raw_s / 1e6:.1f} MB/s), ratio {raw_s / transfer_s:.2f};"
                    f" whole acquisition {ours_s:.3f} s (ratio {raw_s / ours_s:.2f})"
                )
            result[f"verify_ms_per_mb_{size}"] = round(await verify_cost(b, name, args.repeats), 2)
            log(f"  verification: {result[f'verify_ms_per_mb_{size}']} ms/MB")
        await a.close()
        await b.close()
        for poll_s in args.polls:
            times = await propagation(work, poll_s, args.rounds)
            result[f"propagation_p{poll_s}_median_s"] = round(statistics.median(times), 3)
            result[f"propagation_p{poll_s}_max_s"] = round(max(times), 3)
            log(
                f"propagation to 3 peers at poll {poll_s} s:"
                f" median {statistics.median(times):.3f} s, max {max(times):.3f} s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="propagation rounds per poll period")
    parser.add_argument("--quick", action="store_true", help="2 MB only, one repeat, one round, poll 0.2 s")
    args = parser.parse_args()
    args.sizes = ["2mb", "20mb"]
    args.polls = [0.2, 1.0]
    if args.quick:
        args.sizes, args.repeats, args.rounds, args.polls = ["2mb"], 1, 1, [0.2]
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
