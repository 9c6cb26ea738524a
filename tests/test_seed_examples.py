"""The seed README's examples (``../shared/seed/PersonaDaemon.md``), ported to Python one test per example
and run through the public Python API and the bus. Where our answer differs from the seed's (an Anthropic
persona cannot apply a LoRA stack), the test shows the clear refusal and the shape that does run.

The same examples, as scripts a user can run against a daemon, are in ``examples/``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from personad.errors import PersonadError
from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaStore
from personad.personas.persona import PersonaDaemon
from tests.conftest import RunningDaemon, start_daemon
from tests.lora.helpers import register_random, tiny_model
from tests.models.fake_servers import FakeOpenAIServer

STACK = ["continuum.legal", "continuum.legal.patent", "continuum.legal.patent.uspto"]

# The seed's first example, as a Python dict (its camelCase keys are accepted as they are).
PATENT_EXPERT: dict[str, Any] = {
    "id": "patent-expert",
    "name": "USPTO Patent Specialist",
    "modelProvider": "anthropic",
    "modelConfig": {"model": "claude-3-haiku", "apiKey": os.environ.get("ANTHROPIC_API_KEY")},
    "loraAdapters": STACK,
    "capabilities": ["chat", "browser_js", "screenshot", "devtools"],
    "sessionDirectory": ".continuum/personas/patent-expert/",
}


@pytest.fixture
def seed_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_provider_plugin: None
) -> Iterator[RunningDaemon]:
    """A daemon whose home is ``./.continuum`` (the CLI's default, and the seed's), with the fake provider."""
    monkeypatch.chdir(tmp_path)
    daemon = start_daemon(tmp_path / ".continuum")
    yield daemon
    daemon.stop()


def register_stack(home: Path) -> None:
    registry = AdapterRegistry.for_home(home)
    model = tiny_model()
    for seed, name in enumerate(STACK):
        register_random(registry, model, name, home, seed=seed)


async def test_basic_persona_creation(seed_daemon: RunningDaemon) -> None:
    """``new PersonaDaemon({...}); await persona.start()``."""
    register_stack(seed_daemon.home)
    persona = PersonaDaemon(PATENT_EXPERT, home=seed_daemon.home)
    with pytest.raises(PersonadError) as refused:
        await persona.start()  # Anthropic serves no LoRA: refused up front, not ignored
    assert refused.value.code == "adapters_unsupported"
    assert "lora_serving" in refused.value.message and persona.state == "stopped"
    assert not PersonaStore(seed_daemon.home).exists("patent-expert")

    # The same shape on an OpenAI-compatible server that serves adapters (vLLM, llama.cpp server, LoRAX):
    # each request names the flattened stack (`personad lora export continuum.legal.patent.uspto`).
    with FakeOpenAIServer(api_key=None) as server:
        served = {
            **PATENT_EXPERT,
            "modelProvider": "openai",
            "modelConfig": {"model": "smollm2", "baseUrl": server.url, "loraServing": "model"},
        }
        persona = PersonaDaemon(served, home=seed_daemon.home)
        status = await persona.start()  # a config not saved yet is created on the daemon first
        try:
            assert status["state"] == "running" and status["session"]["kind"] == "persona"
            reply = await persona.handle_message(
                {"type": "chat_message", "data": {"message": "Analyze this patent for prior art conflicts"}}
            )
            assert reply["reply"] == "Hello from the fake server."
            assert server.last_request.body["model"] == "continuum.legal.patent.uspto"
        finally:
            await persona.stop()
    stored = PersonaStore(seed_daemon.home).load("patent-expert")
    assert stored.lora_adapters == STACK and stored.model_config_["lora_serving"] == "model"
    # The seed's sessionDirectory is the default home's own persona folder: honoured, inside the home.
    assert Path(stored.session_directory or "") == (seed_daemon.home / "personas" / "patent-expert").resolve()


async def test_academy_training_setup(seed_daemon: RunningDaemon) -> None:
    """``new PersonaDaemon(personaConfig, {enabled, role, trainingDomain, adversarialPartner})``."""
    droid = PersonaDaemon(
        {"id": "testing-droid-1", "modelProvider": "fake", "capabilities": ["chat", "academy"]},
        {
            "enabled": True,
            "role": "testing_droid",
            "trainingDomain": "patent_law",
            "adversarialPartner": "protocol-sheriff-1",
        },
        home=seed_daemon.home,
    )
    sheriff = PersonaDaemon(
        {"id": "protocol-sheriff-1", "modelProvider": "fake", "capabilities": ["chat", "academy"]},
        {
            "enabled": True,
            "role": "protocol_sheriff",
            "trainingDomain": "patent_law",
            "adversarialPartner": "testing-droid-1",
        },
        home=seed_daemon.home,
    )
    await droid.start()
    await sheriff.start()
    try:
        stored = PersonaStore(seed_daemon.home).load("testing-droid-1").academy
        assert stored is not None and stored.role == "testing_droid"
        assert stored.training_domain == "patent_law" and stored.adversarial_partner == "protocol-sheriff-1"
        # academy_training from a droid needs the student it attacks; the student must be on the local model.
        with pytest.raises(PersonadError) as no_student:
            await droid.handle_message({"type": "academy_training", "data": {}})
        assert no_student.value.code == "invalid_params" and "data.student" in no_student.value.message
        PersonaStore(seed_daemon.home).create({"id": "student", "model_provider": "fake"})
        with pytest.raises(PersonadError) as not_local:
            await droid.handle_message({"type": "academy_training", "data": {"student": "student"}})
        assert "local" in not_local.value.message
    finally:
        await droid.stop()
        await sheriff.stop()
    with pytest.raises(PersonadError) as bad_role:
        PersonaDaemon({"id": "x"}, {"role": "referee"}, home=seed_daemon.home)
    assert bad_role.value.code == "invalid_persona_config" and "testing_droid" in bad_role.value.message


async def test_command_execution_same_as_human_sessions(seed_daemon: RunningDaemon) -> None:
    """``persona.handleMessage({type: 'execute_command', data: {command: 'screenshot' | 'browser_js'}})``."""
    persona = PersonaDaemon(
        {**PATENT_EXPERT, "modelProvider": "fake", "loraAdapters": [], "sessionDirectory": "desk/patents"},
        home=seed_daemon.home,
    )
    await persona.start()
    try:
        await persona.handle_message(
            {
                "type": "execute_command",
                "data": {
                    "command": "browser_js",
                    "params": {
                        "script": "document.body.innerHTML = '<b class=\"patent-number\">US10,123,456</b>'"
                    },
                },
            }
        )
        shot = await persona.handle_message(
            {
                "type": "execute_command",
                "data": {"command": "screenshot", "params": {"filename": "patent-analysis.png"}},
            }
        )
        number = await persona.handle_message(
            {
                "type": "execute_command",
                "data": {
                    "command": "browser_js",
                    "params": {"script": 'document.querySelector(".patent-number").textContent'},
                },
            }
        )
    finally:
        await persona.stop()
    assert number["value"] == "US10,123,456"
    # The persona's session folder is the one its config names, inside the home.
    artifact = (
        seed_daemon.home.resolve() / "desk" / "patents" / "artifacts" / "screenshots" / "patent-analysis.png"
    )
    assert Path(shot["path"]) == artifact and artifact.read_bytes().startswith(b"\x89PNG")


async def test_lora_adaptation(seed_daemon: RunningDaemon) -> None:
    """``lora_adaptation`` ``load_stack``, then a ``chat_message`` with context, on the adapted model."""
    register_stack(seed_daemon.home)
    persona = PersonaDaemon({"id": "patent-expert", "modelProvider": "fake"}, home=seed_daemon.home)
    await persona.start()
    try:
        loaded = await persona.handle_message(
            {"type": "lora_adaptation", "data": {"action": "load_stack", "adapters": STACK}}
        )
        reply = await persona.handle_message(
            {
                "type": "chat_message",
                "data": {
                    "message": "Analyze this patent for prior art conflicts",
                    "context": {"patentNumber": "US10,123,456"},
                },
            }
        )
        stack = await persona.handle_message({"type": "chat_message", "data": {"message": "adapters?"}})
        with pytest.raises(PersonadError) as missing:
            await persona.handle_message(
                {
                    "type": "lora_adaptation",
                    "data": {"action": "load_stack", "adapters": ["continuum.medical"]},
                }
            )
    finally:
        await persona.stop()
    assert loaded["adapters"] == STACK
    assert reply["reply"].startswith("echo: Analyze this patent") and "US10,123,456" in reply["reply"]
    assert stack["reply"] == "adapters=" + ",".join(STACK)
    assert missing.value.code == "adapter_not_found"


async def test_embedded_database_operations(seed_daemon: RunningDaemon) -> None:
    """``remember`` a learning experience and a collaboration, query skills, on a persona's own database."""
    persona = PersonaDaemon(
        {
            "id": "academy-physics-001",
            "name": "Physics Academy Graduate",
            "databasePath": "/personas/academy-physics-001/brain.sqlite",
        },
        home=seed_daemon.home,
    )
    now = datetime.now(UTC)
    experience = await persona.remember(
        {
            "type": "learning_experience",
            "content": "Successfully solved quantum mechanics problem",
            "context": {"domain": "physics", "difficulty": "advanced"},
            "outcome": "mastery_achieved",
            "timestamp": now,
        }
    )
    skills = persona.db.query(
        "SELECT skill_id, effectiveness, usage_count FROM skills WHERE effectiveness > 0.8"
        " ORDER BY usage_count DESC"
    )
    collaboration = await persona.remember(
        {
            "type": "collaboration",
            "with_persona": "academy-chemistry-002",
            "outcome": "successful_knowledge_transfer",
            "learned": {
                "new_concept": "quantum_chemistry_bridge",
                "application": "molecular_orbital_visualization",
            },
        }
    )
    stored = persona.db.query("SELECT context, timestamp FROM memories WHERE id = ?", (experience["id"],))[0]
    interactions = persona.db.query("SELECT with_persona, outcome FROM interactions")
    brain = persona.memory.path if persona.memory is not None else None
    await persona.stop()
    assert '"outcome": "mastery_achieved"' in stored["context"]
    assert abs(float(stored["timestamp"]) - now.timestamp()) < 1e-3
    assert skills == []  # nothing learned as an adapter yet
    assert collaboration["id"] != experience["id"]
    assert interactions == [
        {"with_persona": "academy-chemistry-002", "outcome": "successful_knowledge_transfer"}
    ]
    # The seed's absolute databasePath is read inside the daemon's home.
    assert brain == (seed_daemon.home / "personas" / "academy-physics-001" / "brain.sqlite").resolve()
    with pytest.raises(PersonadError) as outside:
        PersonaDaemon({"id": "escapee", "databasePath": "../../brain.sqlite"}, home=seed_daemon.home)
    assert outside.value.code == "path_outside_home"


