"""The `persona_graduated` event over the bus: the notification's actions, the mesh status it means, the
metrics of the Academy run that graduated the persona; and the read-only `persona_emotions` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from personad.academy.graduation import ACTIONS, announcement, last_run_metrics
from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

BASELINE = {"attacks": 40, "violations": 18, "attack_success": 0.45, "attack_success_upper95": 0.6,
            "benign": 10, "benign_passed": 7, "benign_pass": 0.7, "by_family": {"x": [1, 2]}}  # fmt: skip
FINAL = {**BASELINE, "violations": 1, "attack_success": 0.025, "attack_success_upper95": 0.129}


def _graduated(home: Path, persona: str = "student", name: str = "Ada") -> None:
    store = PersonaStore(home)
    config = store.create({"id": persona, "name": name, "model_provider": "fake"})
    config.status = "graduated"
    store.save(config)


def _finished_run(
    home: Path, persona: str, graduation: dict[str, Any] | None, graduated: bool = True
) -> None:
    path = home / "personas" / persona / "academy" / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"graduated": graduated, "baseline": BASELINE, "final": FINAL, "relative_reduction": 0.944}
    data |= {"benign_delta": 0.0, "rounds": [{}, {}], "seconds": 12.5}
    if graduation is not None:
        data["graduation"] = graduation
    path.write_text(json.dumps({"state": "finished", "event": "academy_finished", "data": data}))


def test_the_event_carries_actions_status_and_the_runs_metrics(running: RunningDaemon) -> None:
    _graduated(running.home)
    _finished_run(running.home, "student", {"achievement": "academy:general"})
    graduation = {"achievement": "academy:general", "academy_score": 0.975, "new_capabilities": ["triage"]}
    with running.ws() as ws:
        reply = ws.call("persona_graduated", {"persona": "student", "graduation": graduation})
        assert reply["ok"], reply
        event = ws.wait_event("persona_graduated")["data"]
    assert event == reply["result"]["event"]
    assert event["actions"] == [
        {"id": "assign_tasks", "title": "Assign Tasks"},
        {"id": "view_details", "title": "View Details"},
    ]
    assert event["title"] == "🎓 Persona Graduated!" and event["body"] == "Ada mastered academy:general!"
    assert event["persona"] == "student" and event["name"] == "Ada" and event["academy_score"] == 0.975
    assert event["status"] == "graduated" and event["ready_for_deployment"] is True
    assert event["specializations"] == ["academy:general", "triage"]
    metrics = event["metrics"]
    assert metrics["baseline"]["attack_success"] == 0.45 and metrics["final"]["attack_success"] == 0.025
    assert metrics["final"]["benign_pass"] == 0.7 and "by_family" not in metrics["final"]
    assert metrics["relative_reduction"] == 0.944 and metrics["rounds"] == 2


def test_metrics_only_from_a_run_that_graduated_it_in_that(tmp_path: Path) -> None:
    _graduated(tmp_path)
    assert last_run_metrics(tmp_path, "student") is None  # never ran
    _finished_run(tmp_path, "student", {"achievement": "academy:legal"})
    assert last_run_metrics(tmp_path, "student", "academy:legal") is not None
    assert last_run_metrics(tmp_path, "student", "quantum mechanics") is None
    assert "metrics" not in announcement(tmp_path, "student", {"achievement": "quantum mechanics"})
    _finished_run(tmp_path, "student", None, graduated=False)
    assert last_run_metrics(tmp_path, "student") is None
    # What the record already says wins; the actions are always the two.
    event = announcement(tmp_path, "student", {"achievement": "x", "metrics": {"given": 1}, "actions": []})
    assert event["metrics"] == {"given": 1}
    assert [a["id"] for a in event["actions"]] == [a["id"] for a in ACTIONS]
    assert announcement(tmp_path, "nobody", {})["name"] == "nobody"  # a missing persona still announces


def test_persona_emotions_reads_the_latest_and_checks_access(running: RunningDaemon) -> None:
    PersonaStore(running.home).create({"id": "moody", "model_provider": "fake"})
    brain = running.daemon.brain("moody")
    for label in ("calm", "curious", "proud"):
        brain.feel(label, 0.5, 0.5, f"because {label}")
    with running.ws() as ws:
        reply = ws.call("persona_emotions", {"persona": "moody", "limit": 2})
        assert [e["label"] for e in reply["result"]["emotions"]] == ["proud", "curious"]
        zero = ws.call("persona_emotions", {"persona": "moody", "limit": 0})
        assert zero["error"]["code"] == "invalid_params"
        assert ws.call("persona_emotions", {"persona": "ghost"})["error"]["code"] == "persona_not_found"
    with running.ws(capabilities="chat") as ws:
        denied = ws.call("persona_emotions", {"persona": "moody"})
        assert denied["error"]["code"] == "capability_denied"
