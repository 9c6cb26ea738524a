"""Mesh nodes on loopback, each with its own home, and tiny random adapters to share between them."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from personad.lora.registry import AdapterRegistry
from personad.mesh.node import MeshConfig, MeshNode
from tests.lora.helpers import random_peft_adapter, tiny_model

#: The tiny test model's stand-in for a base model's sha256 (announcements carry 64 hex digits).
TINY_BASE = hashlib.sha256(b"tiny-llama-test").hexdigest()


class Recorder:
    """Collects a node's events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == event]


async def start_node(home: Path, name: str, **kw: Any) -> tuple[MeshNode, Recorder]:
    recorder = Recorder()
    node_kw = {k: kw.pop(k) for k in ("exams", "loads") if k in kw}
    config = MeshConfig(home=home, name=name, base_model_sha256=kw.pop("base", TINY_BASE), poll_s=0.2, **kw)
    node = MeshNode(config, emit=recorder, **node_kw)
    await node.start()
    return node, recorder


async def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s")


def register_chain(home: Path, tmp: Path, names: list[str], *, rank: int = 4, seed: int = 1) -> Any:
    """Register random adapters for the tiny model as a chain (each the next one's parent)."""
    model = tiny_model()
    registry = AdapterRegistry.for_home(home)
    for i, name in enumerate(names):
        folder = random_peft_adapter(model, tmp / f"src-{name}-{seed}", seed=seed + i, rank=rank)
        registry.register(name, folder, base_model="tiny", base_model_sha256=TINY_BASE)
    return model


async def mesh_of(tmp: Path, names: list[str]) -> list[tuple[MeshNode, Recorder]]:
    """Nodes joined through invites from the first one."""
    nodes = [await start_node(tmp / n, n) for n in names]
    first = nodes[0][0]
    for node, _ in nodes[1:]:
        await node.join(first.invite())
    return nodes
