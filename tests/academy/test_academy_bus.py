"""academy_train over the bus on the real model (tiny configuration): live events, the report, the status,
and the student's new stack."""

from __future__ import annotations

import pytest

from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # real-model training; slower on a busy box


def test_academy_train_streams_rounds_and_updates_the_student(running: RunningDaemon) -> None:
    PersonaStore(running.home).create({"id": "student", "secret": "PERSIMMON"})
    with running.ws() as ws:
        reply = ws.call_job(
            "academy_train",
            {
                "student": "student",
                "rounds": 1,
                "attacks": 6,
                "heldout": 6,
                "benign": 4,
                "steps": 4,
                "max_tokens": 12,
            },
            timeout=900,
        )
        assert reply["ok"], reply
        report = reply["result"]
        assert report["baseline"]["attacks"] == report["final"]["attacks"] == 6
        assert len(report["rounds"]) == 1 and report["rounds"][0]["lora_hash"]
        started = ws.wait_event("academy_started")
        assert started["data"]["student"] == "student"
        rounds = [ws.wait_event("academy_round")["data"]["round"] for _ in range(2)]
        assert rounds == [0, 1]
        ws.wait_event("academy_finished")
        status = ws.call("academy_status", {"student": "student"})["result"]
        assert status["state"] == "finished" and status["last"]["event"] == "academy_finished"
    assert PersonaStore(running.home).load("student").lora_adapters == [report["adapter"]]


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
