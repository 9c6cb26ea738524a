"""The Academy's jobs over the bus on the real model (tiny configurations). academy_train's one real run is
tests/web/test_academy_view.py::test_a_tiny_real_run_from_the_form: started from the page, its events drawn
live, then its report, status and the student's new stack read over the bus."""

from __future__ import annotations

import pytest

from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # real-model training; slower on a busy box


def test_persona_evolve_over_the_bus_measures_and_records(running: RunningDaemon) -> None:
    PersonaStore(running.home).create({"id": "learner"})
    colors = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown"]
    with running.ws(capabilities="chat") as human:
        denied = human.call("persona_evolve", {"persona": "learner"})
        assert denied["error"]["code"] == "capability_denied"
    with running.ws() as ws:
        for i, color in enumerate(colors):
            memory = {
                "type": "learning_experience",
                "content": f"item {i} is {color}",
                "context": {"domain": "colors", "prompt": f"What colour is item {i}?", "answer": f"{color}."},
            }
            assert ws.call("remember", {"persona": "learner", "memory": memory})["ok"]
        reply = ws.call_job("persona_evolve", {"persona": "learner", "steps": 12}, timeout=900)
        assert reply["ok"], reply
        result = reply["result"]
        assert result["domain"] == "colors" and result["examples"] + result["heldout"] == 8
        improved = result["heldout_loss_after"] < result["heldout_loss_before"]
        assert result["evolved"] == improved
        assert ws.wait_event("persona_evolved")["data"]["domain"] == "colors"
        history = ws.call(
            "brain_query",
            {"persona": "learner", "sql": "SELECT trigger_pattern, lora_generated FROM evolution_history"},
        )["result"]
    assert len(history["rows"]) == 1
    adapters = PersonaStore(running.home).load("learner").lora_adapters
    assert adapters == (["evolved-colors-learner"] if improved else [])
