"""The seed-shaped Python API: PersonaDaemon(config).start(), handle_message(), stop()."""

from __future__ import annotations

import pytest

from personad.errors import BadRequestError, PersonadError, UnavailableError
from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaConfig, PersonaStore
from personad.personas.persona import PersonaDaemon
from tests.conftest import RunningDaemon
from tests.fakes.fake_provider import FakeProvider
from tests.lora.helpers import register_random, tiny_model


async def test_handle_message_types(persona_daemon: RunningDaemon, tmp_path: object) -> None:
    registry = AdapterRegistry.for_home(persona_daemon.home)
    model = tiny_model()
    for seed, name in enumerate(["continuum", "continuum.legal", "continuum.legal.patent"]):
        register_random(registry, model, name, persona_daemon.home, seed=seed)
    register_random(registry, model, "continuum.legal.patent.uspto", persona_daemon.home, seed=7)
    config = PersonaStore(persona_daemon.home).create(
        {
            "id": "patent-expert",
            "name": "USPTO Patent Specialist",
            "model_provider": "fake",
            "lora_adapters": ["continuum.legal"],
            "capabilities": ["chat", "browser_js"],
        }
    )
    persona = PersonaDaemon(config, home=persona_daemon.home, provider=FakeProvider())
    status = await persona.start()
    try:
        assert status["state"] == "running" and status["session"]["kind"] == "persona"
        assert status["session"]["capabilities"] == ["browser_js", "chat"]
        result = await persona.handle_message(
            {"type": "execute_command", "data": {"command": "browser_js", "params": {"script": "6*7"}}}
        )
        assert result["value"] == 42
        with pytest.raises(PersonadError) as denied:
            await persona.handle_message({"type": "execute_command", "data": {"command": "file_list"}})
        assert denied.value.code == "capability_denied"

        reply = await persona.handle_message(
            {"type": "chat_message", "data": {"message": "Analyze this patent", "context": {"n": "US10"}}}
        )
        assert reply["reply"].startswith("echo: Analyze this patent") and '"n": "US10"' in reply["reply"]
        posted = await persona.handle_message(
            {"type": "chat_message", "data": {"message": "hi", "room": "general"}}
        )
        assert posted["message"]["sender"]["session_id"] == "patent-expert"

        stack = ["continuum.legal", "continuum.legal.patent", "continuum.legal.patent.uspto"]
        loaded = await persona.handle_message(
            {"type": "lora_adaptation", "data": {"action": "load_stack", "adapters": stack}}
        )
        assert loaded == {"adapters": stack, "scales": {}}
        assert PersonaStore(persona_daemon.home).load("patent-expert").lora_adapters == stack
        adapters = await persona.handle_message({"type": "chat_message", "data": {"message": "adapters?"}})
        assert adapters["reply"] == "adapters=" + ",".join(stack)  # the stack rides on every request
        unloaded = await persona.handle_message(
            {
                "type": "lora_adaptation",
                "data": {"action": "unload", "adapters": ["continuum.legal.patent.uspto"]},
            }
        )
        assert unloaded["adapters"] == stack[:2]
        with pytest.raises(PersonadError) as bad:
            await persona.handle_message(
                {"type": "lora_adaptation", "data": {"action": "load_stack", "adapters": ["Bad Name"]}}
            )
        assert bad.value.code == "invalid_adapter_name"
        with pytest.raises(PersonadError) as missing:
            await persona.handle_message(
                {"type": "lora_adaptation", "data": {"action": "load_stack", "adapters": ["ghost.skill"]}}
            )
        assert missing.value.code == "adapter_not_found"
        scaled = await persona.handle_message(
            {
                "type": "lora_adaptation",
                "data": {"action": "load_stack", "adapters": [{"name": "continuum.legal", "scale": 0.5}]},
            }
        )
        assert scaled == {"adapters": ["continuum.legal"], "scales": {"continuum.legal": 0.5}}
        with pytest.raises(PersonadError) as no_cap:  # training needs the 'lora' capability
            await persona.handle_message(
                {"type": "lora_adaptation", "data": {"action": "create_adapter", "name": "x", "examples": []}}
            )
        assert no_cap.value.code == "capability_denied"
        assert (await persona.handle_message({"type": "get_status"}))["turns"] == 3
        with pytest.raises(BadRequestError) as unknown:
            await persona.handle_message({"type": "dance"})
        assert unknown.value.code == "unknown_message_type"
    finally:
        await persona.stop()
    assert persona.get_status()["state"] == "stopped"


async def test_start_without_a_daemon_says_how_to_fix(tmp_path: object) -> None:
    persona = PersonaDaemon(PersonaConfig(id="lonely", model_provider="fake"), provider=FakeProvider())
    with pytest.raises(UnavailableError) as info:
        await persona.start()
    assert info.value.code == "daemon_not_running"


