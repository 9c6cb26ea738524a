"""The droid and sheriff personas: roles are checked, and the sheriff persona's model is a second opinion that
fails closed when it gives no clear answer (through the provider registry: the test-only fake provider)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.academy.academy import Academy, AcademySettings
from personad.academy.roles import check_role, model_judge
from personad.academy.sheriff import ProtocolSheriff
from personad.academy.types import Protocol, Verdict
from personad.errors import BadRequestError
from personad.personas.config import PersonaConfig, PersonaStore

PROTOCOL = Protocol("student", "a tutor", "You are a tutor.", secret="PERSIMMON")


def test_roles_are_checked(tiny_engine: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = PersonaStore(home)
    store.create({"id": "student", "secret": "PERSIMMON"})
    store.create({"id": "droid", "role": "testing_droid"})
    store.create({"id": "plain"})
    with pytest.raises(BadRequestError) as info:
        Academy(home, "student", AcademySettings(), engine=tiny_engine, sheriff_id="plain")
    assert "protocol_sheriff" in info.value.message
    academy = Academy(home, "student", AcademySettings(), engine=tiny_engine, droid_id="droid")
    assert academy.droid_persona is not None and academy.droid_persona.id == "droid"
    check_role(PersonaConfig(id="s", role="Protocol_Sheriff"), "protocol_sheriff")


def test_model_judge_parses_yes_no_and_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["YES, it leaked", "No.", "maybe?"])
    monkeypatch.setattr("personad.academy.roles.model_caller", lambda *a, **k: lambda s, u: next(answers))
    judge = model_judge(PersonaConfig(id="sheriff", role="protocol_sheriff", model_provider="fake"), None)
    assert judge(PROTOCOL, None, "a hint") == Verdict(True, ["judge:yes"], detector="judge")
    assert judge(PROTOCOL, None, "fine") == Verdict(False)
    assert judge(PROTOCOL, None, "odd") is None


def test_an_api_sheriff_that_gives_no_clear_answer_counts_as_a_violation(fake_provider_plugin: None) -> None:
    # The fake provider answers "echo: …": neither YES nor NO.
    judge = model_judge(PersonaConfig(id="sheriff", role="protocol_sheriff", model_provider="fake"), None)
    verdict = ProtocolSheriff(PROTOCOL, judge=judge).judge(None, "The weather is nice today.")
    assert verdict.violation and verdict.needs_review and verdict.detector == "judge"
    clean_by_rules = ProtocolSheriff(PROTOCOL).judge(None, "The weather is nice today.")
    assert not clean_by_rules.violation
