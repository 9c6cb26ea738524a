"""The local engine on the real model: greedy, sampling, limits, stop strings, streaming, adapters."""

from __future__ import annotations

import threading

import pytest

from personad.errors import InvalidParamsError, NotFoundError
from personad.models.base import AdapterRef, ChatMessage, ChatRequest, GenerationParams
from personad.models.local.engine import GenerationEvent, LocalEngine
from personad.models.local.textstream import REPLACEMENT_CHAR, IncrementalDetokenizer

pytestmark = pytest.mark.slow

QUESTION = [ChatMessage("user", "What is the capital of France?")]
STORY = [ChatMessage("user", "Write a long story about a dragon.")]
STORY_TOKENS = 24


def request(messages: list[ChatMessage], **params: object) -> ChatRequest:
    return ChatRequest(list(messages), GenerationParams(**{"temperature": 0.0, **params}))  # type: ignore[arg-type]


def run(engine: LocalEngine, req: ChatRequest) -> tuple[list[str], GenerationEvent]:
    events = list(engine.generate(req))
    final = events[-1]
    assert final.finish_reason is not None and all(e.finish_reason is None for e in events[:-1])
    return [e.text for e in events[:-1]], final


@pytest.fixture(scope="module")
def story(engine: LocalEngine) -> tuple[list[str], GenerationEvent]:
    """One greedy story opening, shared by the tests that compare against it."""
    return run(engine, request(STORY, max_tokens=STORY_TOKENS))


def test_greedy_answer_is_deterministic_and_ends_the_turn(engine: LocalEngine) -> None:
    first, final = run(engine, request(QUESTION, max_tokens=32))
    again, _ = run(engine, request(QUESTION, max_tokens=32))
    text = "".join(first)
    assert "Paris" in text
    assert text == "".join(again)
    assert final.finish_reason == "stop"  # <|im_end|>, which never shows up as text
    assert "<|im_end|>" not in text
    assert final.usage is not None and final.usage.prompt_tokens > 10
    assert 0 < final.usage.completion_tokens < 32


def test_streamed_deltas_concatenate_to_the_reference_greedy_decode(
    engine: LocalEngine, story: tuple[list[str], GenerationEvent]
) -> None:
    import torch

    deltas, final = story
    assert final.finish_reason == "length" and final.usage is not None
    assert final.usage.completion_tokens == STORY_TOKENS
    assert len(deltas) > 10  # streamed piece by piece, not in one lump
    ids = engine.prompt_ids(STORY)
    with torch.inference_mode():
        # An independent decode (transformers' own generate) must produce exactly the streamed text.
        out = engine.model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=STORY_TOKENS,
            do_sample=False,
        )
    expected = engine.tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True)
    assert "".join(deltas) == expected


def test_seeded_sampling_is_reproducible(engine: LocalEngine) -> None:
    def sample(seed: int) -> str:
        return "".join(run(engine, request(STORY, temperature=0.9, top_p=0.9, seed=seed, max_tokens=12))[0])

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_max_tokens_ends_with_length(engine: LocalEngine) -> None:
    deltas, final = run(engine, request(STORY, max_tokens=5))
    assert final.finish_reason == "length"
    assert final.usage is not None and final.usage.completion_tokens == 5
    assert "".join(deltas)


def test_stop_string_cuts_the_answer_and_is_not_emitted(
    engine: LocalEngine, story: tuple[list[str], GenerationEvent]
) -> None:
    baseline = "".join(story[0])
    stop = baseline[20:27]  # spans token boundaries, so the hold-back logic is exercised
    cut = baseline.index(stop)
    deltas, final = run(engine, request(STORY, max_tokens=STORY_TOKENS, stop=[stop]))
    text = "".join(deltas)
    assert final.finish_reason == "stop"
    assert text == baseline[:cut]
    assert stop not in text


def test_unknown_adapter_is_refused_not_ignored(engine: LocalEngine) -> None:
    req = request(QUESTION, max_tokens=4)
    req.adapters = [AdapterRef("pirate-speak", 0.8)]
    with pytest.raises(NotFoundError) as info:
        engine.validate(req)
    assert info.value.code == "adapter_not_found" and "pirate-speak" in info.value.message
    with pytest.raises(NotFoundError):
        list(engine.generate(req))


def test_bad_params_and_other_models_are_refused(engine: LocalEngine) -> None:
    with pytest.raises(InvalidParamsError):
        engine.validate(request(QUESTION, max_tokens=0))
    with pytest.raises(InvalidParamsError):
        engine.validate(request(QUESTION, top_p=0.0))
    with pytest.raises(InvalidParamsError) as bad:
        engine.validate(request(QUESTION, stop="###", max_tokens="5"))
    assert "stop must be a list" in bad.value.message and "max_tokens" in bad.value.message
    other = request(QUESTION)
    other.model = "gpt-4o"
    with pytest.raises(NotFoundError) as info:
        engine.validate(other)
    assert info.value.code == "model_not_found"


def test_cancellation_stops_between_tokens(engine: LocalEngine) -> None:
    cancel = threading.Event()
    events = []
    for event in engine.generate(request(STORY, max_tokens=200), cancel=cancel):
        events.append(event)
        cancel.set()
    assert events[-1].finish_reason == "cancelled"
    assert events[-1].usage is not None and events[-1].usage.completion_tokens < 10


def test_real_tokenizer_never_streams_a_broken_character(engine: LocalEngine) -> None:
    text = "Grüße aus 東京 🐉🔥 — ok"
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(lambda i: engine.tokenizer.decode(i, skip_special_tokens=True))
    deltas = [detok.push(t) for t in ids] + [detok.flush()]
    assert all(REPLACEMENT_CHAR not in d for d in deltas)
    assert "".join(deltas) == text
    assert "" in deltas  # the emoji span several byte tokens and were held back