async def test_periodic_evolve_runs_when_new_experiences_arrive(persona_daemon: RunningDaemon) -> None:
    import asyncio

    config = PersonaStore(persona_daemon.home).create(
        {"id": "learner", "model_provider": "fake", "evolve_every_s": 0.05}
    )
    persona = PersonaDaemon(config, home=persona_daemon.home, provider=FakeProvider())
    calls: list[int] = []

    async def evolve(*, steps: int = 30) -> dict[str, object]:
        calls.append(steps)
        if len(calls) == 2:
            raise UnavailableError("no inference here", code="inference_unavailable")
        return {"evolved": False, "reason": "measured"}

    persona.evolve_capabilities = evolve  # type: ignore[method-assign]  # the real one trains (slow tests)

    async def learn(first: int, n: int) -> None:  # one transaction: the trigger sees all n or none
        memories = [
            {
                "type": "learning_experience",
                "content": f"c{i}",
                "context": {"domain": "colors", "prompt": f"colour {i}?", "answer": f"blue {i}"},
            }
            for i in range(first, first + n)
        ]
        await asyncio.to_thread(persona.db.remember_many, memories)

    async def settle() -> None:
        await asyncio.sleep(0.4)  # several periods

    await persona.start()
    try:
        await settle()
        assert calls == []  # nothing teachable yet
        await learn(0, 3)
        await settle()
        assert calls == []  # too few to learn from (evolve needs 4 in one domain)
        await learn(3, 1)
        await persona.remember({"type": "fact", "content": "not a learning experience"})
        await settle()
        assert len(calls) == 1  # once for the new experiences, not again for the same ones
        await learn(4, 5)
        await settle()
        assert len(calls) == 2 and persona.get_status()["state"] == "running"  # a failure is not fatal
        assert persona.evolutions[0]["reason"] == "measured" and persona.evolutions[0]["experiences"] == 4
        assert persona.evolutions[1]["error"]["code"] == "inference_unavailable"
    finally:
        await persona.stop()
    assert persona._evolver is None


async def test_periodic_evolve_records_timeouts_and_bugs_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bus timeout (the client's WaitTimeoutError) and a bug used to end the trigger silently."""
    import asyncio
    import logging

    persona = PersonaDaemon(PersonaConfig(id="learner", model_provider="fake"), provider=FakeProvider())
    counts = [4, 5, 6, 7]
    from personad.errors import WaitTimeoutError

    failures: list[BaseException | None] = [WaitTimeoutError("no reply in time"), KeyError("prompt"), None]

    def teachable() -> int:
        count = counts[0]
        if len(counts) > 1:
            counts.pop(0)
        return count

    async def evolve(*, steps: int = 30) -> dict[str, object]:
        failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        return {"evolved": False, "reason": "measured"}

    persona._teachable_experiences = teachable  # type: ignore[method-assign]
    persona.evolve_capabilities = evolve  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="personad.personas.persona"):
        task = asyncio.create_task(persona._evolve_periodically(0.01))
        try:
            for _ in range(200):
                if len(persona.evolutions) >= 3:
                    break
                await asyncio.sleep(0.01)
            assert not task.done()
        finally:
            task.cancel()
    assert [e["experiences"] for e in persona.evolutions[:3]] == [4, 5, 6]
    assert persona.evolutions[0]["error"]["code"] == "client_timeout"
    assert persona.evolutions[1]["error"] == {
        "code": "evolve_failed",
        "message": "KeyError: 'prompt'",
        "status": 500,
    }
    assert persona.evolutions[2]["reason"] == "measured"
    bug = [r for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert len(bug) == 1 and bug[0].exc_info is not None  # logged with its traceback


async def test_a_command_the_bus_does_not_answer_in_time_is_an_observation() -> None:
    from personad.errors import WaitTimeoutError
    from personad.models.base import ChatMessage

    class SlowBus:
        async def call(self, command: str, params: object = None, timeout: float = 300) -> dict[str, object]:
            raise WaitTimeoutError(f"no reply to {command!r} within {timeout:g} s")  # as BusClient.call does

    persona = PersonaDaemon(PersonaConfig(id="asker", model_provider="fake"), provider=FakeProvider())
    persona.bus = SlowBus()  # type: ignore[assignment]
    result = await persona.run_turn([ChatMessage("user", 'run:fs_read {"path": "notes.txt"}')])
    assert result.observations == [
        {
            "command": "fs_read",
            "ok": False,
            "outcome": {
                "code": "client_timeout",
                "message": "no reply to 'fs_read' within 300 s",
                "status": 504,
            },
        }
    ]
    assert "client_timeout" in result.text  # the model saw the failure and answered
