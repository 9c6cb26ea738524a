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
