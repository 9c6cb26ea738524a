"""Each defect the fuzz found (and the hardening issue listed), with the fixed input that once failed.

They were xfailed while the fixes were under way; every one is fixed now, so these are plain regression tests
and known_defects.KNOWN is empty (the fuzz tolerates nothing).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from personad.bus.ws_client import BusClient
from personad.errors import NotFoundError, PersonadError
from tests.fuzz.checks import check_error_shape, check_no_leaks, strict_loads
from tests.fuzz.conftest import Fuzz, RawWs, open_ws
from tests.fuzz.names import PERSONA


def ws_reply(fuzz: Fuzz, command: str, params_json: str, timeout: float = 30) -> dict[str, Any]:
    """One execute_command over a fresh socket (the raw params text may hold NaN or \\ud800 escapes)."""
    frame = f'{{"type":"execute_command","id":"k","data":{{"command":"{command}","params":{params_json}}}}}'
    with open_ws(fuzz, session="fuzz-known") as ws:
        reply = ws.exchange(frame, "k", timeout=timeout)  # strict JSON, no leaks, one reply, still alive
    if reply["ok"] is False:
        check_error_shape(reply["error"], json.dumps(reply))  # no internal_error
    return reply


def http_reply(fuzz: Fuzz, command: str, body: str | bytes) -> httpx.Response:
    with fuzz.rd.http(session="fuzz-known") as client:
        response = client.post(f"/api/commands/{command}", content=body)
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:300]}"
    reply = strict_loads(response.text)
    check_no_leaks(response.text, body if isinstance(body, str) else "")
    if not reply["ok"]:
        check_error_shape(reply["error"], response.text)
    return response


NONFINITE = [
    ("ping", '{"echo": Infinity}'),
    ("ping", '{"echo": [NaN, -Infinity]}'),
    ("browser_js", '{"script": "NaN"}'),
    ("browser_js", '{"script": "[1/0, -1/0]"}'),
    ("brain_query", f'{{"persona": "{PERSONA}", "sql": "SELECT 1e999 AS big"}}'),
]


@pytest.mark.parametrize(("command", "params"), NONFINITE)
def test_ws_nonfinite_numbers_never_go_out(fuzz: Fuzz, command: str, params: str) -> None:
    ws_reply(fuzz, command, params)


@pytest.mark.parametrize(("command", "params"), [("ping", '{"echo": "\\ud800"}')])
def test_http_lone_surrogate_echo(fuzz: Fuzz, command: str, params: str) -> None:
    http_reply(fuzz, command, params)


@pytest.mark.parametrize("content", ["\\u0080", "\\u00e9==", "💥"])
def test_file_write_invalid_base64(fuzz: Fuzz, content: str) -> None:
    params = f'{{"path": "b.bin", "content": "{content}", "encoding": "base64"}}'
    ws_reply(fuzz, "file_write", params)
    http_reply(fuzz, "file_write", params)


NAMES = ["x" * 300, "d/" + "y" * 256]


@pytest.mark.parametrize("command", ["file_write", "file_read", "file_list"])
@pytest.mark.parametrize("name", NAMES)
def test_file_names(fuzz: Fuzz, command: str, name: str) -> None:
    params = f'{{"path": "{name}", "content": "x"}}' if command == "file_write" else f'{{"path": "{name}"}}'
    ws_reply(fuzz, command, params)
    http_reply(fuzz, command, params)


def test_lora_export_long_out_name(fuzz: Fuzz) -> None:
    ws_reply(fuzz, "lora_export", '{"stack": [], "out": "' + "o" * 300 + '"}')


@pytest.mark.parametrize(
    ("command", "params"),
    [
        ("lora_load_stack", f'{{"persona": "{PERSONA}", "adapters": [""]}}'),
        ("lora_load_stack", f'{{"persona": "{PERSONA}", "adapters": ["{"a" * 201}"]}}'),
        ("lora_export", '{"stack": [""], "register_as": "x"}'),
    ],
)
def test_lora_stack_bare_names_are_invalid_params(fuzz: Fuzz, command: str, params: str) -> None:
    ws_reply(fuzz, command, params)
    http_reply(fuzz, command, params)


def test_file_write_under_a_file_is_a_clear_error(fuzz: Fuzz) -> None:
    assert ws_reply(fuzz, "file_write", '{"path": "plainfile", "content": "x"}')["ok"]
    ws_reply(fuzz, "file_write", '{"path": "plainfile/inner", "content": ""}')
    http_reply(fuzz, "file_write", '{"path": "plainfile/inner", "content": ""}')


@pytest.mark.parametrize(
    "params",
    [
        f'{{"persona": "{PERSONA}", "sql": "SELECT \'\\u0000\'"}}',
        f'{{"persona": "{PERSONA}", "sql": "SELECT ?", "params": [{2**70}]}}',
        f'{{"persona": "{PERSONA}", "sql": "SELECT :a", "params": {{"a": {-(2**64)}}}}}',
    ],
)
def test_brain_query_bindings(fuzz: Fuzz, params: str) -> None:
    ws_reply(fuzz, "brain_query", params)
    http_reply(fuzz, "brain_query", params)


def test_remember_null_content_is_answered(fuzz: Fuzz) -> None:
    memory = '{"type": "x", "content": "null", "importance": 0.5}'
    ws_reply(fuzz, "remember", f'{{"persona": "{PERSONA}", "memory": {memory}}}', timeout=60)


@pytest.mark.parametrize("query", ["💥", "\\ud83d\\udca5 boom", "\\ud800"])
def test_recall_astral_queries_are_answered(fuzz: Fuzz, query: str) -> None:
    ws_reply(fuzz, "recall", f'{{"persona": "{PERSONA}", "query": "{query}"}}', timeout=60)


def test_bus_client_errors_keep_their_class(fuzz: Fuzz) -> None:
    async def call() -> PersonadError:
        client = BusClient(fuzz.rd.url, fuzz.rd.token)
        await client.connect()
        try:
            await client.call("no_such_command")
        except PersonadError as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    error = asyncio.run(call())
    assert error.code == "unknown_command"
    assert isinstance(error, NotFoundError) and error.http_status == 404


# New, in the lead's files (server/websocket.py, server/app.py): json.loads raises plain ValueError for an
# int past 4300 digits and RecursionError for deep nesting; only JSONDecodeError/UnicodeDecodeError are
# caught, so the WS read loop dies (the connection drops) and HTTP answers 500.
HUGE_INT = '{"type": "ping", "id": "h", "data": ' + "1" * 5000 + "}"
DEEP = '{"type": "ping", "id": "d", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("frame", [HUGE_INT, DEEP], ids=["huge-int", "deep"])
def test_ws_frames_python_json_cannot_parse(fuzz: Fuzz, frame: str) -> None:
    with open_ws(fuzz, session="fuzz-known") as ws:
        ws.conn.send(frame)
        reply = ws.recv(frame[:200], timeout=10)
        assert reply["type"] == "error" and reply["error"]["code"] == "invalid_json", reply
        RawWs.assert_alive(ws)


@pytest.mark.parametrize(
    "body",
    ['{"echo": ' + "1" * 5000 + "}", '{"echo": ' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["huge-int", "deep"],
)
def test_http_bodies_python_json_cannot_parse(fuzz: Fuzz, body: str) -> None:
    response = http_reply(fuzz, "ping", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