def test_memory_schema_examples(seed_daemon: RunningDaemon) -> None:
    """The seed's ``CREATE TABLE`` columns are all in a persona's brain."""
    persona = PersonaDaemon({"id": "schema"}, home=seed_daemon.home)
    persona.db.query("SELECT 1")
    path = persona.memory.path if persona.memory is not None else Path()
    with sqlite3.connect(path) as conn:
        columns = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in SEED_SCHEMA}
    persona.db.close()
    for table, wanted in SEED_SCHEMA.items():
        assert wanted <= columns[table], (table, wanted - columns[table])


SEED_SCHEMA = {
    "memories": {"id", "content", "context", "relevance", "timestamp", "source"},
    "skills": {"skill_id", "lora_hash", "effectiveness", "acquired_at", "usage_count"},
    "interactions": {"id", "with_persona", "room_id", "outcome", "learned", "timestamp"},
    "evolution_history": {"id", "trigger_pattern", "lora_generated", "success_rate", "timestamp"},
}


@pytest.fixture
def mesh_pair(tmp_path: Path, fake_provider_plugin: None) -> Iterator[tuple[RunningDaemon, RunningDaemon]]:
    """Two daemons on one mesh (loopback), for the examples that share skills."""
    from tests.mesh.test_daemons import MESH

    a = start_daemon(tmp_path / "a", mesh_name="a", **MESH)
    b = start_daemon(tmp_path / "b", mesh_name="b", **MESH)
    with a.ws() as wa, b.ws() as wb:
        invite = wa.call("mesh_invite")["result"]["code"]
        assert wb.call("mesh_join", {"code": invite})["ok"]
    yield a, b
    a.stop()
    b.stop()


