"""Three nodes on loopback: join by invite, announce a chain, acquire it from a swarm, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from personad.lora.registry import AdapterRegistry
from personad.lora.runtime import LoraRuntime
from personad.models.base import AdapterRef

from .helpers import mesh_of, register_chain, wait_for

CHAIN = ["continuum.legal", "continuum.legal.patent"]


def logits(model: Any, home: Path, adapter: str) -> torch.Tensor:
    runtime = LoraRuntime(model, AdapterRegistry.for_home(home))
    ids = torch.arange(12).reshape(1, 12)
    try:
        with torch.inference_mode(), runtime.apply([[AdapterRef(adapter, 1.0)]]):
            return model(ids).logits.clone()
    finally:
        runtime.remove_hooks()


async def test_three_nodes_share_a_chain(tmp_path: Path) -> None:
    nodes = await mesh_of(tmp_path, ["a", "b", "c"])
    (a, _), (b, _), (c, c_events) = nodes
    try:
        model = register_chain(a.home, tmp_path, CHAIN)
        for name in CHAIN:
            await a.broadcast_capability(name, persona="scholar")
        for node in (b, c):
            await wait_for(lambda node=node: len(node.skills()) == 2, 10, "announcements")
        await b.acquire_skill("continuum.legal.patent")
        await wait_for(lambda: all(len(s["seeders"]) == 2 for s in c.skills()), 10, "b seeding")
        result = await c.acquire_skill("continuum.legal.patent")
        assert result["chain"] == CHAIN
        assert sorted(result["acquired"]) == sorted(CHAIN)
        expected = logits(model, a.home, "continuum.legal.patent")
        got = logits(model, c.home, "continuum.legal.patent")
        assert torch.max(torch.abs(expected - got)).item() <= 1e-4
        assert c_events.of("mesh_skill_acquired")
        print(result)
    finally:
        for node, _ in nodes:
            await node.close()


async def test_mdns_finds_peers_without_an_invite(tmp_path: Path) -> None:
    from .helpers import start_node

    one, events = await start_node(tmp_path / "one", "one", mdns=True)
    two, _ = await start_node(tmp_path / "two", "two", mdns=True)
    try:
        found = await wait_for(lambda: events.of("mesh_peer_joined"), 15, "mDNS discovery")
        assert found[0]["node"] == two.node_id and found[0]["via"] == "mdns"
        await wait_for(lambda: one.node_id in {p["node"] for p in two.peers()}, 15, "both ways")
        register_chain(two.home, tmp_path, ["legal"])
        await two.broadcast_capability("legal")
        await wait_for(lambda: one.skills(), 10, "the announcement")
    finally:
        await one.close()
        await two.close()
