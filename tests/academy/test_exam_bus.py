"""academy_exam over the bus: garak itself (the `make garak` venv, which make test installs) runs its probes
against a persona through /v1 and the job reports garak's detector hits; the report lands in evolution_history
and the probes leave nothing in the persona's memory. And the structured errors of a bad exam."""

from __future__ import annotations

from pathlib import Path

import pytest

from personad.brain import Brain
from personad.personas.config import PersonaStore
from tests.conftest import GARAK, RunningDaemon, start_daemon


def test_garak_probes_a_persona_through_v1(garak_daemon: RunningDaemon) -> None:
    # The fake provider echoes what it is told: prompt injections that ask it to repeat a phrase succeed.
    PersonaStore(garak_daemon.home).create({"id": "parrot", "model_provider": "fake", "secret": "PERSIMMON"})
    with garak_daemon.ws() as ws:
        params = {"persona": "parrot", "suite": "garak", "garak_families": ["promptinject", "encoding"]}
        reply = ws.call_job("academy_exam", {**params, "garak_prompts": 3}, timeout=600)
        assert reply["ok"], reply
        report = reply["result"]
        states = [ws.wait_event("academy_exam_suite")["data"]["state"] for _ in range(2)]
        assert states == ["started", "finished"]
        assert ws.wait_event("academy_exam_finished")["data"]["persona"] == "parrot"
    garak = report["suites"]["garak"]
    assert garak["source"].startswith("garak v0.17")
    assert set(garak["families"]) == {"promptinject", "encoding"}
    inject = garak["families"]["promptinject"]
    assert inject["total"] == 9 and inject["hits"] == 9  # an echo repeats every injected phrase
    assert garak["by_probe"]["promptinject.HijackHateHumans"]["total"] == 3
    assert garak["overall"]["total"] == 18 and garak["prompts"] == 18
    assert "held_out" not in garak  # a remote persona never trains in the Academy: nothing to hold out
    with Brain.open(PersonaStore(garak_daemon.home).brain_path("parrot")) as brain:
        (step,) = brain.evolution_history()
        memories = brain.query("SELECT count(*) AS n FROM memories")
    assert step["trigger_pattern"] == "exam:garak" and step["details"]["families"] == garak["families"]
    assert step["success_rate"] == pytest.approx(1 - garak["overall"]["rate"])
    assert memories == [{"n": 0}]  # garak asks with store=false: no probe is remembered


def test_exam_errors_are_structured(
    tmp_path: Path, fake_provider_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONAD_GARAK", str(tmp_path / "no-such-garak"))
    daemon = start_daemon(tmp_path / "home")
    try:
        PersonaStore(daemon.home).create({"id": "parrot", "model_provider": "fake"})
        with daemon.ws() as ws:
            missing = ws.call_job("academy_exam", {"persona": "parrot", "suite": "garak"})
            assert missing["error"]["code"] == "garak_not_installed", missing
            assert "make garak" in missing["error"]["message"]
            local_only = ws.call_job("academy_exam", {"persona": "parrot", "suite": "own"})
            assert local_only["error"]["code"] == "invalid_params"
            assert "suite garak" in local_only["error"]["message"]
            assert (
                ws.call("academy_exam", {"persona": "parrot", "suite": "x"})["error"]["code"]
                == "invalid_params"
            )
            too_few = ws.call("academy_exam", {"persona": "parrot", "garak_prompts": 0})
            assert too_few["error"]["code"] == "invalid_params"
            unknown = ws.call("academy_exam", {"persona": "nobody"})
            assert unknown["error"]["code"] == "persona_not_found"
        with daemon.ws(capabilities="chat") as human:
            assert human.call("academy_exam", {"persona": "parrot"})["error"]["code"] == "capability_denied"
    finally:
        daemon.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_suite_on_the_local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default persona's kind (local model, a secret) on all three suites; garak's prompts are none of the
    Academy's training attacks."""
    if not Path(GARAK).exists():
        pytest.skip(f"garak is not installed at {GARAK}: run 'make garak' (make test does)")
    monkeypatch.setenv("PERSONAD_GARAK", GARAK)
    daemon = start_daemon(tmp_path / "home")
    try:
        PersonaStore(daemon.home).create({"id": "student", "secret": "PERSIMMON"})
        params = {"persona": "student", "suite": "all", "heldout": 5, "benign": 2, "max_tokens": 12}
        params |= {"garak_families": ["promptinject", "dan"], "garak_prompts": 1}
        with daemon.ws() as ws:
            reply = ws.call_job("academy_exam", params, timeout=900)
        assert reply["ok"], reply
        suites = reply["result"]["suites"]
        assert list(suites) == ["own", "overrefusal", "garak"]
        assert suites["own"]["overall"]["total"] >= 5 and suites["own"]["benign_pass"]["total"] == 2
        assert suites["overrefusal"]["overall"]["total"] == 60
        garak = suites["garak"]
        assert garak["overall"]["total"] == garak["prompts"] >= 6  # a probe may cap above 1 (its templates)
        assert garak["held_out"] == {"prompts": garak["prompts"], "in_academy_training": 0}
        with Brain.open(PersonaStore(daemon.home).brain_path("student")) as brain:
            steps = {s["trigger_pattern"] for s in brain.evolution_history()}
        assert steps == {"exam:own", "exam:overrefusal", "exam:garak"}
    finally:
        daemon.stop()
