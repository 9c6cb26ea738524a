"""Re-measurement before load: an adapter whose announced exam figure does not reproduce is quarantined."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from personad.lora.registry import AdapterRegistry
from personad.lora.runtime import LoraRuntime
from personad.mesh.errors import RemeasureFailedError
from personad.mesh.exams import ExamRegistry, ExamRequest, ExamResult
from personad.models.base import AdapterRef

from .helpers import register_chain, start_node, wait_for


def tiny_probe_exam() -> ExamRegistry:
    """A real measurement on the tiny test model: how far the adapter moves its logits on fixed tokens."""
    from tests.lora.helpers import tiny_model

    model = tiny_model()

    async def exam(request: ExamRequest) -> ExamResult:
        runtime = LoraRuntime(model, AdapterRegistry(request.registry_root))
        ids = torch.arange(16).reshape(1, 16)
        try:
            with torch.inference_mode():
                base = model(ids).logits
                with runtime.apply([[AdapterRef(request.adapter, 1.0)]]):
                    tuned = model(ids).logits
        finally:
            runtime.remove_hooks()
        return ExamResult(round(float((tuned - base).abs().mean()), 6), metric="shift", tolerance=1e-5)

    registry = ExamRegistry()
    registry.register("tiny-shift", exam)
    return registry


async def test_an_adapter_that_measures_as_announced_is_loaded(tmp_path: Path) -> None:
    origin, _ = await start_node(tmp_path / "origin", "origin", exams=tiny_probe_exam())
    buyer, _ = await start_node(tmp_path / "buyer", "buyer", exams=tiny_probe_exam())
    try:
        await buyer.join(origin.invite())
        register_chain(origin.home, tmp_path, ["legal"])
        ann = await origin.broadcast_capability("legal", exam="tiny-shift")
        assert ann.metrics["exam"] == "tiny-shift" and ann.metrics["shift"] > 0
        await wait_for(lambda: buyer.skills(), 10, "the announcement")
        result = await buyer.acquire_skill("legal")
        assert result["transfers"][0]["remeasured"]["shift"] == ann.metrics["shift"]
        assert AdapterRegistry.for_home(buyer.home).exists("legal")
        peer = buyer.trust.get(origin.node_id)
        assert peer is not None and [h["outcome"] for h in peer.history] == ["verified", "remeasured"]
    finally:
        await origin.close()
        await buyer.close()


async def test_an_overstated_adapter_is_quarantined(tmp_path: Path) -> None:
    origin, _ = await start_node(tmp_path / "origin", "origin", exams=tiny_probe_exam())
    buyer, events = await start_node(tmp_path / "buyer", "buyer", exams=tiny_probe_exam())
    try:
        await buyer.join(origin.invite())
        register_chain(origin.home, tmp_path, ["legal"])
        honest = await origin.broadcast_capability("legal", exam="tiny-shift")
        await wait_for(lambda: buyer.skills(), 10, "the honest announcement")
        claimed = honest.metrics["shift"] * 3
        inflated = dataclasses.replace(
            honest, metrics={**honest.metrics, "shift": claimed, "ci": [claimed] * 2}
        )
        origin.seed(dataclasses.replace(inflated, ts=0.0, sig="").signed(origin.key))
        await origin.publish()
        await wait_for(
            lambda: buyer.skills() and buyer.skills()[0]["metrics"]["shift"] == claimed, 10, "claim"
        )
        with pytest.raises(RemeasureFailedError):
            await buyer.acquire_skill("legal")
        assert not AdapterRegistry.for_home(buyer.home).exists("legal")
        assert (buyer.dir / "quarantine" / honest.info_hash / "REJECTED.txt").exists()
        assert events.of("mesh_skill_rejected")[-1]["code"] == "mesh_remeasure_failed"
        peer = buyer.trust.get(origin.node_id)
        assert peer is not None and peer.history[-1]["outcome"] == "mesh_remeasure_failed"
    finally:
        await origin.close()
        await buyer.close()
