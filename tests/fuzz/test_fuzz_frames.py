"""Raw WebSocket frames: whatever arrives, the server answers with a structured error (strict JSON, no
internals) under the request's id where it has one, and the same connection keeps answering ping."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.fuzz.checks import check_error_shape
from tests.fuzz.conftest import FUZZ_SETTINGS, Fuzz, RawWs, open_ws
from tests.fuzz.known_defects import known_defect
from tests.fuzz.strategies import deep, dumps, hostile_text, json_junk, special_numbers

IDS = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63), st.just("x" * 2000))
BAD_IDS = st.one_of(
    st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.just({}), st.just(True)
)

envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["execute_command", "ping", "pong", "welcome", ""]), hostile_text),
        "id": st.one_of(IDS, BAD_IDS),
        "data": st.one_of(
            json_junk,
            st.fixed_dictionaries(
                {},
                optional={
                    "command": st.one_of(
                        st.sampled_from(["ping", "commands", "nope", ""]), hostile_text, json_junk
                    ),
                    "params": st.one_of(json_junk, special_numbers, st.integers(1, 200).map(deep)),
                },
            ),
        ),
    },
)

raw_texts = st.one_of(
    st.text(max_size=50),  # mostly not JSON
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            "1e999",
            "NaN",
            '{"type": "ping", "id": NaN}',
            '{"type": "ping", "id": "n", "data": Infinity}',
            '{"type": "execute_command", "id": "i", "data": {"command": "ping", "params": {"echo": -Infinity}}}',  # noqa: E501
            '{"type": "ping", "id": "\\ud800"}',
            '{"type": "execute_command", "id": "s", "data": {"command": "ping", "params": {"echo": "\\udfff"}}}',  # noqa: E501
            '{"type": "ping", "id": ' + "1" * 5000 + "}",  # past Python's int-string limit
            '{"type": "execute_command", "id": "dup", "id": "dup2", "data": {"command": "ping"}}',
            "[" * 10_000 + "]" * 10_000,
            '{"a":' * 5000 + "1" + "}" * 5000,
            '{"type": "ping"',
            "\ufeff{}",
        ]
    ),
    envelopes.map(dumps),
)

raw_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b"\xff\xfe", b'{"type":"ping","id":"b"}', b'{"type":"ping","id":"\xc3\x28"}', b"\x80" * 10]
    ),
)


def _id_of(frame: str) -> Any:
    """The id a reply should carry: the envelope's, if the frame is an object with a string/int id."""
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and isinstance(value.get("id"), str | int):
        return value["id"]
    return None


def kills_the_connection(frame: str | bytes) -> bool:
    """A known defect (test_known_defects.py): text that json.loads fails on with a plain ValueError (an int
    past 4300 digits) or RecursionError (deep nesting) escapes the WS dispatcher and drops the connection."""
    try:
        json.loads(frame)
    except json.JSONDecodeError:
        return False
    except UnicodeDecodeError:
        return False
    except (ValueError, RecursionError):
        return True
    return False


def _answer(ws: RawWs, frame: str | bytes) -> None:
    """Send a frame, read until the socket answers a following ping; check what came back."""
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    try:
        relax = known_defect("ping", json.loads(frame), "ws")  # NaN/Infinity echoed by pong: known
    except (ValueError, RecursionError):
        relax = None
    request_id = _id_of(frame) if isinstance(frame, str) else None
    if request_id is not None:
        # An object with a usable id: exactly one reply carries it (then ping proves the socket lives).
        ws.exchange(frame, request_id, relax=relax)
        return
    ws.conn.send(frame)
    ws.assert_alive(text, relax=relax)  # every frame before the pong was strict JSON without internals


@FUZZ_SETTINGS
@given(frame=raw_texts)
def test_raw_text_frames(fuzz: Fuzz, ws: RawWs, frame: str) -> None:
    if kills_the_connection(frame):
        reject()
    _answer(ws, frame)


@FUZZ_SETTINGS
@given(frame=raw_bytes)
def test_raw_binary_frames(fuzz: Fuzz, ws: RawWs, frame: bytes) -> None:
    if kills_the_connection(frame):
        reject()
    _answer(ws, frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "ping", "id": "only", "data": {"n": 2}}',
        '{"type": "execute_command", "id": "e1", "data": {"command": "ping", "params": {"echo": 1}}}',
        '{"type": "execute_command", "id": 7, "data": {"command": "nope"}}',
        '{"type": "execute_command", "id": "e2", "data": {"command": "ping", "params": [1]}}',
        '{"type": "execute_command", "id": "e3", "data": "ping"}',
        '{"type": "what", "id": "e4"}',
    ],
)
def test_each_request_gets_exactly_one_reply_with_its_id(fuzz: Fuzz, ws: RawWs, frame: str) -> None:
    request_id = _id_of(frame)
    reply = ws.exchange(frame, request_id)
    if reply.get("type") == "pong":
        return
    if reply["ok"] is False:
        check_error_shape(reply["error"], json.dumps(reply))


def test_a_frame_over_the_size_limit_is_message_too_large(fuzz: Fuzz, ws: RawWs) -> None:
    limit = fuzz.rd.daemon.settings.max_message_bytes
    frame = dumps({"type": "ping", "id": "big", "data": "x" * (limit + 10)})
    ws.conn.send(frame)
    reply = ws.recv(frame[:100])
    assert reply["type"] == "error" and reply["error"]["code"] == "message_too_large", reply
    ws.assert_alive()


def test_invalid_utf8_in_a_text_frame_closes_with_1007_and_the_daemon_serves_on(fuzz: Fuzz) -> None:
    """RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection (1007); nothing else may break."""
    ws = open_ws(fuzz)
    try:
        ws.conn.send(b'{"type":"ping","id":"\xff"}', text=True)  # a text frame with invalid UTF-8
        with pytest.raises(ConnectionClosed) as closed:
            ws.conn.recv(timeout=10)
        assert closed.value.rcvd is None or closed.value.rcvd.code in (1002, 1007)
    finally:
        ws.close()
    with open_ws(fuzz) as fresh:
        fresh.assert_alive()
