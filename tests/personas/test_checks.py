"""A persona's stack is checked when it is set: adapters that do not exist and providers that cannot apply
them are refused at persona_create and lora_load_stack, never discovered inside the first answer."""

from __future__ import annotations

from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon
from tests.lora.helpers import register_random, tiny_model


def test_create_refuses_an_adapter_that_is_not_in_the_registry(persona_daemon: RunningDaemon) -> None:
    with persona_daemon.ws() as ws:
        reply = ws.call(
            "persona_create", {"id": "p", "model_provider": "fake", "lora_adapters": ["continuum.nothing"]}
        )
        assert reply["error"]["code"] == "adapter_not_found", reply
        assert "continuum.nothing" in reply["error"]["message"]
        assert ws.call("persona_list")["result"]["personas"] == []  # nothing half-created


def test_create_refuses_a_stack_on_a_provider_that_cannot_apply_it(persona_daemon: RunningDaemon) -> None:
    registry = AdapterRegistry.for_home(persona_daemon.home)
    register_random(registry, tiny_model(), "continuum", persona_daemon.home, seed=0)
    with persona_daemon.ws() as ws:
        for provider in ("anthropic", "openai"):
            reply = ws.call(
                "persona_create", {"id": "remote", "modelProvider": provider, "loraAdapters": ["continuum"]}
            )
            assert reply["error"]["code"] == "adapters_unsupported", reply
            assert "lora_serving" in reply["error"]["message"]
        served = ws.call(
            "persona_create",
            {
                "id": "served",
                "model_provider": "openai",
                "model_config": {"base_url": "http://127.0.0.1:9/v1", "lora_serving": "model"},
                "lora_adapters": ["continuum"],
            },
        )
        assert served["ok"], served
        # Changing the stack is checked the same way, for a persona that exists.
        assert ws.call("persona_create", {"id": "claude", "model_provider": "anthropic"})["ok"]
        changed = ws.call("lora_load_stack", {"persona": "claude", "adapters": ["continuum"]})
        assert changed["error"]["code"] == "adapters_unsupported"
        missing = ws.call("lora_load_stack", {"persona": "served", "adapters": ["continuum.gone"]})
        assert missing["error"]["code"] == "adapter_not_found"
        assert ws.call("persona_show", {"persona": "served"})["result"]["lora_adapters"] == ["continuum"]


def test_session_directory_and_database_path_are_honoured_inside_the_home(
    persona_daemon: RunningDaemon,
) -> None:
    home = persona_daemon.home.resolve()
    with persona_daemon.ws() as ws:
        made = ws.call(
            "persona_create",
            {
                "id": "placed",
                "model_provider": "fake",
                "sessionDirectory": "desks/placed",
                "databasePath": "/brains/placed.sqlite",
            },
        )
        assert made["ok"], made
        assert made["result"]["session_directory"] == str(home / "desks" / "placed")
        assert made["result"]["database_path"] == str(home / "brains" / "placed.sqlite")
        remembered = ws.call("remember", {"persona": "placed", "memory": {"type": "fact", "content": "hi"}})
        assert remembered["ok"], remembered
        assert (home / "brains" / "placed.sqlite").is_file()
        assert (home / "desks" / "placed" / "artifacts").is_dir()
        for field in ("session_directory", "database_path"):
            escape = ws.call(
                "persona_create", {"id": "out", "model_provider": "fake", field: "../../elsewhere"}
            )
            assert escape["error"]["code"] == "path_outside_home", escape
            assert "inside" in escape["error"]["message"]
