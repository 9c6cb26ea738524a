"""The mesh over the bus and the CLI: off by default, capability-checked, graduation publishes the skill."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from personad.academy.graduation import graduate
from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon, start_daemon

from .helpers import TINY_BASE, register_chain
from .test_daemons import MESH, ok, wait_until

PERSONAD = [sys.executable, "-m", "personad.cli"]


@pytest.fixture
def pair(tmp_path: Path, fake_provider_plugin: None) -> Iterator[tuple[RunningDaemon, RunningDaemon]]:
    a = start_daemon(tmp_path / "a", mesh_name="a", **MESH)
    b = start_daemon(tmp_path / "b", mesh_name="b", **MESH)
    yield a, b
    a.stop()
    b.stop()


def test_the_mesh_is_off_by_default(running: RunningDaemon) -> None:
    with running.http() as http:
        assert http.post("/api/commands/mesh_status", json={}).json() == {
            "ok": True,
            "result": {"enabled": False},
        }
        reply = http.post("/api/commands/mesh_peers", json={})
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "mesh_disabled"
        assert "--mesh" in reply.json()["error"]["message"]


def test_changing_the_mesh_needs_the_mesh_capability(pair: tuple[RunningDaemon, RunningDaemon]) -> None:
    a, _ = pair
    with a.http(**{"X-Personad-Capabilities": "chat"}) as http:
        assert http.post("/api/commands/mesh_status", json={}).json()["result"]["enabled"] is True
        for command, params in [
            ("mesh_invite", {}),
            ("mesh_join", {"code": "pdmesh1-nothing"}),
            ("mesh_broadcast", {"adapter": "legal"}),
            ("mesh_acquire", {"skill": "legal"}),
            ("mesh_rotate_key", {}),
        ]:
            reply = http.post(f"/api/commands/{command}", json=params).json()
            assert reply["error"]["code"] == "capability_denied", (command, reply)


def test_bad_input_gets_its_own_error(pair: tuple[RunningDaemon, RunningDaemon]) -> None:
    a, _ = pair
    with a.ws() as ws:
        assert ws.call("mesh_join", {"code": "pdmesh1-garbage!"})["error"]["code"] == "mesh_invite_invalid"
        assert (
            ws.call("mesh_acquire", {"skill": "nobody.has.this", "wait_s": 0})["error"]["code"]
            == "mesh_skill_not_found"
        )
        assert ws.call("mesh_broadcast", {"adapter": "missing"})["error"]["code"] == "adapter_not_found"
        assert ws.call("mesh_broadcast", {"adapter": "Bad Name"})["error"]["code"] == "invalid_adapter_name"
        ok(ws.call("persona_create", {"id": "wordy", "model_provider": "fake", "capabilities": ["chat"]}))
        huge = {"persona": "wordy", "status": "graduated", "specializations": ["x" * 200] * 8}
        assert ws.call("mesh_persona_status", huge)["error"]["code"] == "mesh_record_too_large"


def test_graduation_publishes_the_skill(pair: tuple[RunningDaemon, RunningDaemon], tmp_path: Path) -> None:
    a, b = pair
    with a.ws() as wa, b.ws() as wb:
        ok(wb.call("mesh_join", {"code": ok(wa.call("mesh_invite"))["code"]}))
        ok(wa.call("persona_create", {"id": "student", "model_provider": "fake", "capabilities": ["chat"]}))
        register_chain(a.home, tmp_path, ["defense-legal-student"])
        graduation = graduate(
            a.home,
            "student",
            achievement="academy:legal",
            lora_name="defense-legal-student",
            academy_score=0.975,
            new_capabilities=[],
        )
        ok(wa.call("persona_graduated", {"persona": "student", "graduation": graduation}))
        announced = wb.wait_event("mesh_skill_announced", timeout=15)["data"]
        assert announced["skill"] == "academy:legal" and announced["adapter"] == "defense-legal-student"
        assert announced["effectiveness"] == 0.975 and announced["persona"] == "student"
        status = ok(wa.call("mesh_status"))
        assert status["personas"]["student"] == {
            "status": "graduated",
            "ready": True,
            "specializations": ["academy:legal"],
        }
        # B's persona acquires it by skill id; each answer with it counts a use in its brain.
        ok(wb.call("persona_create", {"id": "clerk", "model_provider": "fake", "capabilities": ["chat"]}))
        result = ok(wb.call_job("mesh_acquire", {"skill": "academy:legal", "persona": "clerk"}))
        assert result["stack"] == ["defense-legal-student"]
        lora_hash = AdapterRegistry.for_home(a.home).manifest("defense-legal-student").lora_hash
        skills = {s["skill_id"]: s for s in b.daemon.brain("clerk").skills()}
        assert skills["academy:legal"]["lora_hash"] == lora_hash


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PERSONAD, "mesh", *args, "--home", str(home)], capture_output=True, text=True, timeout=120
    )


def test_the_mesh_verbs(pair: tuple[RunningDaemon, RunningDaemon], tmp_path: Path) -> None:
    a, b = pair
    code = cli(a.home, "invite").stdout.strip()
    assert code.startswith("pdmesh1-")
    joined = cli(b.home, "join", code)
    assert joined.returncode == 0 and "joined" in joined.stdout
    wait_until(lambda: json.loads(cli(a.home, "peers", "--json").stdout)["peers"], 10, "a knows b")
    register_chain(a.home, tmp_path, ["legal"])
    assert "announced legal" in cli(a.home, "broadcast", "legal", "--persona", "scholar").stdout
    wait_until(lambda: "legal" in cli(b.home, "skills").stdout, 10, "b lists legal")
    acquired = cli(b.home, "acquire", "legal")
    assert acquired.returncode == 0, acquired.stderr
    assert "acquired legal" in acquired.stdout
    status = json.loads(cli(b.home, "status", "--json").stdout)
    assert status["seeding"] == ["legal"] and status["base_model_sha256"] == TINY_BASE
    missing = cli(b.home, "acquire", "nothing.here", "--wait-for", "0.5")
    assert missing.returncode == 5 and "mesh_skill_not_found" in missing.stderr
    rotated = cli(a.home, "rotate-key", "--json")
    assert json.loads(rotated.stdout)["new"] != json.loads(rotated.stdout)["old"]


async def test_a_persona_acquires_a_skill_and_its_uses_are_counted(
    pair: tuple[RunningDaemon, RunningDaemon], tmp_path: Path
) -> None:
    from personad.personas.config import PersonaStore
    from personad.personas.persona import PersonaDaemon
    from tests.fakes.fake_provider import FakeProvider

    a, b = pair
    with a.http() as ha, b.http() as hb:
        code = ha.post("/api/commands/mesh_invite", json={}).json()["result"]["code"]
        assert hb.post("/api/commands/mesh_join", json={"code": code}).json()["ok"]
        register_chain(a.home, tmp_path, ["legal"])
        assert ha.post("/api/commands/mesh_broadcast", json={"adapter": "legal"}).json()["ok"]
    config = PersonaStore(b.home).create(
        {"id": "clerk", "model_provider": "fake", "capabilities": ["chat", "mesh"]}
    )
    clerk = PersonaDaemon(config, home=b.home, provider=FakeProvider())
    await clerk.start()
    try:
        result = await clerk.acquire_skill("legal")
        assert result["persona"] == "clerk" and result["stack"] == ["legal"]
        assert clerk.config.lora_adapters == ["legal"]
        for _ in range(2):
            reply = await clerk.handle_message({"type": "chat_message", "data": {"message": "adapters?"}})
            assert reply["reply"] == "adapters=legal"
        skills = {s["skill_id"]: s for s in clerk.db.skills()}
        assert skills["legal"]["usage_count"] == 2  # each answer given with the adapter is one use
    finally:
        await clerk.stop()
