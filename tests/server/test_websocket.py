"""The WebSocket transport: envelopes, errors that keep the socket open, auth, limits."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningDaemon


def test_welcome_and_session(running: RunningDaemon) -> None:
    with running.ws(kind="browser", name="ada") as ws:
        assert ws.welcome["type"] == "welcome"
        info = ws.call("session")
        assert info["ok"] is True and info["type"] == "command_result"
        assert info["result"]["client_id"] == ws.welcome["data"]["client_id"]
        assert info["result"]["kind"] == "browser" and info["result"]["name"] == "ada"
        assert info["result"]["capabilities"] == ["*"]
        assert info["result"]["directory"].startswith(str(running.home / "sessions"))


def test_every_bad_input_gets_a_structured_error_and_socket_stays_open(running: RunningDaemon) -> None:
    with running.ws() as ws:
        ws.send("{not json")
        assert ws.recv()["error"]["code"] == "invalid_json"
        ws.send("[1, 2]")
        assert ws.recv()["error"]["code"] == "invalid_message"
        ws.send({"type": "dance", "id": "d1"})
        reply = ws.recv()
        assert reply == {
            "type": "error",
            "id": "d1",
            "ok": False,
            "error": {"code": "unknown_message_type", "message": reply["error"]["message"], "status": 400},
        }
        ws.send({"type": "execute_command", "id": "e1", "data": {"params": {}}})
        assert ws.recv()["error"]["code"] == "invalid_message"
        assert ws.call("no_such_command")["error"]["code"] == "unknown_command"
        bad = ws.call("chat_history", {"room": "general", "limit": "many"})
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_params"
        assert bad["error"]["details"][0]["loc"] == ["limit"]
        ws.send("x" * (running.daemon.settings.max_message_bytes + 1))
        assert ws.recv()["error"]["code"] == "message_too_large"
        ws.send(b"\xff\xfe binary garbage")
        assert ws.recv()["error"]["code"] == "invalid_json"
        # Still alive and answering after all of that.
        assert ws.call("ping", {"echo": 1})["result"] == {"pong": True, "echo": 1}
        ws.send({"type": "ping", "id": 7})
        assert ws.recv() == {"type": "pong", "id": 7, "data": None}


def test_missing_capability(running: RunningDaemon) -> None:
    with running.ws(capabilities="chat") as ws:
        assert ws.welcome["data"]["capabilities"] == ["chat"]
        denied = ws.call("browser_js", {"script": "1"})
        assert denied["error"]["code"] == "capability_denied"
        assert ws.call("room_join", {"room": "general"})["ok"] is True


@pytest.mark.parametrize("token", ["", "wrong"])
def test_bad_token_is_refused_with_structured_error(running: RunningDaemon, token: str) -> None:
    from websockets.sync.client import connect

    with connect(f"{running.ws_url}?token={token}") as conn:
        message = json.loads(conn.recv(timeout=5))
        assert message["error"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as info:
            conn.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401


def test_bad_session_params_are_refused(running: RunningDaemon) -> None:
    from websockets.sync.client import connect

    with connect(f"{running.ws_url}?token={running.token}&session=../../etc") as conn:
        assert json.loads(conn.recv(timeout=5))["error"]["code"] == "invalid_session_id"
    with connect(f"{running.ws_url}?token={running.token}&kind=persona") as conn:
        assert json.loads(conn.recv(timeout=5))["error"]["code"] == "invalid_kind"
    with connect(f"{running.ws_url}?token={running.token}&kind=persona&persona=ghost") as conn:
        assert json.loads(conn.recv(timeout=5))["error"]["code"] == "persona_not_found"


def test_concurrent_requests_are_matched_by_id(running: RunningDaemon) -> None:
    with running.ws() as ws:
        for i in range(50):
            ws.send({"type": "execute_command", "id": i, "data": {"command": "ping", "params": {"echo": i}}})
        replies = [ws.recv() for _ in range(50)]
        assert sorted(r["id"] for r in replies) == list(range(50))
        assert all(r["result"]["echo"] == r["id"] for r in replies)


def _strict(raw: str | bytes) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"the daemon sent {name}, which is not JSON")

    return json.loads(raw, parse_constant=refuse)


def test_not_strict_json_is_refused_under_its_id(running: RunningDaemon) -> None:
    """NaN/Infinity and lone surrogates parse in Python but are not JSON: refused, with the request's id."""
    with running.ws() as ws:
        envelope = '{"type":"execute_command","id":"%s","data":{"command":"ping","params":{"echo":%s}}}'
        frames = {"n1": "NaN", "n2": "-Infinity", "s1": '"\\ud800"'}
        frames = {request_id: envelope % (request_id, echo) for request_id, echo in frames.items()}
        for request_id, frame in frames.items():
            ws.send(frame)
            reply = _strict(ws.conn.recv(timeout=10))
            assert reply["id"] == request_id and reply["ok"] is False
            assert reply["error"]["code"] == "invalid_json"
        # A well-formed surrogate pair is one emoji, and fine.
        ws.send(
            '{"type":"execute_command","id":"p1","data":{"command":"ping","params":{"echo":"\\ud83d\\ude00"}}}'
        )
        assert _strict(ws.conn.recv(timeout=10))["result"]["echo"] == "\U0001f600"
        ws.send("[" * 5000 + "]" * 5000)
        assert _strict(ws.conn.recv(timeout=10))["error"]["code"] == "invalid_json"
        assert ws.call("ping", {"echo": 2})["result"]["echo"] == 2


def test_non_finite_results_go_out_as_null(running: RunningDaemon) -> None:
    """A result holding NaN (here a page script's) is sent as strict JSON: null, as JSON.stringify does."""
    with running.ws() as ws:
        ws.send(
            {
                "type": "execute_command",
                "id": "js",
                "data": {"command": "browser_js", "params": {"script": "[0/0, 1/0, 1]"}},
            }
        )
        reply = _strict(ws.conn.recv(timeout=60))
        assert reply["ok"] is True, reply
        assert reply["result"]["value"] == [None, None, 1]


def test_errors_keep_their_class_over_the_websocket(running: RunningDaemon) -> None:
    """The Python bus client rebuilds the same error class (and so the CLI exit code) as over HTTP."""
    import asyncio

    from personad.bus.ws_client import BusClient
    from personad.errors import CapabilityDeniedError, NotFoundError, UnknownCommandError

    async def scenario() -> list[BaseException]:
        client = BusClient(running.url, running.token, capabilities="chat,personas")
        await client.connect()
        found: list[BaseException] = []
        for command, params in (
            ("no_such", {}),
            ("persona_show", {"persona": "ghost"}),
            ("browser_js", {"script": "1"}),
        ):
            try:
                await client.call(command, params)
            except Exception as exc:
                found.append(exc)
        await client.close()
        return found

    unknown, missing, denied = asyncio.run(scenario())
    assert type(unknown) is UnknownCommandError and unknown.exit_code == 5
    assert (
        isinstance(missing, NotFoundError) and missing.code == "persona_not_found" and missing.exit_code == 5
    )
    assert type(denied) is CapabilityDeniedError and denied.exit_code == 4
