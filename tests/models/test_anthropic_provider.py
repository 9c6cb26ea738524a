"""AnthropicProvider through the real ``anthropic`` SDK against a fake Messages API on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from personad.errors import MissingApiKeyError, ProviderError
from personad.models.anthropic_provider import (
    DEFAULT_MODEL,
    AnthropicProvider,
    register_providers,
    to_anthropic_messages,
)
from personad.models.base import ChatChunk, ChatMessage, ChatRequest, GenerationParams, ToolCall, ToolSpec
from personad.models.registry import ProviderRegistry
from tests.models.fake_servers import (
    FakeAnthropicServer,
    FakeToolCall,
    Reply,
    anthropic_key,
    serve_anthropic,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own key or endpoint must never leak into (or reach out of) these tests.
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    yield from serve_anthropic()


@pytest.fixture
async def provider(server: FakeAnthropicServer) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider({"api_key": server.api_key, "base_url": server.url, "max_retries": 0})
    yield p
    await p.aclose()


def ask(text: str = "Hello?", **kwargs: object) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", text)], **kwargs)  # type: ignore[arg-type]


async def collect(provider: AnthropicProvider, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request)]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- text ---------------------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_finish_and_usage(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply(text="Hello from Claude!", prompt_tokens=21, completion_tokens=6))
    chunks = await collect(provider, ask())
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1, "the fake streams several deltas; each must come through on its own"
    assert "".join(texts) == "Hello from Claude!"
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (21, 6)
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert server.last_request.body["stream"] is True


async def test_complete_gathers_the_streamed_answer(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply(text="All in one piece."))
    result = await provider.complete(ask())
    assert result.text == "All in one piece."
    assert result.tool_calls == []
    assert result.finish_reason == "stop"


async def test_non_streaming_mode_makes_one_plain_request(server: FakeAnthropicServer) -> None:
    provider = AnthropicProvider(
        {"api_key": server.api_key, "base_url": server.url, "max_retries": 0, "stream": False}
    )
    try:
        server.queue(Reply(text="Plain answer.", prompt_tokens=8, completion_tokens=3))
        result = await provider.complete(ask())
    finally:
        await provider.aclose()
    assert result.text == "Plain answer."
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (8, 3)
    assert "stream" not in server.last_request.body


async def test_stopping_early_closes_the_stream_cleanly(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply(text="a fairly long answer that we stop reading"), Reply(text="next"))
    stream = provider.stream(ask())
    first = await anext(stream)
    assert first.text
    await stream.aclose()  # type: ignore[attr-defined]
    # The client is still usable afterwards (the connection was released, not leaked).
    assert (await provider.complete(ask())).text == "next"


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("end_turn", "stop"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(
    server: FakeAnthropicServer, provider: AnthropicProvider, stop_reason: str, expected: str
) -> None:
    server.queue(Reply(text="cut", finish=stop_reason))
    assert (await provider.complete(ask())).finish_reason == expected


# -- what goes on the wire -----------------------------------------------------------------------------


async def test_headers_model_system_and_generation_params_on_the_wire(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    request = ChatRequest(
        messages=[
            ChatMessage("system", "You are Ada."),
            ChatMessage("user", "Hi"),
            ChatMessage("system", "Answer in English."),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me a joke."),
        ],
        params=GenerationParams(temperature=0.3, top_p=0.8, max_tokens=99, stop=["END"], seed=7),
    )
    await provider.complete(request)
    sent = server.last_request
    assert sent.path == "/v1/messages"
    assert anthropic_key(sent.headers) == server.api_key
    assert sent.headers["anthropic-version"]
    body = sent.body
    assert body["model"] == DEFAULT_MODEL
    assert body["system"] == "You are Ada.\n\nAnswer in English."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    assert body["max_tokens"] == 99
    assert body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.3
    # Claude 4.x refuses temperature and top_p together, so only temperature goes by default.
    assert "top_p" not in body
    assert "tools" not in body
    assert "seed" not in body  # the Messages API has no seed


async def test_no_system_and_no_stop_leave_the_fields_out(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    await provider.complete(ask())
    body = server.last_request.body
    assert "system" not in body
    assert "stop_sequences" not in body


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [(["temperature", "top_p"], {"temperature": 1.0, "top_p": 0.5}), ([], {}), (["top_p"], {"top_p": 0.5})],
)
async def test_sampling_params_config_picks_what_is_sent(
    server: FakeAnthropicServer, sampling: list[str], expected: dict[str, float]
) -> None:
    provider = AnthropicProvider(
        {"api_key": server.api_key, "base_url": server.url, "max_retries": 0, "sampling_params": sampling}
    )
    try:
        # temperature 1.7 is fine for OpenAI-style callers but over the Messages API's 0..1: it is clamped.
        await provider.complete(ask(params=GenerationParams(temperature=1.7, top_p=0.5)))
    finally:
        await provider.aclose()
    body = server.last_request.body
    assert {k: body[k] for k in ("temperature", "top_p") if k in body} == expected


async def test_request_model_overrides_configured_model(server: FakeAnthropicServer) -> None:
    provider = AnthropicProvider(
        {"api_key": server.api_key, "base_url": server.url, "max_retries": 0, "model": "claude-configured"}
    )
    try:
        await provider.complete(ask())
        assert server.last_request.body["model"] == "claude-configured"
        await provider.complete(ask(model="claude-per-request"))
        assert server.last_request.body["model"] == "claude-per-request"
    finally:
        await provider.aclose()


def test_message_mapping_merges_same_role_turns_and_drops_empty_ones() -> None:
    system, messages = to_anthropic_messages(
        [
            ChatMessage("user", "one"),
            ChatMessage("user", "two"),
            ChatMessage("assistant", ""),  # nothing to say: the API rejects empty text, so it goes
            ChatMessage("user", "three"),
        ]
    )
    assert system == ""
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
                {"type": "text", "text": "three"},
            ],
        }
    ]


# -- tools ---------------------------------------------------------------------------------------------


async def test_tool_call_round_trip(server: FakeAnthropicServer, provider: AnthropicProvider) -> None:
    server.queue(
        Reply(
            text="Let me look.",
            tool_calls=[
                FakeToolCall("get_weather", {"city": "Oslo"}, id="toolu_01"),
                FakeToolCall("get_weather", {"city": "Bergen", "units": "C"}, id="toolu_02"),
            ],
        ),
        Reply(text="Oslo is sunny, Bergen rainy."),
    )
    history = [ChatMessage("system", "Use tools."), ChatMessage("user", "Weather in Oslo and Bergen?")]
    first = await collect(provider, ChatRequest(messages=history, tools=[WEATHER]))

    calls = [call for chunk in first for call in chunk.tool_calls or []]
    assert calls == [
        ToolCall("toolu_01", "get_weather", {"city": "Oslo"}),
        ToolCall("toolu_02", "get_weather", {"city": "Bergen", "units": "C"}),
    ]
    assert "".join(c.text for c in first) == "Let me look."
    assert first[-1].finish_reason == "tool_calls"
    assert server.requests[0].body["tools"] == [
        {"name": "get_weather", "description": WEATHER.description, "input_schema": WEATHER.parameters}
    ]

    history += [
        ChatMessage("assistant", "Let me look.", tool_calls=calls),
        ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="toolu_01"),
        ChatMessage("tool", '{"sky": "rain"}', tool_call_id="toolu_02"),
    ]
    result = await provider.complete(ChatRequest(messages=history, tools=[WEATHER]))
    assert result.text == "Oslo is sunny, Bergen rainy."
    assert result.finish_reason == "stop"

    sent = server.requests[1].body
    assert sent["system"] == "Use tools."
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
                {
                    "type": "tool_use",
                    "id": "toolu_02",
                    "name": "get_weather",
                    "input": {"city": "Bergen", "units": "C"},
                },
            ],
        },
        {
            # Consecutive tool answers become one user turn of tool_result blocks.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"sky": "sunny"}'},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": '{"sky": "rain"}'},
            ],
        },
    ]


async def test_tool_call_without_text_and_raw_string_arguments_in_history(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    history = [
        ChatMessage("user", "go"),
        ChatMessage("assistant", "", tool_calls=[ToolCall("toolu_9", "get_weather", '{"city": "Rome"}')]),
        ChatMessage("tool", "hot", tool_call_id="toolu_9"),
        ChatMessage("user", "and tomorrow?"),
    ]
    await provider.complete(ChatRequest(messages=history))
    assert server.last_request.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Rome"}}
            ],
        },
        {
            # A user text right after the tool results joins their turn, after them, as the API wants.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": "hot"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]


async def test_unparsable_tool_arguments_are_handed_on_raw(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply.tool_call("get_weather", '{"city": "Os', id="toolu_bad"))
    result = await provider.complete(ChatRequest(messages=[ChatMessage("user", "?")], tools=[WEATHER]))
    assert result.tool_calls == [ToolCall("toolu_bad", "get_weather", '{"city": "Os')]
    assert result.finish_reason == "tool_calls"


async def test_non_streaming_tool_call(server: FakeAnthropicServer) -> None:
    provider = AnthropicProvider(
        {"api_key": server.api_key, "base_url": server.url, "max_retries": 0, "stream": False}
    )
    try:
        server.queue(Reply.tool_call("get_weather", {"city": "Oslo"}, id="toolu_7"))
        result = await provider.complete(ChatRequest(messages=[ChatMessage("user", "?")], tools=[WEATHER]))
    finally:
        await provider.aclose()
    assert result.tool_calls == [ToolCall("toolu_7", "get_weather", {"city": "Oslo"})]
    assert result.finish_reason == "tool_calls"


# -- keys and errors -------------------------------------------------------------------------------------


async def test_missing_key_raises_before_any_request(server: FakeAnthropicServer) -> None:
    provider = AnthropicProvider({"base_url": server.url, "max_retries": 0})
    try:
        with pytest.raises(MissingApiKeyError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "missing_api_key"
    assert "ANTHROPIC_API_KEY" in info.value.message
    assert "model_config.api_key" in info.value.message
    assert server.requests == []


async def test_key_from_the_environment(server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", server.api_key or "")
    provider = AnthropicProvider({"base_url": server.url, "max_retries": 0})
    try:
        assert (await provider.complete(ask())).text
    finally:
        await provider.aclose()
    assert anthropic_key(server.last_request.headers) == server.api_key


async def test_wrong_key_is_provider_auth(server: FakeAnthropicServer) -> None:
    provider = AnthropicProvider({"api_key": "sk-wrong", "base_url": server.url, "max_retries": 0})
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_auth"
    assert "401" in info.value.message
    assert "ANTHROPIC_API_KEY" in info.value.message  # says how to fix it
    assert info.value.details["status"] == 401


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "provider_auth"),
        (400, "provider_bad_request"),
        (429, "provider_rate_limited"),
        (500, "provider_error"),
        (529, "provider_overloaded"),
    ],
)
async def test_http_errors_map_to_provider_error_codes(
    server: FakeAnthropicServer, provider: AnthropicProvider, status: int, code: str
) -> None:
    server.queue(Reply.error(status, "scripted failure"))
    with pytest.raises(ProviderError) as info:
        await provider.complete(ask())
    assert info.value.code == code
    assert str(status) in info.value.message
    assert "scripted failure" in info.value.message
    assert info.value.details["status"] == status
    assert info.value.details["request_id"]
    assert len(server.requests) == 1  # max_retries=0: no retry


async def test_error_event_inside_the_stream(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply(text="partial answer", stream_error="overloaded_error"))
    seen: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider.stream(ask()):
            seen.append(chunk.text)
    assert seen and seen[0], "text before the error still arrived"
    assert info.value.code == "provider_overloaded"


async def test_temperature_refusal_hints_at_sampling_params(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.queue(Reply.error(400, "temperature is not supported for this model"))
    with pytest.raises(ProviderError) as info:
        await provider.complete(ask())
    assert "sampling_params" in info.value.message


async def test_unreachable_server_is_provider_unreachable() -> None:
    provider = AnthropicProvider(
        {"api_key": "sk-any", "base_url": f"http://127.0.0.1:{free_port()}", "max_retries": 0}
    )
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_unreachable"
    assert "127.0.0.1" in info.value.message


# -- registration ----------------------------------------------------------------------------------------


async def test_registered_by_name(server: FakeAnthropicServer) -> None:
    registry = ProviderRegistry()
    register_providers(registry)
    assert registry.names() == ["anthropic"]
    provider = registry.create("anthropic", {"api_key": server.api_key, "base_url": server.url})
    try:
        assert isinstance(provider, AnthropicProvider)
        assert provider.supports_tools
        assert (await provider.complete(ask())).text == server.default_reply.text
    finally:
        await provider.aclose()


# -- the fake itself ---------------------------------------------------------------------------------------


async def test_fake_stream_agrees_with_the_sdks_own_accumulator(server: FakeAnthropicServer) -> None:
    """The SDK's ``messages.stream`` helper rebuilds the same message from the fake's events."""
    import anthropic

    server.queue(Reply(text="Hi there", tool_calls=[FakeToolCall("f", {"a": [1, 2]}, "toolu_1")]))
    client = anthropic.AsyncAnthropic(api_key=server.api_key, base_url=server.url, max_retries=0)
    try:
        messages: list[Any] = [{"role": "user", "content": "x"}]
        async with client.messages.stream(model="m", max_tokens=10, messages=messages) as stream:
            message = await stream.get_final_message()
    finally:
        await client.close()
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Hi there"  # type: ignore[union-attr]
    assert message.content[1].input == {"a": [1, 2]}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)
