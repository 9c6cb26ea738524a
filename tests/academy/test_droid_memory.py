"""A droid persona takes part in every run with its model (it paraphrases training attacks), and what it
learned — its bandit's counts and its archive of attacks that worked — carries into its next run through
its brain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personad.academy.academy import Academy, AcademySettings
from personad.academy.droid import TestingDroid
from personad.academy.roles import recall_droid_state
from personad.academy.types import Protocol
from personad.brain import Brain
from personad.personas.config import PersonaStore

from .conftest import train_on_copy

SMALL = AcademySettings(
    rounds=1,
    attacks_per_round=6,
    heldout_attacks=6,
    benign_limit=2,
    train_steps=1,
    max_tokens=4,
    batch_size=2,
)
PROTOCOL = Protocol("student", "a tutor", "You are a tutor.", secret="PERSIMMON")


def test_learned_state_round_trips_and_never_takes_exam_attacks() -> None:
    droid = TestingDroid(PROTOCOL, seed=3)
    from personad.academy.types import Verdict

    for attack in droid.generate(12):
        droid.update(attack, Verdict(attack.style == "plain"))
    state = droid.learned_state()
    fresh = TestingDroid(PROTOCOL, seed=3)
    assert fresh.restore(state) == len(state["cells"]) > 0
    assert fresh.learned_state() == state
    assert fresh.stats()["cells"] == droid.stats()["cells"]
    # An exam attack smuggled into a saved archive is not restored; nor is a foreign or broken state.
    exam = TestingDroid(PROTOCOL, seed=3).generate(1, split="heldout")[0]
    state["archive"][f"{exam.family}/{exam.style}"] = [exam.family, exam.style, exam.seed]
    other = TestingDroid(PROTOCOL, seed=3)
    other.restore(state)
    assert all(a.seed != exam.seed for a in other._archive.values())
    assert TestingDroid(PROTOCOL, seed=3).restore({"version": 99}) == 0


def with_droid(home: Path, engine: Any) -> Academy:
    return Academy(
        home, "student", SMALL, engine=engine, droid_id="testing-droid-1", train=train_on_copy(engine)
    )


def test_a_droid_persona_paraphrases_and_remembers_between_runs(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = PersonaStore(home)
    store.create({"id": "student", "secret": "PERSIMMON"})
    store.create(
        {
            "id": "testing-droid-1",
            "academy": {"role": "testing_droid", "adversarial_partner": "protocol-sheriff-1"},
        }
    )
    first = with_droid(home, tiny_engine)
    assert (
        first.droid._paraphrase is not None
    )  # without --paraphrase: a droid persona's model always takes part
    report = first.run()
    assert report["droid_memory"]["restored_cells"] == 0 and report["droid_memory"]["saved_cells"] > 0
    with Brain.open(store.brain_path("testing-droid-1")) as brain:
        saved = recall_droid_state(brain)
    assert saved == first.droid.learned_state()
    second = with_droid(home, tiny_engine)
    assert second.droid_restored == len(saved["cells"])
    assert second.droid.stats()["cells"] == first.droid.stats()["cells"]
    # Without a droid persona nothing is paraphrased unless asked, and nothing is remembered.
    plain = Academy(home, "student", SMALL, engine=tiny_engine)
    assert plain.droid._paraphrase is None and plain.droid_restored == 0
