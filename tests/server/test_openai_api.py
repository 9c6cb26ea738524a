"""The OpenAI-compatible endpoint, driven by the stock openai SDK."""

from __future__ import annotations

import openai
import pytest

from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon
from tests.lora.helpers import register_random, tiny_model


@pytest.fixture
def client(persona_daemon: RunningDaemon) -> openai.OpenAI:
    registry = AdapterRegistry.for_home(persona_daemon.home)
    register_random(registry, tiny_model(), "continuum.legal", persona_daemon.home, seed=0)
    with persona_daemon.http() as http:
        for body in (
            {"id": "scribe", "model_provider": "fake", "system_prompt": "You are Scribe, a careful writer."},
            {"id": "tagged", "model_provider": "fake", "lora_adapters": ["continuum.legal"]},
        ):
            assert http.post("/api/commands/persona_create", json=body).json()["ok"]
    return openai.OpenAI(base_url=f"{persona_daemon.url}/v1", api_key=persona_daemon.token, max_retries=0)


def test_models_lists_personas(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["scribe", "tagged"]


def test_completion_answers_as_the_persona(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="scribe", messages=[{"role": "user", "content": "hi there"}])
    assert reply.choices[0].message.content == "echo: hi there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    prompt = client.chat.completions.create(model="scribe", messages=[{"role": "user", "content": "system?"}])
    assert "You are Scribe, a careful writer." in (prompt.choices[0].message.content or "")
    stack = client.chat.completions.create(
        model="tagged", messages=[{"role": "user", "content": "adapters?"}]
    )
    assert stack.choices[0].message.content == "adapters=continuum.legal"


def test_store_false_keeps_the_exchange_out_of_memory(
    client: openai.OpenAI, persona_daemon: RunningDaemon
) -> None:
    """OpenAI's `store`: an exam or a probe (garak sends store=false) leaves no memory behind."""

    def remembered(text: str) -> int:
        with persona_daemon.http() as http:
            sql = "SELECT count(*) AS n FROM memories WHERE content LIKE ?"
            reply = http.post(
                "/api/commands/brain_query", json={"persona": "scribe", "sql": sql, "params": [f"%{text}%"]}
            ).json()
        assert reply["ok"], reply
        return int(reply["result"]["rows"][0]["n"])

    for store, text in ((False, "probe-unstored"), (None, "chat-stored")):
        extra = {} if store is None else {"store": store}
        messages = [{"role": "user", "content": text}]
        client.chat.completions.create(model="scribe", messages=messages, **extra)  # type: ignore[arg-type]
    assert remembered("probe-unstored") == 0
    assert remembered("chat-stored") == 2  # the question and the answer (echo: …)


def test_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="scribe",
        messages=[{"role": "user", "content": [{"type": "text", "text": "stream this please"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream this please"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_errors_in_openai_format(client: openai.OpenAI, persona_daemon: RunningDaemon) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="scribe", messages=[])
    bad_key = openai.OpenAI(base_url=f"{persona_daemon.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
