"""Three `personad serve` daemons on loopback (own homes, own ports) share an adapter chain over the bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon, start_daemon
from tests.lora.helpers import random_peft_adapter, tiny_model

from .helpers import TINY_BASE
from .test_node import CHAIN, logits

MESH = {"mesh": True, "mesh_base_model_sha256": TINY_BASE, "mesh_poll_s": 0.2}


@pytest.fixture
def three(tmp_path: Path, fake_provider_plugin: None) -> Iterator[list[RunningDaemon]]:
    daemons = [start_daemon(tmp_path / name, mesh_name=name, **MESH) for name in ("a", "b", "c")]
    yield daemons
    for daemon in daemons:
        daemon.stop()


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply.get("ok"), reply
    return dict(reply["result"])


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_three_daemons_share_a_chain_from_a_swarm(three: list[RunningDaemon], tmp_path: Path) -> None:
    a, b, c = three
    with a.ws() as wa, b.ws() as wb, c.ws() as wc:
        for joiner in (wb, wc):
            code = ok(wa.call("mesh_invite"))["code"]
            assert (
                ok(joiner.call("mesh_join", {"code": code}))["joined"] == ok(wa.call("mesh_status"))["node"]
            )
        wait_until(
            lambda: all(len(ok(w.call("mesh_peers"))["peers"]) == 2 for w in (wa, wb, wc)), 10, "peers"
        )

        # A persona on A trained a chain (here: random adapters of a ~2 MB size for a tiny model).
        model = tiny_model(hidden=256)
        registry = AdapterRegistry.for_home(a.home)
        for i, name in enumerate(CHAIN):
            folder = random_peft_adapter(model, tmp_path / f"src-{name}", seed=10 + i, rank=128 + 128 * i)
            registry.register(name, folder, base_model="tiny", base_model_sha256=TINY_BASE)
        started = time.monotonic()
        for name in CHAIN:
            ok(wa.call("mesh_broadcast", {"adapter": name, "persona": "scholar"}))
        for watcher in (wb, wc):
            seen = {watcher.wait_event("mesh_skill_announced", timeout=10)["data"]["adapter"] for _ in CHAIN}
            assert seen == set(CHAIN)
        assert time.monotonic() - started < 10

        job = ok(wb.call_job("mesh_acquire", {"skill": "continuum.legal.patent"}))
        assert sorted(job["acquired"]) == sorted(CHAIN)
        wait_until(
            lambda: all(len(s["seeders"]) == 2 for s in ok(wc.call("mesh_skills"))["skills"]), 10, "B seeding"
        )

        ok(wc.call("persona_create", {"id": "clerk", "model_provider": "fake", "capabilities": ["chat"]}))
        result = ok(wc.call_job("mesh_acquire", {"skill": "continuum.legal.patent", "persona": "clerk"}))
        assert result["chain"] == CHAIN and sorted(result["acquired"]) == sorted(CHAIN)
        assert result["stack"] == ["continuum.legal.patent"]
        patent = result["transfers"][-1]
        # Pieces came from both seeders: libtorrent's own upload counters on A and on B.
        uploaded = {
            name: {s["adapter"]: s["uploaded"] for s in ok(w.call("mesh_status"))["seeds"]}[
                "continuum.legal.patent"
            ]
            for name, w in (("a", wa), ("b", wb))
        }
        assert uploaded["a"] > 0 and uploaded["b"] > 0, uploaded
        assert uploaded["a"] + uploaded["b"] >= patent["bytes"]

        # C's registry now answers exactly as A's: the same logits with the adapter applied.
        expected = logits(model, a.home, "continuum.legal.patent")
        assert not torch.allclose(expected, logits(model, a.home, "continuum.legal"))
        assert torch.max(torch.abs(expected - logits(model, c.home, "continuum.legal.patent"))).item() <= 1e-4
        clerk = ok(wc.call("persona_show", {"persona": "clerk"}))
        assert clerk["lora_adapters"] == ["continuum.legal.patent"]
        skills = {s["skill_id"]: s for s in c.daemon.brain("clerk").skills()}
        assert skills["continuum.legal.patent"]["lora_hash"] == patent["lora_hash"]
