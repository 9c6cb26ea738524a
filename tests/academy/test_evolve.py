"""evolve_capabilities on a tiny model: learning experiences become an adapter that is kept only if the
held-out answer loss drops; every attempt lands in evolution_history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personad.academy.evolve import evolve, learning_clusters
from personad.brain import Brain, HashEmbedder
from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaStore
from tests.lora.helpers import random_peft_adapter

from .conftest import train_on_copy

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown"]


def learn(brain: Brain) -> None:
    for i, color in enumerate(COLORS):
        brain.remember(
            {
                "type": "learning_experience",
                "content": f"the user's favourite thing number {i} is {color}",
                "context": {
                    "domain": "colors",
                    "prompt": f"What colour is item {i}?",
                    "answer": f"Item {i} is {color}.",
                    "outcome": "failure",
                },
            }
        )
    brain.remember(
        {
            "type": "learning_experience",
            "content": "one lonely cooking lesson",
            "context": {"domain": "cooking", "prompt": "Boil?", "answer": "Ten minutes."},
        }
    )
    brain.remember({"type": "fact", "content": "not a learning experience"})


def test_keeps_an_adapter_that_lowers_the_held_out_loss(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    PersonaStore(home).create({"id": "learner"})
    with Brain.open(home / "personas" / "learner" / "brain.sqlite", embedder=HashEmbedder()) as brain:
        learn(brain)
        assert sorted((d, len(p)) for d, p in learning_clusters(brain).items()) == [
            ("colors", 8),
            ("cooking", 1),
        ]
        result = evolve(
            home, "learner", tiny_engine, train=train_on_copy(tiny_engine), steps=20, lr=1e-2, brain=brain
        )
        history = brain.evolution_history()
    assert result["domain"] == "colors" and result["examples"] == 6 and result["heldout"] == 2
    assert result["evolved"] and result["heldout_loss_after"] < result["heldout_loss_before"]
    assert PersonaStore(home).load("learner").lora_adapters == ["evolved-colors-learner"]
    assert history[0]["lora_generated"] == "evolved-colors-learner" and history[0]["success_rate"] > 0


def test_drops_an_adapter_that_does_not_help(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    PersonaStore(home).create({"id": "learner"})

    def harmful(config: Any, registry: AdapterRegistry, engine: Any) -> Any:
        folder = random_peft_adapter(engine.model, tmp_path / "noise", seed=3, rank=8, alpha=512)
        manifest = registry.register(
            config.name, folder, base_model="tiny", base_model_sha256="", replace=True
        )
        return type("Result", (), {"manifest": manifest})()

    with Brain.open(home / "personas" / "learner" / "brain.sqlite", embedder=HashEmbedder()) as brain:
        learn(brain)
        result = evolve(home, "learner", tiny_engine, train=harmful, brain=brain)
        history = brain.evolution_history()
    assert not result["evolved"] and result["heldout_loss_after"] > result["heldout_loss_before"]
    assert PersonaStore(home).load("learner").lora_adapters == []
    assert not AdapterRegistry.for_home(home).exists("evolved-colors-learner")
    assert history[0]["lora_generated"] is None and history[0]["success_rate"] == 0


def test_nothing_to_learn_from(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    PersonaStore(home).create({"id": "learner"})
    with Brain.open(home / "personas" / "learner" / "brain.sqlite", embedder=HashEmbedder()) as brain:
        result = evolve(home, "learner", tiny_engine, brain=brain)
    assert not result["evolved"] and "learning_experience" in result["reason"]
