"""``PersonaDaemon(...).handle_message(chat_message)`` answers with the local model out of the box: the
Python API asks the daemon for the inference worker (starting it) as a persona process would be told."""

from __future__ import annotations

import json

import pytest

from personad.personas.persona import PersonaDaemon
from tests.conftest import RunningDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_a_local_persona_answers_from_the_python_api(running: RunningDaemon) -> None:
    persona = PersonaDaemon(
        {"id": "local-api", "systemPrompt": "Be brief.", "memory_budget_tokens": 0, "max_tokens": 12},
        home=running.home,
    )
    await persona.start()
    try:
        reply = await persona.handle_message(
            {"type": "chat_message", "data": {"message": "What is the capital of France?"}}
        )
    finally:
        await persona.stop()
    assert reply["reply"].strip() and "could not answer" not in reply["reply"]
    assert reply["usage"]["completion_tokens"] > 0
    # The worker's token reached the persona, not its command log.
    log = (running.home / "personas" / "local-api" / "commands.jsonl").read_text()
    entries = [json.loads(line) for line in log.splitlines()]
    asked = [e for e in entries if e["command"] == "persona_model_config"]
    assert asked and asked[0]["result"] == "[secret: not recorded]"
    assert running.daemon.personas._inference is not None
    assert running.daemon.personas._inference.token not in log
