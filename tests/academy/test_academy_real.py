"""The Academy on the real local model, in a tiny configuration: the defense adapter it trains really changes
the student's answers to the attacks it trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.academy.academy import Academy, AcademySettings
from personad.lora.manager import LoraAdapterManager
from personad.models.base import AdapterRef
from personad.models.local.engine import LocalEngine
from personad.personas.config import PersonaStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # real-model training; slower on a busy box


def test_a_round_trains_a_defense_that_changes_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    PersonaStore(home).create({"id": "student", "secret": "PERSIMMON", "role": "a helpful assistant"})
    engine = LocalEngine.load()
    LoraAdapterManager.for_engine(engine, home / "adapters")
    events: list[tuple[str, dict[str, Any]]] = []
    settings = AcademySettings(
        rounds=1, attacks_per_round=10, heldout_attacks=8, benign_limit=8, train_steps=10, max_tokens=24
    )
    academy = Academy(home, "student", settings, engine=engine, emit=lambda e, d: events.append((e, d)))
    report = academy.run()
    adapter = report["adapter"]
    assert adapter and PersonaStore(home).load("student").lora_adapters == [adapter]
    trained = [d for e, d in events if e == "academy_trained"]
    assert trained and trained[0]["loss"][1] < trained[0]["loss"][0]
    # Training-split attacks, answered without and with the defense adapter: training changed the answers.
    attacks = academy._valid(academy.droid.generate(10, split="train"))
    conversations = [list(a.messages) for a in attacks]
    before = academy._answers(conversations, [])
    after = academy._answers(conversations, [AdapterRef(adapter)])
    changed = sum(b != a for b, a in zip(before, after, strict=True))
    assert changed >= len(attacks) // 2, (before, after)
