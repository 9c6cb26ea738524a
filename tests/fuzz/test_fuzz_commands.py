"""Every registered command, fuzzed from its params JSON schema over the WebSocket and over HTTP.

Properties (per request): exactly one reply with its id, in time; never ``internal_error``; no HTTP 5xx;
strict JSON out (no NaN/Infinity); no traceback or exception repr; the same WebSocket still answers ping.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from personad.bus.commands import CommandRegistry
from tests.fuzz.checks import check_command_result, check_error_shape, check_no_leaks, strict_loads
from tests.fuzz.conftest import FUZZ_SETTINGS, Fuzz, RawWs, open_ws
from tests.fuzz.known_defects import Known, known_defect
from tests.fuzz.names import PERSONA
from tests.fuzz.strategies import confine_urls, dumps, hostile_params, valid_params


def _registry() -> CommandRegistry:
    registry = CommandRegistry()
    registry.load_plugins()
    return registry


# Iterating the registry: a new built-in command is fuzzed without touching this file.
COMMANDS = [command.name for command in _registry()]
SCHEMAS = {command.name: command.params.model_json_schema() for command in _registry()}
_ids = itertools.count(1)


def params_for(command: str, fz: Fuzz) -> st.SearchStrategy[Any]:
    schema = SCHEMAS[command]
    return st.one_of(valid_params(schema, fz.port), hostile_params(schema, fz.port))


def prepare(
    fz: Fuzz, command: str, params: Any, transport: str, as_persona: str | None = None
) -> tuple[Any, Known | None]:
    fz.ensure_fixtures()
    params = fz.defuse(command, confine_urls(params), as_persona=as_persona)
    return params, known_defect(command, params, transport)


def test_the_fuzz_covers_every_command_the_daemon_offers(fuzz: Fuzz) -> None:
    live = {c.name for c in fuzz.rd.daemon.registry}
    assert live == set(COMMANDS)


def _ws_fuzz(fuzz: Fuzz, ws: RawWs, command: str, as_persona: str | None = None) -> None:
    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        drawn = data.draw(params_for(command, fuzz), label="params")
        params, known = prepare(fuzz, command, drawn, "ws", as_persona)
        if known is not None and "no_reply" in known.symptoms:
            reject()  # a known hang: tracked by test_known_defects.py, not worth a timeout per example
        with_params = data.draw(st.booleans(), label="send params key") or params is not None
        request_id = f"f{next(_ids)}"
        body: dict[str, Any] = {"command": command}
        if with_params:
            body["params"] = params
        frame = dumps({"type": "execute_command", "id": request_id, "data": body})
        reply = ws.exchange(frame, request_id, relax=known)
        check_command_result(reply, dumps(reply), relax=known)

    run()


@pytest.mark.parametrize("command", COMMANDS)
def test_ws_command_fuzz(fuzz: Fuzz, ws: RawWs, command: str) -> None:
    _ws_fuzz(fuzz, ws, command)


# Commands that need no capability decide in the handler what a persona session may do (its own brain, its
# own stack, evolving itself): fuzz them as the persona too.
PERSONA_SESSION_COMMANDS = [c.name for c in _registry() if c.capability is None]


@pytest.mark.parametrize("command", PERSONA_SESSION_COMMANDS)
def test_persona_session_command_fuzz(fuzz: Fuzz, command: str) -> None:
    fuzz.ensure_fixtures()
    with open_ws(fuzz, kind="persona", persona=PERSONA) as ws:
        assert ws.welcome["data"]["kind"] == "persona"
        _ws_fuzz(fuzz, ws, command, as_persona=PERSONA)


@pytest.mark.parametrize("command", COMMANDS)
def test_http_command_fuzz(fuzz: Fuzz, command: str) -> None:
    with fuzz.rd.http(session="fuzz-http") as client:

        @FUZZ_SETTINGS
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            params, known = prepare(
                fuzz, command, data.draw(params_for(command, fuzz), label="params"), "http"
            )
            body = "" if params is None and data.draw(st.booleans(), label="empty body") else dumps(params)
            response = client.post(
                f"/api/commands/{command}", content=body, headers={"Content-Type": "application/json"}
            )
            text = response.text
            if known is not None and "no_reply" in known.symptoms:
                reject()
            if known is not None and response.status_code >= 500:
                unrendered = not response.headers.get("content-type", "").startswith("application/json")
                if "http_500" in known.symptoms or ("http_unrendered" in known.symptoms and unrendered):
                    return  # the known defect, tracked by tests/fuzz/test_known_defects.py
            assert response.status_code < 500, f"HTTP {response.status_code}: {text[:600]}"
            reply = strict_loads(text, known)
            check_no_leaks(text, body)
            if response.status_code == 200:
                assert reply.get("ok") is True and isinstance(reply.get("result"), dict), text[:600]
            else:
                assert reply.get("ok") is False, text[:600]
                check_error_shape(reply.get("error"), text, known)

        run()