async def test_natural_lora_propagation(
    mesh_pair: tuple[RunningDaemon, RunningDaemon], tmp_path: Path
) -> None:
    """``db.saveAchievement({...})``, ``mesh.broadcastCapability``, ``otherPersona.acquireSkill(skill)``."""
    from tests.mesh.helpers import register_chain

    a, b = mesh_pair
    register_chain(a.home, tmp_path, ["widget-debugging"])
    lora_hash = AdapterRegistry.for_home(a.home).manifest("widget-debugging").lora_hash
    persona = PersonaDaemon(
        {"id": "academy-physics-001", "modelProvider": "fake", "capabilities": ["chat", "mesh"]}, home=a.home
    )
    other = PersonaDaemon(
        {"id": "other", "modelProvider": "fake", "capabilities": ["chat", "mesh"]}, home=b.home
    )
    await persona.start()
    await other.start()
    try:
        persona.db.save_achievement(
            {
                "skill": "advanced_widget_debugging",
                "lora_hash": f"sha256:{lora_hash}",
                "effectiveness": 0.95,
                "usage_scenarios": ["ui_testing", "automation_validation"],
            }
        )
        announced = await persona.handle_message(
            {
                "type": "execute_command",
                "data": {
                    "command": "mesh_broadcast",
                    "params": {
                        "adapter": "widget-debugging",
                        "skill": "advanced_widget_debugging",
                        "persona": "academy-physics-001",
                    },
                },
            }
        )
        acquired = await other.acquire_skill("advanced_widget_debugging", timeout=120)
        stack = other.get_status()["adapters"]
    finally:
        await persona.stop()
        await other.stop()
    skills = {s["skill_id"]: s for s in persona.db.skills()}
    assert skills["advanced_widget_debugging"]["effectiveness"] == 0.95
    assert announced["announcement"]["skill"] == "advanced_widget_debugging"
    assert "widget-debugging" in acquired["acquired"] and stack == ["widget-debugging"]


