"""Stop-string hold-back, UTF-8-safe detokenising and prompt rendering, with no model."""

from __future__ import annotations

import pytest

from personad.models.base import ChatMessage, ToolCall
from personad.models.local.textstream import (
    REPLACEMENT_CHAR,
    IncrementalDetokenizer,
    StopFilter,
    render_messages,
)


def run_stop_filter(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    sf = StopFilter(stops)
    out = [sf.feed(p) for p in pieces]
    if not sf.stopped:
        out.append(sf.flush())
    return out, sf.stopped


def test_stop_string_is_cut_and_not_emitted() -> None:
    out, stopped = run_stop_filter(["END"], ["hello ", "wor", "ld E", "N", "D more"])
    assert stopped
    assert "".join(out) == "hello world "
    assert out == ["hello ", "wor", "ld ", "", ""]  # "E" and "EN" were held back, never emitted


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    out, stopped = run_stop_filter(["END"], ["the E", "N", "ergy"])
    assert not stopped
    assert out == ["the ", "", "ENergy", ""]


def test_text_held_back_at_the_end_is_flushed() -> None:
    out, stopped = run_stop_filter(["</s>"], ["a </"])
    assert not stopped
    assert "".join(out) == "a </"
    assert out[0] == "a "


def test_earliest_of_several_stops_wins_even_across_pieces() -> None:
    out, stopped = run_stop_filter(["User:", "\n\n"], ["Hi.\n", "\nUser: x"])
    assert stopped
    assert "".join(out) == "Hi."


def test_stop_inside_a_single_piece() -> None:
    out, stopped = run_stop_filter(["###"], ["abc###def"])
    assert stopped and out == ["abc"]


def test_overlapping_prefixes_hold_back_the_longest() -> None:
    # "aab" contains the stop's prefix "a" and "aa"; the longest partial match decides what is held.
    out, stopped = run_stop_filter(["aab"], ["xa", "a", "a", "b"])
    assert stopped
    assert "".join(out) == "xa"


def test_empty_stop_strings_are_ignored() -> None:
    out, stopped = run_stop_filter([""], ["abc"])
    assert not stopped and "".join(out) == "abc"


class FakeByteTokenizer:
    """One token per UTF-8 byte, decoded the way byte-level BPE tokenizers do (U+FFFD for a partial char)."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("text", ["plain ascii", "Grüße, 世界 🐉!", "🐉🐉", "ends in é"])
def test_detokenizer_never_emits_a_broken_character(text: str) -> None:
    tok = FakeByteTokenizer()
    detok = IncrementalDetokenizer(tok.decode)
    deltas = [detok.push(t) for t in tok.encode(text)]
    deltas.append(detok.flush())
    assert all(REPLACEMENT_CHAR not in d for d in deltas)
    assert "".join(deltas) == text
    if text != "plain ascii":
        assert "" in deltas  # some bytes were held back until their character completed


def test_detokenizer_drops_a_character_cut_off_by_the_token_limit() -> None:
    tok = FakeByteTokenizer()
    detok = IncrementalDetokenizer(tok.decode)
    ids = tok.encode("ok 🐉")[:-2]  # the dragon's last two bytes were never generated
    deltas = [detok.push(t) for t in ids] + [detok.flush()]
    assert "".join(deltas) == "ok "


def test_render_messages_maps_tool_results_to_user_lines() -> None:
    rendered = render_messages(
        [
            ChatMessage("system", "be brief"),
            ChatMessage("user", "title?"),
            ChatMessage("assistant", "", tool_calls=[ToolCall("c1", "browser_js", {"script": "1"})]),
            ChatMessage("tool", '{"value": 1}', name="browser_js", tool_call_id="c1"),
            ChatMessage("tool", '[ERROR:x] {"code": "nope"}'),
            ChatMessage("tool", "42"),
        ]
    )
    assert rendered == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "title?"},
        {"role": "assistant", "content": '[CMD:browser_js] {"script": "1"}'},
        {"role": "user", "content": '[RESULT:browser_js] {"value": 1}'},
        {"role": "user", "content": '[ERROR:x] {"code": "nope"}'},
        {"role": "user", "content": "[RESULT] 42"},
    ]
