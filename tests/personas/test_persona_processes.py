"""Personas as supervised OS processes on the bus, answering through the same chat command as humans."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import RunningDaemon
from tests.personas.conftest import reply_to, wait_for


def _create(rd: RunningDaemon, persona_id: str, **fields: Any) -> dict[str, Any]:
    body = {"id": persona_id, "model_provider": "fake", "start": True, **fields}
    with rd.http() as http:
        response = http.post("/api/commands/persona_create", json=body).json()
    assert response["ok"], response
    return response["result"]


def test_persona_runs_in_its_own_process_with_exactly_its_capabilities(persona_daemon: RunningDaemon) -> None:
    created = _create(persona_daemon, "bot", name="Bot", capabilities=["chat", "browser_js"])
    process = created["process"]
    assert process["state"] == "running" and process["pid"] not in (None, os.getpid())
    session = persona_daemon.daemon.sessions.get("bot")
    assert session.kind == "persona" and session.capabilities == {"chat", "browser_js"}
    assert session.directory == persona_daemon.home / "personas" / "bot"
    assert "bot" in persona_daemon.daemon.rooms.members("general")  # joined its configured room
    with persona_daemon.http() as http:
        listed = http.post("/api/commands/persona_list").json()["result"]["personas"]
    assert [(p["id"], p["process"]["state"]) for p in listed] == [("bot", "running")]


def test_mention_gets_a_streamed_answer_through_chat(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "bot")
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        sent = ws.call("chat", {"room": "general", "text": "hello there @bot how are you"})["result"][
            "message"
        ]
        reply, deltas = reply_to(ws, sent["id"])
        assert reply["text"] == "echo: ada: hello there @bot how are you"
        assert reply["sender"] == {
            "session_id": "bot",
            "client_id": reply["sender"]["client_id"],
            "kind": "persona",
            "name": "bot",
        }
        assert len(deltas) > 3 and "".join(deltas) == reply["text"]
        assert reply["meta"]["usage"]["completion_tokens"] == len(deltas)
        # Not addressed: no answer.
        quiet = ws.call("chat", {"room": "general", "text": "just humans talking"})["result"]["message"]
        with pytest.raises(TimeoutError):
            reply_to(ws, quiet["id"], timeout=1.5)


def test_respond_in_and_direct_rooms(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "helper", respond_in=["help"], rooms=["general"])
    with persona_daemon.ws(name="bo") as ws:
        ws.call("room_create", {"room": "help", "invite": ["helper"]})
        sent = ws.call("chat", {"room": "help", "text": "anyone?"})["result"]["message"]
        assert reply_to(ws, sent["id"])[0]["text"] == "echo: bo: anyone?"
        ws.call("room_create", {"room": "dm-bo-helper", "direct": True, "invite": ["helper"]})
        sent = ws.call("chat", {"room": "dm-bo-helper", "text": "private question"})["result"]["message"]
        assert sent["direct"] is True
        assert reply_to(ws, sent["id"])[0]["text"] == "echo: bo: private question"


def test_model_commands_run_through_the_bus_and_come_back_as_observations(
    persona_daemon: RunningDaemon,
) -> None:
    _create(persona_daemon, "doer", capabilities=["chat", "browser_js"], respond_in=["general"])
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        ask = 'run:browser_js {"script": "6*7"}'
        sent = ws.call("chat", {"room": "general", "text": ask})["result"]["message"]
        reply, deltas = reply_to(ws, sent["id"])
        assert reply["text"].startswith("running it\nobserved [RESULT:browser_js]")
        assert '"value": 42' in reply["text"]
        assert reply["meta"]["observations"] == 1
        assert "[CMD:" not in "".join(deltas)  # command lines are not streamed to people
        # The persona's session log holds the command it ran.
        log = (persona_daemon.home / "personas" / "doer" / "commands.jsonl").read_text().splitlines()
        assert any(json.loads(line)["command"] == "browser_js" for line in log)

        # Outside its capabilities: refused by the bus, and the refusal reaches the model.
        sent = ws.call("chat", {"room": "general", "text": "run:file_list {}"})["result"]["message"]
        reply, _ = reply_to(ws, sent["id"])
        assert "[ERROR:file_list]" in reply["text"] and "capability_denied" in reply["text"]
        # A malformed command line is an observation too; the persona keeps working.
        sent = ws.call("chat", {"room": "general", "text": "badcmd"})["result"]["message"]
        reply, _ = reply_to(ws, sent["id"])
        assert "invalid_command_syntax" in reply["text"]
        sent = ws.call("chat", {"room": "general", "text": "still there?"})["result"]["message"]
        assert reply_to(ws, sent["id"])[0]["text"] == "echo: ada: still there?"


def test_native_tool_calling_provider(persona_daemon: RunningDaemon) -> None:
    _create(
        persona_daemon, "tooly", model_provider="fake-tools", capabilities=["chat"], respond_in=["general"]
    )
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        sent = ws.call("chat", {"room": "general", "text": 'run:screenshot {"full_page": true}'})
        reply, _ = reply_to(ws, sent["result"]["message"]["id"])
        assert reply["text"].startswith("observed ") and "capability_denied" in reply["text"]


def test_sigkill_restarts_the_persona_and_others_keep_working(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "victim", respond_in=["general"])
    _create(persona_daemon, "survivor")
    supervisor = persona_daemon.daemon.personas
    old_pid = supervisor.status("victim")["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: supervisor.status("victim")["restarts"] == 1 and supervisor.status("victim")["pid"])
    wait_for(
        lambda: (
            persona_daemon.daemon.sessions.find("victim") is not None
            and persona_daemon.daemon.sessions.find("victim").clients
        )
    )
    status = supervisor.status("victim")
    assert status["pid"] != old_pid and status["last_exit"]["code"] == -signal.SIGKILL
    crashes = (persona_daemon.home / "personas" / "victim" / "logs" / "crashes.log").read_text()
    assert "signal 9" in crashes
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        sent = ws.call("chat", {"room": "general", "text": "@survivor @victim ping"})["result"]["message"]
        texts = set()
        for _ in range(2):  # both answer: victim (respond_in general) after its restart, survivor (mentioned)
            deadline_reply, _ = reply_to(ws, sent["id"])
            texts.add((deadline_reply["sender"]["session_id"], deadline_reply["text"]))
        assert texts == {
            ("victim", "echo: ada: @survivor @victim ping"),
            ("survivor", "echo: ada: @survivor @victim ping"),
        }
        assert ws.call("ping")["ok"]


def test_stop_start_and_delete(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "short")
    pid = persona_daemon.daemon.personas.status("short")["pid"]
    with persona_daemon.http() as http:
        stopped = http.post("/api/commands/persona_stop", json={"persona": "short"}).json()["result"]
        assert stopped["process"]["state"] == "stopped" and stopped["process"]["pid"] is None
        assert not os.path.exists(f"/proc/{pid}")
        again = http.post("/api/commands/persona_start", json={"persona": "short"}).json()["result"]
        assert again["process"]["state"] == "running"
        conflict = http.post("/api/commands/persona_start", json={"persona": "short"}).json()
        assert conflict["error"]["code"] == "persona_running"
        assert http.post("/api/commands/persona_delete", json={"persona": "short"}).json()["ok"]
        assert not (persona_daemon.home / "personas" / "short").exists()
        missing = http.post("/api/commands/persona_show", json={"persona": "short"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "persona_not_found"
        bad = http.post("/api/commands/persona_create", json={"id": "x", "model_provider": "nope"}).json()
        assert bad["error"]["code"] == "unknown_provider"


def test_persona_tokens_open_only_their_own_persona(persona_daemon: RunningDaemon) -> None:
    _create(persona_daemon, "one")
    _create(persona_daemon, "two")
    token = persona_daemon.daemon.personas._procs["one"].token
    with connect(f"{persona_daemon.ws_url}?token={token}&kind=persona&persona=two") as conn:
        assert json.loads(conn.recv(timeout=5))["error"]["code"] == "wrong_persona"
    with connect(f"{persona_daemon.ws_url}?token={token}&kind=api") as conn:
        assert json.loads(conn.recv(timeout=5))["error"]["code"] == "invalid_kind"
    assert (
        httpx.post(
            f"{persona_daemon.url}/api/commands/ping",
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 401
    )
    with connect(f"{persona_daemon.ws_url}?token={token}") as conn:  # its own session, nothing more
        welcome = json.loads(conn.recv(timeout=5))
        assert welcome["data"]["session_id"] == "one" and welcome["data"]["kind"] == "persona"


async def test_close_logs_a_persona_that_failed_to_stop(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import types

    from personad.personas.supervisor import PersonaProcess, PersonaSupervisor

    supervisor = PersonaSupervisor(types.SimpleNamespace(home=tmp_path))  # type: ignore[arg-type]
    supervisor._procs = {"calm": PersonaProcess("calm"), "stuck": PersonaProcess("stuck")}
    stopped: list[str] = []

    async def stop(persona_id: str) -> dict[str, Any]:
        if persona_id == "stuck":
            raise OSError("the process table is full")
        stopped.append(persona_id)
        return {}

    supervisor.stop = stop  # type: ignore[method-assign]
    await supervisor.close()  # shutting down goes on
    assert stopped == ["calm"]
    failed = [r for r in caplog.records if "stuck" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
