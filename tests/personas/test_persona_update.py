"""persona_update and persona_logs over HTTP and the WebSocket: changes are checked as persona_create checks
a new persona and saved only when every check passes; a secret left out (or sent back masked) is kept; a
running persona reads the new config at once; its logs come back as tails, masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import RunningDaemon
from tests.personas.conftest import reply_to

API_KEY = "sk-test-0123456789abcdef"
CANARY = "canary-7f3a"


def _call(rd: RunningDaemon, command: str, params: dict[str, Any]) -> dict[str, Any]:
    with rd.http() as http:
        return http.post(f"/api/commands/{command}", json=params).json()


def _ok(rd: RunningDaemon, command: str, params: dict[str, Any]) -> dict[str, Any]:
    reply = _call(rd, command, params)
    assert reply["ok"], reply
    return reply["result"]


def _error(rd: RunningDaemon, command: str, params: dict[str, Any]) -> dict[str, Any]:
    reply = _call(rd, command, params)
    assert reply["ok"] is False, reply
    return reply["error"]


def _create(rd: RunningDaemon, persona_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "id": persona_id,
        "model_provider": "fake",
        "model_config": {"model": "m1", "api_key": API_KEY},
        "secret": CANARY,
        **fields,
    }
    return _ok(rd, "persona_create", body)


def _on_disk(rd: RunningDaemon, persona_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((rd.home / "personas" / persona_id / "persona.json").read_text())
    return data


def test_update_applies_persists_and_keeps_secrets(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "ada", name="Ada", respond_in=["general"])
    result = _ok(
        persona_daemon,
        "persona_update",
        {"persona": "ada", "changes": {"systemPrompt": "Be brief.", "temperature": 0.2, "model": "m2"}},
    )
    assert result["system_prompt"] == "Be brief." and result["temperature"] == 0.2
    assert result["model_config"] == {"model": "m2", "api_key": "***"}  # masked, as persona_show
    assert result["secret"] == "***" and result["process"]["state"] == "stopped"
    assert result["changed"] == ["model_config", "system_prompt", "temperature"]
    assert result["restart_needed"] is False  # not running
    saved = _on_disk(persona_daemon, "ada")
    assert saved["system_prompt"] == "Be brief." and saved["temperature"] == 0.2
    assert saved["model_config"] == {"model": "m2", "api_key": API_KEY}  # the key survived
    assert saved["secret"] == CANARY and "systemPrompt" not in saved
    shown = _ok(persona_daemon, "persona_show", {"persona": "ada"})
    assert shown["system_prompt"] == "Be brief." and shown["stack"] == {"resolved": [], "error": None}

    # What persona_show returned, sent back whole: the masks keep the stored secret and key.
    echo = {k: v for k, v in shown.items() if k not in ("process", "stack")}
    same = _ok(persona_daemon, "persona_update", {"persona": "ada", "changes": echo})
    assert same["changed"] == []
    saved = _on_disk(persona_daemon, "ada")
    assert saved["secret"] == CANARY and saved["model_config"]["api_key"] == API_KEY
    # A new secret does replace it.
    _ok(persona_daemon, "persona_update", {"persona": "ada", "changes": {"secret": "new-canary"}})
    assert _on_disk(persona_daemon, "ada")["secret"] == "new-canary"


def test_bad_changes_are_refused_per_field_and_nothing_is_saved(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "bob")
    before = _on_disk(persona_daemon, "bob")

    error = _error(persona_daemon, "persona_update", {"persona": "bob", "changes": {"temperature": 5}})
    assert error["code"] == "invalid_params"
    assert [d["loc"] for d in error["details"]] == [["changes", "temperature"]]
    error = _error(
        persona_daemon,
        "persona_update",
        {"persona": "bob", "changes": {"max_tokens": 0, "temprature": 0.1, "systemPrompt": "x"}},
    )
    assert error["code"] == "invalid_params"  # the unknown key first: nothing else is looked at
    assert [d["loc"] for d in error["details"]] == [["changes", "temprature"]]
    error = _error(persona_daemon, "persona_update", {"persona": "bob", "changes": {"maxTokens": 0}})
    assert error["details"][0]["loc"] == ["changes", "max_tokens"]

    assert (
        _error(persona_daemon, "persona_update", {"persona": "bob", "changes": {}})["code"]
        == "invalid_params"
    )
    error = _error(
        persona_daemon, "persona_update", {"persona": "bob", "changes": {"lora_adapters": ["nope"]}}
    )
    assert error["code"] == "adapter_not_found"
    error = _error(
        persona_daemon, "persona_update", {"persona": "bob", "changes": {"model_provider": "nope"}}
    )
    assert error["code"] == "unknown_provider"
    error = _error(
        persona_daemon, "persona_update", {"persona": "bob", "changes": {"lora_adapters": ["Bad!"]}}
    )
    assert error["code"] == "invalid_adapter_name"
    error = _error(persona_daemon, "persona_update", {"persona": "nobody", "changes": {"temperature": 1}})
    assert error["code"] == "persona_not_found"

    # The id cannot change (its folder, its session and its brain are named by it); the same id is fine.
    error = _error(persona_daemon, "persona_update", {"persona": "bob", "changes": {"id": "robert"}})
    assert error["code"] == "invalid_params" and error["details"][0]["loc"] == ["changes", "id"]
    assert (
        _ok(persona_daemon, "persona_update", {"persona": "bob", "changes": {"id": "bob"}})["changed"] == []
    )
    assert _on_disk(persona_daemon, "bob") == before
    assert not (persona_daemon.home / "personas" / "robert").exists()


def test_a_running_persona_reads_the_change_and_start_only_fields_ask_for_a_restart(
    persona_daemon: RunningDaemon,
) -> None:
    _create(persona_daemon, "cy", respond_in=["general"], start=True)
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        update = ws.call(
            "persona_update", {"persona": "cy", "changes": {"system_prompt": "You are Cy, a cat."}}
        )
        assert update["ok"], update
        assert update["result"]["restart_needed"] is False  # read per answer
        assert ws.wait_event("persona_updated")["data"] == {"persona": "cy", "changed": ["system_prompt"]}
        sent = ws.call("chat", {"room": "general", "text": "system?"})["result"]["message"]
        reply, _ = reply_to(ws, sent["id"])
        assert reply["text"].startswith("You are Cy, a cat.")  # the fake answers "system?" with the prompt

        restart = ws.call("persona_update", {"persona": "cy", "changes": {"rooms": ["general", "lab"]}})
        assert restart["result"]["restart_needed"] is True and restart["result"]["changed"] == ["rooms"]


def test_logs_are_tails_parsed_and_masked(persona_daemon: RunningDaemon, tmp_path: Path) -> None:
    _create(persona_daemon, "dee")
    empty = _ok(persona_daemon, "persona_logs", {"persona": "dee"})
    assert empty == {"persona": "dee", "process_log": [], "crashes": [], "commands": []}

    _ok(persona_daemon, "persona_start", {"persona": "dee"})
    _ok(persona_daemon, "persona_stop", {"persona": "dee"})
    logs = _ok(persona_daemon, "persona_logs", {"persona": "dee"})
    ran = [r["command"] for r in logs["commands"]]
    assert "persona_ready" in ran and "room_join" in ran
    ready = next(r for r in logs["commands"] if r["command"] == "persona_ready")
    assert ready["ok"] is True and isinstance(ready["duration_ms"], float) and isinstance(ready["ts"], float)

    folder = persona_daemon.home / "personas" / "dee"
    with open(folder / "logs" / "process.log", "a", encoding="utf-8") as fh:
        for i in range(5000):  # far more than asked for: only the tail is read
            fh.write(f"line {i}\n")
        fh.write(f"key {API_KEY} canary {CANARY} auth Bearer abcdefghijkl\n")
    (folder / "logs" / "crashes.log").write_text("2025-01-01T00:00:00 persona dee died (exit code 1)\n")
    record = {"ts": 1.0, "command": "chat", "params": {"text": f"the code is {CANARY}"}, "ok": True}
    with open(folder / "commands.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.write('{"ts": 2.0, "command": "cut')  # a record being written: not returned

    logs = _ok(persona_daemon, "persona_logs", {"persona": "dee", "lines": 3, "commands": 2})
    assert logs["process_log"] == ["line 4998", "line 4999", "key *** canary *** auth Bearer ***"]
    assert logs["crashes"] == ["2025-01-01T00:00:00 persona dee died (exit code 1)"]
    assert len(logs["commands"]) == 1 and logs["commands"][0]["params"] == {"text": "the code is ***"}
    text = json.dumps(logs)
    assert API_KEY not in text and CANARY not in text

    error = _error(persona_daemon, "persona_logs", {"persona": "dee", "lines": 100_000})
    assert error["code"] == "invalid_params" and error["details"][0]["loc"] == ["lines"]
    assert _error(persona_daemon, "persona_logs", {"persona": "nobody"})["code"] == "persona_not_found"


def test_sessions_without_the_personas_capability_are_refused(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "eve")
    with persona_daemon.ws(capabilities="chat") as ws:
        for command, params in (
            ("persona_update", {"persona": "eve", "changes": {"temperature": 0.1}}),
            ("persona_logs", {"persona": "eve"}),
        ):
            reply = ws.call(command, params)
            assert reply["ok"] is False and reply["error"]["code"] == "capability_denied", reply
    assert _on_disk(persona_daemon, "eve")["temperature"] == 0.7
