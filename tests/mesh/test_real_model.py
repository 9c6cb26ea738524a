"""The mesh on the real local model: A trains a chain, C's persona acquires it (from A and B) and answers as
A's persona does with it; the logits through C's registry equal A's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon, start_daemon
from tests.lora.test_end_to_end import EXAMPLES, QUESTION, ask

from .test_daemons import ok, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PERSONA = {
    "name": "Clerk",
    "capabilities": ["chat"],
    "start": True,
    "memory_budget_tokens": 0,
    "system_prompt": "Be brief.",
}


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[RunningDaemon]]:
    daemons = [start_daemon(tmp_path / n, mesh=True, mesh_name=n, mesh_poll_s=0.3) for n in ("a", "b", "c")]
    yield daemons
    for daemon in daemons:
        daemon.stop()


def test_a_chain_trained_on_a_answers_the_same_on_c(three: list[RunningDaemon]) -> None:
    a, b, c = three
    with a.ws() as wa, b.ws() as wb, c.ws() as wc:
        for joiner in (wb, wc):
            ok(joiner.call("mesh_join", {"code": ok(wa.call("mesh_invite"))["code"]}))
        for name in ("continuum.legal", "continuum.legal.patent"):
            trained = ok(
                wa.call_job("lora_train", {"name": name, "examples": EXAMPLES, "max_steps": 6, "lr": 5e-3})
            )
            assert trained["name"] == name
            ok(wa.call("mesh_broadcast", {"adapter": name, "persona": "scholar"}))
        ok(wa.call("persona_create", {"id": "scholar", **PERSONA}))
        ok(wa.call("lora_load_stack", {"persona": "scholar", "adapters": ["continuum.legal.patent"]}))
        ok(wb.call_job("mesh_acquire", {"skill": "continuum.legal.patent"}))
        wait_until(lambda: all(len(s["seeders"]) == 2 for s in ok(wc.call("mesh_skills"))["skills"]), 15, "B")
        ok(wc.call("persona_create", {"id": "clerk", **PERSONA}))
        result = ok(wc.call_job("mesh_acquire", {"skill": "continuum.legal.patent", "persona": "clerk"}))
        assert sorted(result["acquired"]) == ["continuum.legal", "continuum.legal.patent"]

    on_a = openai.OpenAI(base_url=f"{a.url}/v1", api_key=a.token, max_retries=0)
    on_c = openai.OpenAI(base_url=f"{c.url}/v1", api_key=c.token, max_retries=0)
    for question in (QUESTION, "What is prior art?"):  # same prompt and name: the same greedy answer
        assert ask(on_c, "clerk", question) == ask(on_a, "scholar", question)

    import torch

    from personad.lora.runtime import LoraRuntime
    from personad.models.base import AdapterRef
    from personad.models.local.engine import LocalEngine

    engine = LocalEngine.load()
    ids = engine.tokenizer(QUESTION, return_tensors="pt").input_ids

    def logits(home: Path) -> torch.Tensor:
        runtime = LoraRuntime(
            engine.model, AdapterRegistry.for_home(home), base_model_sha256=engine.base_sha256
        )
        try:
            with torch.inference_mode(), runtime.apply([[AdapterRef("continuum.legal.patent", 1.0)]]):
                return engine.model(ids).logits.clone()
        finally:
            runtime.remove_hooks()

    with torch.inference_mode():
        base = engine.model(ids).logits
    on_a_logits, on_c_logits = logits(a.home), logits(c.home)
    assert torch.max(torch.abs(on_a_logits - base)).item() > 1e-2  # the adapter changes the model
    assert torch.max(torch.abs(on_a_logits - on_c_logits)).item() <= 1e-4
