"""The HTTP transport: the same processor, the same error shape, the token everywhere."""

from __future__ import annotations

import httpx

from tests.conftest import RunningDaemon


def test_every_route_needs_the_token(running: RunningDaemon) -> None:
    for method, path in [("GET", "/api/commands"), ("POST", "/api/commands/ping"), ("GET", "/openapi.json")]:
        response = httpx.request(method, running.url + path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    wrong = httpx.get(running.url + "/api/commands", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(running.url + "/").status_code == 401
    assert httpx.get(f"{running.url}/api/commands?token={running.token}").status_code == 200
    assert httpx.get(running.url + "/healthz").json()["ok"] is True


def test_command_results_and_errors(running: RunningDaemon) -> None:
    with running.http() as http:
        ok = http.post("/api/commands/ping", json={"echo": "hi"})
        assert ok.status_code == 200 and ok.json() == {"ok": True, "result": {"pong": True, "echo": "hi"}}
        cases = [
            ("/api/commands/nope", {}, 404, "unknown_command"),
            ("/api/commands/chat", {"room": "general"}, 400, "invalid_params"),
            ("/api/commands/chat", {"room": "general", "text": "x"}, 403, "not_a_member"),
            ("/api/commands/room_join", {"room": "nowhere"}, 404, "room_not_found"),
            ("/api/commands/file_read", {"path": "/etc/passwd"}, 403, "path_escape"),
        ]
        for path, body, status, code in cases:
            response = http.post(path, json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
        malformed = http.post(
            "/api/commands/ping", content=b"{oops", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
        too_big = http.post(
            "/api/commands/ping", content=b"x" * (running.daemon.settings.max_message_bytes + 1)
        )
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "message_too_large"
        missing = http.get("/api/nothing-here")
        assert missing.status_code == 404 and missing.json()["ok"] is False
        assert http.post("/api/commands/ping").json()["ok"] is True  # empty body = no params


def test_capability_limited_session_over_http(running: RunningDaemon) -> None:
    with running.http(session="narrow", **{"X-Personad-Capabilities": "chat"}) as http:
        response = http.post("/api/commands/file_list", json={})
        assert response.status_code == 403 and response.json()["error"]["code"] == "capability_denied"
        assert http.post("/api/commands/rooms", json={}).status_code == 200
    with running.http(session="narrow") as http:  # resuming keeps the narrowed capabilities
        assert http.post("/api/commands/file_list", json={}).status_code == 403


def test_command_listing_and_openapi(running: RunningDaemon) -> None:
    with running.http() as http:
        listed = http.get("/api/commands").json()["result"]["commands"]
        names = {c["name"] for c in listed}
        assert {"chat", "screenshot", "browser_js", "file_write", "commands", "session"} <= names
        screenshot = next(c for c in listed if c["name"] == "screenshot")
        assert screenshot["params_schema"]["properties"]["format"]["enum"] == ["png", "jpeg", "webp"]
        spec = http.get("/openapi.json").json()
        body = spec["paths"]["/api/commands/browser_js"]["post"]["requestBody"]
        assert "script" in body["content"]["application/json"]["schema"]["properties"]
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_same_result_over_ws_http_and_cli(running: RunningDaemon) -> None:
    import json

    from click.testing import CliRunner

    from personad.cli import main

    params = {"echo": {"nested": [1, 2, 3]}}
    with running.ws() as ws:
        over_ws = ws.call("ping", params)["result"]
    with running.http() as http:
        over_http = http.post("/api/commands/ping", json=params).json()["result"]
    cli = CliRunner().invoke(
        main, ["exec", "ping", "-j", 'echo={"nested": [1, 2, 3]}', "--json", "--home", str(running.home)]
    )
    assert cli.exit_code == 0, cli.output
    assert over_ws == over_http == json.loads(cli.output) == {"pong": True, "echo": params["echo"]}


def test_http_body_must_be_strict_json(running: RunningDaemon) -> None:
    """NaN/Infinity and lone surrogates are refused (400 invalid_json); results go out as strict JSON."""
    with running.http() as http:
        for body in ('{"echo": NaN}', '{"echo": Infinity}', '{"echo": "\\ud800"}', "[" * 5000):
            response = http.post("/api/commands/ping", content=body)
            assert response.status_code == 400, body
            assert response.json()["error"] == {
                "code": "invalid_json",
                "message": response.json()["error"]["message"],
                "status": 400,
            }
        ok = http.post("/api/commands/ping", content='{"echo": "\\ud83d\\ude00 ok"}')
        assert ok.status_code == 200 and ok.json()["result"]["echo"] == "\U0001f600 ok"