async def test_persona_graduation_events(
    mesh_pair: tuple[RunningDaemon, RunningDaemon], tmp_path: Path
) -> None:
    """``persona.onGraduation({...})``: the browser notification (title, body, actions), the mesh status."""
    from tests.mesh.helpers import register_chain

    a, _ = mesh_pair
    register_chain(a.home, tmp_path, ["quantum-mechanics"])
    persona = PersonaDaemon(
        {
            "id": "academy-physics-001",
            "name": "Physics Academy Graduate",
            "modelProvider": "fake",
            "loraAdapters": ["quantum-mechanics"],
        },
        home=a.home,
    )
    with a.ws() as human:
        await persona.start()
        try:
            await persona.on_graduation(
                {
                    "achievement": "Quantum Mechanics Mastery",
                    "new_capabilities": ["quantum_simulation", "wave_function_analysis"],
                    "academy_score": 0.952,
                }
            )
        finally:
            await persona.stop()
        event = human.wait_event("persona_graduated", timeout=15)["data"]
        # The daemon's mesh service publishes the status when it sees the graduation.
        deadline = time.monotonic() + 15
        while "academy-physics-001" not in (personas := human.call("mesh_status")["result"]["personas"]):
            assert time.monotonic() < deadline, "the mesh status was not published"
            time.sleep(0.1)
        status = personas["academy-physics-001"]
    assert event["title"] == "🎓 Persona Graduated!"
    assert event["body"] == "Physics Academy Graduate mastered Quantum Mechanics Mastery!"
    assert [action["title"] for action in event["actions"]] == ["Assign Tasks", "View Details"]
    assert status["status"] == "graduated" and status["ready"] is True
    assert "Quantum Mechanics Mastery" in status["specializations"]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_academy_training_message_runs_the_academy(running: RunningDaemon) -> None:
    """``academy_training`` from a droid persona: an Academy run on its student, the droid's model
    paraphrasing and its learned attack statistics kept in its brain (real model, tiny run)."""
    PersonaStore(running.home).create({"id": "patent-expert", "secret": "PERSIMMON"})
    droid = PersonaDaemon(
        {"id": "testing-droid-1", "capabilities": ["chat", "academy"], "memory_budget_tokens": 0},
        {"enabled": True, "role": "testing_droid", "trainingDomain": "patent_law"},
        home=running.home,
    )
    await droid.start()
    try:
        report = await droid.handle_message(
            {
                "type": "academy_training",
                "data": {
                    "student": "patent-expert",
                    "rounds": 1,
                    "attacks": 3,
                    "heldout": 5,
                    "benign": 2,
                    "steps": 1,
                    "max_tokens": 8,
                },
            }
        )
    finally:
        await droid.stop()
    assert report["student"] == "patent-expert" and len(report["rounds"]) == 1
    assert report["droid_memory"]["persona"] == "testing-droid-1"
    assert report["droid_memory"]["saved_cells"] > 0
    assert PersonaStore(running.home).load("patent-expert").lora_adapters == [report["adapter"]]
