"""A bounded schemathesis run over the live loopback daemon's /openapi.json: no 5xx on any command route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.fuzz.conftest import EXAMPLES, Fuzz
from tests.fuzz.known_defects import known_defect
from tests.fuzz.strategies import confine_urls
from tests.fuzz.test_fuzz_commands import COMMANDS


@pytest.fixture(scope="module")
def api_schema(fuzz: Fuzz) -> Any:
    document = httpx.get(f"{fuzz.rd.url}/openapi.json", headers={"Authorization": f"Bearer {fuzz.rd.token}"})
    document.raise_for_status()
    return schemathesis.openapi.from_dict(document.json())


def test_openapi_lists_every_command(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {f"/api/commands/{name}" for name in COMMANDS} <= paths


@pytest.mark.parametrize("command", COMMANDS)
def test_openapi_command_never_answers_5xx(fuzz: Fuzz, api_schema: Any, command: str) -> None:
    operation = api_schema[f"/api/commands/{command}"]["POST"]
    headers = {"Authorization": f"Bearer {fuzz.rd.token}", "X-Personad-Session": "fuzz-schemathesis"}

    @settings(
        max_examples=max(2, EXAMPLES // 2),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        fuzz.ensure_fixtures()
        if isinstance(case.body, dict):
            case.body = fuzz.defuse(command, confine_urls(case.body))
        known = known_defect(command, case.body, "http")
        response = case.call(base_url=fuzz.rd.url, headers=headers, timeout=60)
        if known is not None and response.status_code >= 500:
            return  # tracked by test_known_defects.py
        case.validate_response(response, checks=[not_a_server_error])

    run()
