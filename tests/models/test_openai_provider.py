"""OpenAIProvider through the real ``openai`` SDK against a fake Chat Completions server on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from personad.errors import MissingApiKeyError, ProviderError
from personad.models.base import ChatChunk, ChatMessage, ChatRequest, GenerationParams, ToolCall, ToolSpec
from personad.models.openai_provider import (
    DEFAULT_MODEL,
    PLACEHOLDER_API_KEY,
    OpenAIProvider,
    register_providers,
)
from personad.models.registry import ProviderRegistry
from tests.models.fake_servers import FakeOpenAIServer, FakeToolCall, Reply, serve_openai

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own key or endpoint must never leak into (or reach out of) these tests.
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_ADMIN_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve_openai()


def make(server: FakeOpenAIServer, **config: Any) -> OpenAIProvider:
    return OpenAIProvider({"api_key": server.api_key, "base_url": server.url, "max_retries": 0, **config})


@pytest.fixture
async def provider(server: FakeOpenAIServer) -> AsyncIterator[OpenAIProvider]:
    p = make(server)
    yield p
    await p.aclose()


def ask(text: str = "Hello?", **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", text)], **kwargs)


async def collect(provider: OpenAIProvider, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request)]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- text ---------------------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_finish_and_usage(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    server.queue(Reply(text="Hello from GPT!", prompt_tokens=17, completion_tokens=4))
    chunks = await collect(provider, ask())
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1, "the fake streams several deltas; each must come through on its own"
    assert "".join(texts) == "Hello from GPT!"
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (17, 4)
    assert all(c.finish_reason is None for c in chunks[:-1])
    body = server.last_request.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_complete_gathers_the_streamed_answer(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    server.queue(Reply(text="All in one piece."))
    result = await provider.complete(ask())
    assert result.text == "All in one piece."
    assert result.tool_calls == []
    assert result.finish_reason == "stop"


async def test_non_streaming_mode_makes_one_plain_request(server: FakeOpenAIServer) -> None:
    provider = make(server, stream=False)
    try:
        server.queue(Reply(text="Plain answer.", prompt_tokens=8, completion_tokens=3))
        result = await provider.complete(ask())
    finally:
        await provider.aclose()
    assert result.text == "Plain answer."
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (8, 3)
    assert "stream" not in server.last_request.body
    assert "stream_options" not in server.last_request.body


async def test_stream_without_usage_option(server: FakeOpenAIServer) -> None:
    provider = make(server, stream_usage=False)
    try:
        result = await provider.complete(ask())
    finally:
        await provider.aclose()
    assert result.text == server.default_reply.text
    assert "stream_options" not in server.last_request.body
    assert result.usage.prompt_tokens == 0  # the server was not asked for it


async def test_stopping_early_closes_the_stream_cleanly(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    server.queue(Reply(text="a fairly long answer that we stop reading"), Reply(text="next"))
    stream = provider.stream(ask())
    first = await anext(stream)
    assert first.text
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await provider.complete(ask())).text == "next"


async def test_length_finish_reason(server: FakeOpenAIServer, provider: OpenAIProvider) -> None:
    server.queue(Reply(text="cut", finish="length"))
    assert (await provider.complete(ask())).finish_reason == "length"


# -- what goes on the wire -----------------------------------------------------------------------------


async def test_headers_model_system_and_generation_params_on_the_wire(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    request = ChatRequest(
        messages=[
            ChatMessage("system", "You are Ada."),
            ChatMessage("user", "Hi", name="bob"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me a joke.", name="Bob Smith"),  # not a valid wire name: left off
        ],
        params=GenerationParams(temperature=0.3, top_p=0.8, max_tokens=99, stop=["END"], seed=7),
    )
    await provider.complete(request)
    sent = server.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {server.api_key}"
    body = sent.body
    assert body["model"] == DEFAULT_MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You are Ada."},
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.8, 99)
    assert body["stop"] == ["END"]
    assert body["seed"] == 7
    assert "tools" not in body


async def test_optional_params_left_out_and_max_tokens_param_configurable(server: FakeOpenAIServer) -> None:
    provider = make(server, max_tokens_param="max_completion_tokens", model="o-configured")
    try:
        await provider.complete(ask(params=GenerationParams(max_tokens=50)))
        body = server.last_request.body
        assert body["model"] == "o-configured"
        assert body["max_completion_tokens"] == 50
        assert "max_tokens" not in body
        assert "stop" not in body
        assert "seed" not in body
        await provider.complete(ask(model="per-request-model"))
        assert server.last_request.body["model"] == "per-request-model"
    finally:
        await provider.aclose()


# -- tools ---------------------------------------------------------------------------------------------


async def test_tool_call_round_trip(server: FakeOpenAIServer, provider: OpenAIProvider) -> None:
    server.queue(
        Reply(
            tool_calls=[
                FakeToolCall("get_weather", {"city": "Oslo"}, id="call_1"),
                FakeToolCall("get_weather", {"city": "Bergen", "units": "C"}, id="call_2"),
            ]
        ),
        Reply(text="Oslo is sunny, Bergen rainy."),
    )
    history = [ChatMessage("system", "Use tools."), ChatMessage("user", "Weather in Oslo and Bergen?")]
    first = await collect(provider, ChatRequest(messages=history, tools=[WEATHER]))

    calls = [call for chunk in first for call in chunk.tool_calls or []]
    # The fake splits each call's arguments over several deltas; they come back whole and parsed.
    assert calls == [
        ToolCall("call_1", "get_weather", {"city": "Oslo"}),
        ToolCall("call_2", "get_weather", {"city": "Bergen", "units": "C"}),
    ]
    assert first[-1].finish_reason == "tool_calls"
    assert server.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER.description,
                "parameters": WEATHER.parameters,
            },
        }
    ]

    history += [
        ChatMessage("assistant", "", tool_calls=calls),
        ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="call_1"),
        ChatMessage("tool", '{"sky": "rain"}', tool_call_id="call_2"),
    ]
    result = await provider.complete(ChatRequest(messages=history, tools=[WEATHER]))
    assert result.text == "Oslo is sunny, Bergen rainy."
    assert result.finish_reason == "stop"

    sent = server.requests[1].body["messages"]
    assert sent[:2] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
    ]
    assert sent[2]["role"] == "assistant"
    assert sent[2]["content"] is None
    assert [(c["id"], c["type"], c["function"]["name"]) for c in sent[2]["tool_calls"]] == [
        ("call_1", "function", "get_weather"),
        ("call_2", "function", "get_weather"),
    ]
    # Arguments travel as JSON text, as the API wants.
    assert [json.loads(c["function"]["arguments"]) for c in sent[2]["tool_calls"]] == [
        {"city": "Oslo"},
        {"city": "Bergen", "units": "C"},
    ]
    assert sent[3:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"sky": "rain"}'},
    ]


async def test_tool_call_with_text_and_raw_arguments_in_history(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    history = [
        ChatMessage("user", "go"),
        ChatMessage(
            "assistant", "Checking.", tool_calls=[ToolCall("call_9", "get_weather", '{"city":"Rome"}')]
        ),
        ChatMessage("tool", "hot", tool_call_id="call_9"),
    ]
    await provider.complete(ChatRequest(messages=history))
    assistant = server.last_request.body["messages"][1]
    assert assistant["content"] == "Checking."
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"city":"Rome"}'  # raw text sent as is


async def test_unparsable_tool_arguments_are_handed_on_raw(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    server.queue(Reply.tool_call("get_weather", '{"city": "Os', id="call_bad"))
    result = await provider.complete(ChatRequest(messages=[ChatMessage("user", "?")], tools=[WEATHER]))
    assert result.tool_calls == [ToolCall("call_bad", "get_weather", '{"city": "Os')]
    assert result.finish_reason == "tool_calls"


async def test_tool_calls_reported_with_finish_stop_still_say_tool_calls(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    # Ollama and older llama.cpp servers finish a tool-calling answer with "stop".
    server.queue(Reply(tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"}, id="c1")], finish="stop"))
    result = await provider.complete(ChatRequest(messages=[ChatMessage("user", "?")], tools=[WEATHER]))
    assert result.tool_calls == [ToolCall("c1", "get_weather", {"city": "Oslo"})]
    assert result.finish_reason == "tool_calls"


async def test_non_streaming_tool_call(server: FakeOpenAIServer) -> None:
    provider = make(server, stream=False)
    try:
        server.queue(Reply.tool_call("get_weather", {"city": "Oslo"}, id="call_7"))
        result = await provider.complete(ChatRequest(messages=[ChatMessage("user", "?")], tools=[WEATHER]))
    finally:
        await provider.aclose()
    assert result.tool_calls == [ToolCall("call_7", "get_weather", {"city": "Oslo"})]
    assert result.finish_reason == "tool_calls"


# -- keys, base_url and errors ---------------------------------------------------------------------------


async def test_missing_key_without_base_url_raises_before_any_request() -> None:
    provider = OpenAIProvider({"max_retries": 0})
    try:
        with pytest.raises(MissingApiKeyError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "missing_api_key"
    assert "OPENAI_API_KEY" in info.value.message
    assert "model_config.api_key" in info.value.message


async def test_base_url_without_key_sends_a_placeholder() -> None:
    # A local server (vLLM, llama.cpp, Ollama) that wants no key.
    with FakeOpenAIServer(api_key=None) as server:
        provider = OpenAIProvider({"base_url": server.url, "max_retries": 0})
        try:
            assert (await provider.complete(ask())).text == server.default_reply.text
        finally:
            await provider.aclose()
        assert server.last_request.headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_key_and_base_url_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key or "")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    provider = OpenAIProvider({"max_retries": 0})
    try:
        assert (await provider.complete(ask())).text == server.default_reply.text
    finally:
        await provider.aclose()
    assert server.last_request.headers["authorization"] == f"Bearer {server.api_key}"


async def test_wrong_key_is_provider_auth(server: FakeOpenAIServer) -> None:
    provider = make(server, api_key="sk-wrong")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_auth"
    assert "401" in info.value.message
    assert "OPENAI_API_KEY" in info.value.message  # says how to fix it
    assert info.value.details["status"] == 401


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "provider_auth"),
        (404, "provider_bad_request"),
        (429, "provider_rate_limited"),
        (500, "provider_error"),
        (503, "provider_error"),
    ],
)
async def test_http_errors_map_to_provider_error_codes(
    server: FakeOpenAIServer, provider: OpenAIProvider, status: int, code: str
) -> None:
    server.queue(Reply.error(status, "scripted failure"))
    with pytest.raises(ProviderError) as info:
        await provider.complete(ask())
    assert info.value.code == code
    assert str(status) in info.value.message
    assert "scripted failure" in info.value.message
    assert info.value.details["status"] == status
    assert len(server.requests) == 1  # max_retries=0: no retry


async def test_error_inside_the_stream(server: FakeOpenAIServer, provider: OpenAIProvider) -> None:
    server.queue(Reply(text="partial answer", stream_error="server_error"))
    seen: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider.stream(ask()):
            seen.append(chunk.text)
    assert "".join(seen), "text before the error still arrived"
    assert info.value.code == "provider_error"
    assert "fake server_error" in info.value.message


async def test_unreachable_server_is_provider_unreachable() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAIProvider({"base_url": base_url, "max_retries": 0})
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_unreachable"
    assert base_url in info.value.message


# -- registration ----------------------------------------------------------------------------------------


async def test_registered_by_name(server: FakeOpenAIServer) -> None:
    registry = ProviderRegistry()
    register_providers(registry)
    assert registry.names() == ["openai"]
    provider = registry.create("openai", {"api_key": server.api_key, "base_url": server.url})
    try:
        assert isinstance(provider, OpenAIProvider)
        assert provider.supports_tools
        assert (await provider.complete(ask())).text == server.default_reply.text
    finally:
        await provider.aclose()


def test_both_cloud_providers_share_one_registry() -> None:
    from personad.models import anthropic_provider

    registry = ProviderRegistry()
    anthropic_provider.register_providers(registry)
    register_providers(registry)
    assert registry.names() == ["anthropic", "openai"]


# -- the fake itself ---------------------------------------------------------------------------------------


async def test_fake_stream_agrees_with_the_sdks_own_accumulator(server: FakeOpenAIServer) -> None:
    """The SDK's ``chat.completions.stream`` helper rebuilds the same completion from the fake's chunks."""
    import openai

    server.queue(Reply(text="Hi there", tool_calls=[FakeToolCall("f", {"a": [1, 2]}, "call_1")]))
    client = openai.AsyncOpenAI(api_key=server.api_key, base_url=server.url, max_retries=0)
    try:
        messages: list[Any] = [{"role": "user", "content": "x"}]
        async with client.chat.completions.stream(
            model="m", messages=messages, stream_options={"include_usage": True}
        ) as stream:
            completion = await stream.get_final_completion()
    finally:
        await client.close()
    choice = completion.choices[0]
    assert choice.message.content == "Hi there"
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "f", '{"a": [1, 2]}')
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 5)
