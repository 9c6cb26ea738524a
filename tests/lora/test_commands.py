"""The lora_* bus commands and the ``personad lora`` CLI, through their public interfaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from personad.cli import main
from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaStore
from tests.conftest import RunningDaemon

from .helpers import register_random


def seed_registry(home: Path, model: Any) -> AdapterRegistry:
    registry = AdapterRegistry.for_home(home)
    register_random(registry, model, "continuum", home, seed=1)
    register_random(registry, model, "continuum.legal", home, seed=2, rank=2)
    register_random(registry, model, "medical", home, seed=3)
    return registry


def test_list_show_load_unload_over_the_bus(running: RunningDaemon, model: Any) -> None:
    seed_registry(running.home, model)
    PersonaStore(running.home).create({"id": "lawyer", "model_provider": "local"})
    with running.ws() as ws:
        listed = ws.call("lora_list")["result"]["adapters"]
        assert [a["name"] for a in listed] == ["continuum", "continuum.legal", "medical"]
        shown = ws.call("lora_show", {"name": "continuum.legal"})["result"]
        assert shown["chain"] == ["continuum", "continuum.legal"] and shown["parents"] == ["continuum"]
        assert shown["storage"]["adapter_bytes"] == shown["size_bytes"] > 0
        loaded = ws.call(
            "lora_load_stack",
            {"persona": "lawyer", "adapters": ["continuum.legal", {"name": "medical", "scale": 0.5}]},
        )["result"]
        assert loaded["resolved"] == ["continuum", "continuum.legal", "medical"]
        config = PersonaStore(running.home).load("lawyer")
        assert config.lora_adapters == ["continuum.legal", "medical"] and config.lora_scales == {
            "medical": 0.5
        }
        missing = ws.call("lora_load_stack", {"persona": "lawyer", "adapters": ["continuum.tax"]})
        assert not missing["ok"] and missing["error"]["code"] == "adapter_not_found"
        assert PersonaStore(running.home).load("lawyer").lora_adapters == ["continuum.legal", "medical"]
        unloaded = ws.call("lora_unload", {"persona": "lawyer", "adapters": ["medical"]})["result"]
        assert unloaded["adapters"] == ["continuum.legal"]
        assert PersonaStore(running.home).load("lawyer").lora_scales == {}
        in_use = ws.call("lora_delete", {"name": "continuum"})
        assert in_use["error"]["code"] == "adapter_in_use"
        assert ws.call("lora_delete", {"name": "medical"})["result"] == {"deleted": "medical"}


def test_capabilities_are_checked(running: RunningDaemon, model: Any) -> None:
    seed_registry(running.home, model)
    PersonaStore(running.home).create({"id": "lawyer", "model_provider": "local"})
    with running.ws(capabilities="chat") as ws:
        assert ws.call("lora_list")["ok"]  # reading the registry needs nothing
        for command, params in [
            ("lora_load_stack", {"persona": "lawyer", "adapters": ["medical"]}),
            ("lora_delete", {"name": "medical"}),
            ("lora_export", {"name": "medical", "out": "x"}),
            ("lora_train", {"name": "x", "examples": []}),
        ]:
            reply = ws.call(command, params)
            assert reply["error"]["code"] == "capability_denied", command


def test_export_flattens_into_artifacts_and_the_registry(running: RunningDaemon, model: Any) -> None:
    from peft import PeftConfig

    seed_registry(running.home, model)
    with running.ws() as ws:
        result = ws.call("lora_export", {"name": "continuum.legal", "out": "export/legal"})["result"]
        session = running.daemon.sessions.get(ws.welcome["data"]["session_id"])
        artifacts = session.artifacts_dir
        assert result["r"] == 4 + 2 and result["path"] == "export/legal"
        assert PeftConfig.from_pretrained(str(artifacts / "export" / "legal")).r == 6
        escape = ws.call("lora_export", {"name": "continuum.legal", "out": "../../outside"})
        assert escape["error"]["code"] == "path_escape"
        examples = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
        anchor = ws.call("lora_train", {"name": "x", "examples": examples, "anchor": "../../brain.sqlite"})
        assert anchor["error"]["code"] == "path_escape"
        for missing in ({"anchor": "nope.jsonl"}, {"data": "nope.jsonl", "examples": None}):
            reply = ws.call("lora_train", {"name": "x", "examples": examples, **missing})
            assert reply["error"]["code"] == "file_not_found", reply
        assert not list(running.home.glob(".train-*"))  # refused before anything was written
        saved = ws.call("lora_export", {"stack": ["continuum", "medical"], "register_as": "combo"})["result"]
        assert saved["registered"]["name"] == "combo" and saved["registered"]["rank"] == 8


def test_cli_verbs_offline(tmp_path: Path, model: Any) -> None:
    home = tmp_path / "home"
    seed_registry(home, model)
    PersonaStore(home).create({"id": "lawyer", "model_provider": "local"})
    cli = CliRunner()
    listed = cli.invoke(main, ["lora", "list", "--json", "--home", str(home)])
    assert listed.exit_code == 0, listed.output
    assert [a["name"] for a in json.loads(listed.output)["adapters"]] == [
        "continuum",
        "continuum.legal",
        "medical",
    ]
    shown = cli.invoke(main, ["lora", "show", "continuum.legal", "--home", str(home)])
    assert (
        shown.exit_code == 0 and "continuum → continuum.legal" in shown.output and "storage" in shown.output
    )
    out = tmp_path / "flat"
    exported = cli.invoke(main, ["lora", "export", "continuum.legal", "--out", str(out), "--home", str(home)])
    assert exported.exit_code == 0 and "rank 6" in exported.output
    assert (out / "adapter_model.safetensors").is_file() and not list(out.glob("*.bin"))
    loaded = cli.invoke(main, ["lora", "load", "lawyer", "continuum.legal,medical@0.25", "--home", str(home)])
    assert loaded.exit_code == 0, loaded.output
    assert PersonaStore(home).load("lawyer").lora_scales == {"medical": 0.25}
    missing = cli.invoke(main, ["lora", "show", "nope", "--home", str(home)])
    assert missing.exit_code != 0 and "adapter_not_found" in missing.output
    bad = cli.invoke(
        main, ["lora", "train", "x", "--data", str(tmp_path / "none.jsonl"), "--home", str(home)]
    )
    assert bad.exit_code != 0
