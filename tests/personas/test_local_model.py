"""The real local model (SmolLM2-135M-Instruct) answering through the bus and the OpenAI API."""

from __future__ import annotations

import os
import signal
import time

import openai
import pytest

from tests.conftest import RunningDaemon
from tests.personas.conftest import reply_to, wait_for

pytestmark = pytest.mark.slow


def test_local_persona_answers_over_the_bus_and_v1(persona_daemon: RunningDaemon) -> None:
    with persona_daemon.http() as http:
        created = http.post(
            "/api/commands/persona_create",
            json={
                "id": "local-bot",
                "capabilities": ["chat"],
                "respond_in": ["general"],
                "start": True,
                "memory_budget_tokens": 0,  # greedy output is compared across calls: keep the prompt fixed
                "system_prompt": "You are a concise assistant. Answer in one short sentence.",
            },
            timeout=300,
        ).json()
    assert created["ok"], created
    assert created["result"]["process"]["state"] == "running"
    with persona_daemon.ws(name="ada") as ws:
        ws.call("room_join", {"room": "general"})
        sent = ws.call("chat", {"room": "general", "text": "What is the capital of France?"})
        reply, deltas = reply_to(ws, sent["result"]["message"]["id"], timeout=180)
    assert reply["sender"]["kind"] == "persona" and reply["text"].strip()
    assert "".join(deltas).strip() == reply["text"]
    assert reply["meta"]["usage"]["completion_tokens"] > 0 and "error" not in reply["meta"]

    client = openai.OpenAI(base_url=f"{persona_daemon.url}/v1", api_key=persona_daemon.token, max_retries=0)
    question = [{"role": "user", "content": "Name a primary colour."}]
    first = client.chat.completions.create(model="local-bot", messages=question, max_tokens=16, temperature=0)
    second = client.chat.completions.create(
        model="local-bot", messages=question, max_tokens=16, temperature=0
    )
    text = first.choices[0].message.content or ""
    assert text.strip() and text == second.choices[0].message.content  # greedy is deterministic
    assert first.usage is not None and 0 < first.usage.completion_tokens <= 16
    streamed = client.chat.completions.create(
        model="local-bot", messages=question, max_tokens=16, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text

    # The shared worker is supervised too: killed, it comes back with the same token.
    worker = persona_daemon.daemon.personas._inference
    old_pid = worker.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        lambda: (
            persona_daemon.daemon.personas._inference.alive
            and persona_daemon.daemon.personas._inference.pid != old_pid
        ),
        timeout=120,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            again = client.chat.completions.create(
                model="local-bot", messages=question, max_tokens=16, temperature=0
            )
            break
        except openai.APIError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert again.choices[0].message.content == text
