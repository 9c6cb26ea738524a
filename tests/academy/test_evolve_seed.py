"""evolve_capabilities on what the seed stores: ``{type: 'learning_experience', content, context: {domain},
outcome, timestamp}`` with no prompt or answer. A successful experience teaches the exchange it names or
follows; a failed one without a corrected answer teaches nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personad.academy.evolve import evolve, exchanges, learning_clusters
from personad.brain import Brain, HashEmbedder
from personad.personas.config import PersonaStore

from .conftest import train_on_copy

QUESTIONS = [
    ("What is the ground state of hydrogen?", "-13.6 eV."),
    ("What does the Schrodinger equation describe?", "How a quantum state evolves."),
    ("What is a photon's spin?", "One."),
    ("What is Planck's constant?", "6.626e-34 J s."),
    ("What is superposition?", "A sum of states."),
]


def converse(brain: Brain, t0: float) -> None:
    """Exchanges as the persona stores them (a user's message, then its reply), each followed by the
    seed-shaped learning experience about it; the last one failed."""
    for i, (question, answer) in enumerate(QUESTIONS):
        at = t0 + 100 * i
        brain.remember_many(
            [
                {"type": "conversation", "content": question, "source": "user:ana", "timestamp": at},
                {"type": "conversation", "content": answer, "source": "self", "timestamp": at + 1},
            ]
        )
        brain.remember(
            {
                "type": "learning_experience",
                "content": f"Worked on physics question {i}",
                "context": {"domain": "physics", "difficulty": "advanced"},
                "outcome": "failed" if i == len(QUESTIONS) - 1 else "mastery_achieved",
                "timestamp": at + 5,
            }
        )


def test_seed_shaped_experiences_cluster_on_the_exchanges_they_follow(tmp_path: Path) -> None:
    with Brain.open(tmp_path / "brain.sqlite", embedder=HashEmbedder()) as brain:
        converse(brain, 1_700_000_000.0)
        pairs = exchanges(brain)
        clusters = learning_clusters(brain)
    assert [(p["prompt"], p["answer"]) for p in pairs] == QUESTIONS
    assert list(clusters) == ["physics"]
    # The four successes teach the answers given; the failure is left out.
    assert [(p["prompt"], p["answer"]) for p in clusters["physics"]] == QUESTIONS[:4]
    assert {p["outcome"] for p in clusters["physics"]} == {"mastery_achieved"}


def test_an_experience_may_name_its_message_and_a_far_one_points_nowhere(tmp_path: Path) -> None:
    with Brain.open(tmp_path / "brain.sqlite", embedder=HashEmbedder()) as brain:
        brain.remember_many(
            [
                {
                    "type": "conversation",
                    "content": "Q1?",
                    "source": "user:ana",
                    "context": {"message_id": 7},
                },
                {"type": "conversation", "content": "A1.", "source": "self", "context": {"in_reply_to": 7}},
                {
                    "type": "conversation",
                    "content": "Q2?",
                    "source": "user:ana",
                    "context": {"message_id": 8},
                },
                {"type": "conversation", "content": "A2.", "source": "self", "context": {"in_reply_to": 8}},
            ]
        )
        brain.remember(
            {
                "type": "learning_experience",
                "content": "got the first right",
                "outcome": "success",
                "context": {"domain": "quiz", "message_id": 7},
            }
        )
        brain.remember(
            {
                "type": "learning_experience",
                "content": "much later",
                "outcome": "success",
                "context": {"domain": "late"},
                "timestamp": 4_000_000_000.0,
            }
        )
        clusters = learning_clusters(brain)
    assert clusters == {"quiz": [{"prompt": "Q1?", "answer": "A1.", "outcome": "success"}]}


def test_evolve_trains_on_seed_shaped_memories(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    PersonaStore(home).create({"id": "physicist"})
    with Brain.open(PersonaStore(home).brain_path("physicist"), embedder=HashEmbedder()) as brain:
        converse(brain, 1_700_000_000.0)
        result = evolve(
            home, "physicist", tiny_engine, train=train_on_copy(tiny_engine), steps=20, lr=1e-2, brain=brain
        )
        history = brain.evolution_history()
    assert result["domain"] == "physics" and result["examples"] + result["heldout"] == 4
    assert history[0]["trigger_pattern"] == "learning_experience:physics:4"
