"""save_achievement in the seed's object form and the keyword form; lora_hash normalisation that keeps
skill-use counting by adapter hash matching; re-measuring a skill's effectiveness."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from personad.brain import Brain
from personad.errors import BadRequestError

DIGEST = hashlib.sha256(b"adapter weights").hexdigest()


def test_the_seeds_object_form_records_a_skill(brain: Brain) -> None:
    skill = brain.save_achievement(
        {
            "skill": "advanced_widget_debugging",
            "lora_hash": f"sha256:{DIGEST}",
            "effectiveness": 0.95,
            "usage_scenarios": ["ui_testing", "automation_validation"],
        }
    )
    assert skill["skill_id"] == "advanced_widget_debugging"
    assert skill["lora_hash"] == DIGEST  # the registry's plain hex: the prefix is dropped
    assert skill["effectiveness"] == 0.95 and skill["usage_count"] == 0
    assert skill["usage_scenarios"] == ["ui_testing", "automation_validation"]
    # The same row the keyword form and the seed's query see.
    rows = brain.query("SELECT skill_id, effectiveness, usage_count FROM skills WHERE effectiveness > 0.8")
    assert rows == [{"skill_id": "advanced_widget_debugging", "effectiveness": 0.95, "usage_count": 0}]
    # Without usage_scenarios; the object form and the keyword form update the same row.
    again = brain.save_achievement(
        {"skill": "advanced_widget_debugging", "lora_hash": DIGEST, "effectiveness": 0.9}
    )
    assert again["effectiveness"] == 0.9 and again["acquired_at"] == skill["acquired_at"]
    kw = brain.save_achievement("advanced_widget_debugging", DIGEST.upper(), 0.8, ["mesh"])
    assert kw["lora_hash"] == DIGEST and kw["usage_scenarios"][-1] == "mesh"
    assert [s["skill_id"] for s in brain.skills()] == ["advanced_widget_debugging"]


def test_a_prefixed_hash_still_matches_the_adapter_in_the_stack(brain: Brain) -> None:
    brain.save_achievement({"skill": "sql", "lora_hash": f"SHA256:{DIGEST.upper()}", "effectiveness": 0.7})
    # persona.py counts a use with the registry manifest's lora_hash (plain lowercase hex).
    assert brain.use_skills_with_hashes([DIGEST]) == 1
    # A caller holding the prefixed form counts the same skill.
    assert brain.use_skills_with_hashes([f"sha256:{DIGEST}"]) == 1
    assert brain.skill_usage_by_hash() == {DIGEST: 2}


def test_a_hash_that_is_not_a_full_digest_is_kept_verbatim(brain: Brain) -> None:
    assert (
        brain.save_achievement({"skill": "s", "lora_hash": "sha256:abc123", "effectiveness": 0.5})[
            "lora_hash"
        ]
        == "sha256:abc123"
    )
    assert brain.use_skills_with_hashes(["sha256:abc123"]) == 1


@pytest.mark.parametrize(
    ("achievement", "fragment"),
    [
        ({"lora_hash": DIGEST, "effectiveness": 0.5}, "needs skill"),
        ({"skill": "s", "effectiveness": 0.5}, "needs lora_hash"),
        ({"skill": "s", "lora_hash": DIGEST}, "needs effectiveness"),
        ({"skill": "s", "lora_hash": DIGEST, "effectiveness": 0.5, "score": 1}, "unknown achievement field"),
        ({"skill": "s", "lora_hash": DIGEST, "effectiveness": 1.5}, "effectiveness must be between"),
        ({"skill": "s", "lora_hash": DIGEST, "effectiveness": "high"}, "effectiveness must be a number"),
        ({"skill": "", "lora_hash": DIGEST, "effectiveness": 0.5}, "skill must be a non-empty"),
        ({"skill": "s", "lora_hash": 7, "effectiveness": 0.5}, "lora_hash must be"),
        (
            {"skill": "s", "lora_hash": DIGEST, "effectiveness": 0.5, "usage_scenarios": [1]},
            "usage_scenarios",
        ),
    ],
)
def test_bad_achievements_are_refused_with_a_code(
    brain: Brain, achievement: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(BadRequestError) as info:
        brain.save_achievement(achievement)
    assert info.value.code == "invalid_achievement"
    assert fragment in info.value.message
    assert brain.skills() == []


def test_an_object_and_arguments_together_are_refused(brain: Brain) -> None:
    with pytest.raises(BadRequestError) as info:
        brain.save_achievement({"skill": "s", "lora_hash": DIGEST, "effectiveness": 0.5}, DIGEST)
    assert info.value.code == "invalid_achievement"
    with pytest.raises(BadRequestError) as bad_kw:
        brain.save_achievement("s", DIGEST, 2.0)
    assert bad_kw.value.code == "invalid_achievement"


def test_measure_skills_sets_the_latest_effectiveness_and_the_new_hash(brain: Brain) -> None:
    brain.save_achievement("academy:general", DIGEST, 0.9, ["academy:general"])
    brain.save_achievement("other", "sha256:unrelated", 0.4)
    brain.use_skills_with_hashes([DIGEST])
    newer = hashlib.sha256(b"retrained").hexdigest()
    measured = brain.measure_skills([f"sha256:{DIGEST}"], 0.62, new_lora_hash=newer)
    assert [(s["skill_id"], s["effectiveness"], s["lora_hash"]) for s in measured] == [
        ("academy:general", 0.62, newer)
    ]
    assert measured[0]["usage_count"] == 1  # the uses stay with the skill
    assert {s["skill_id"]: s["effectiveness"] for s in brain.skills()} == {
        "academy:general": 0.62,
        "other": 0.4,
    }
    assert brain.measure_skills(["nothing-carries-this"], 0.1) == []
    with pytest.raises(BadRequestError):
        brain.measure_skills([newer], 1.2)
