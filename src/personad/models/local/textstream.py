"""Pure text plumbing for the local model: prompt rendering, incremental detokenising, stop strings.

Nothing here imports torch, so it is cheap to import and unit-testable with a fake tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from personad.models.base import ChatMessage

# SmolLM2's own template (ChatML). Used only when a GGUF carries no template, so the prompt shape is the
# one the model was tuned on either way.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

REPLACEMENT_CHAR = "\ufffd"  # what a byte-level tokenizer decodes an unfinished UTF-8 sequence to


def render_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """Turn chat messages into the ``{"role", "content"}`` dicts a chat template takes.

    The local model has no tool role, so a ``tool`` message becomes a ``user`` message carrying a
    ``[RESULT:name]`` line, the same shape the ``[CMD:...]`` line protocol uses for observations (content
    that already is such a line is kept as is). An assistant message with native tool calls gets them
    appended as ``[CMD:name] {json}`` lines, so a conversation recorded with another provider still reads
    sensibly to the local model.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        content = message.content
        role: str = message.role
        if role == "tool":
            role = "user"
            if not content.lstrip().startswith(("[RESULT", "[ERROR")):
                label = f"[RESULT:{message.name}]" if message.name else "[RESULT]"
                content = f"{label} {content}"
        elif role == "assistant" and message.tool_calls:
            lines = [content] if content else []
            for call in message.tool_calls:
                args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
                lines.append(f"[CMD:{call.name}] {args}")
            content = "\n".join(lines)
        out.append({"role": role, "content": content})
    return out


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character.

    Each step decodes all generated ids (a few hundred at most, microseconds with a fast tokenizer) and
    emits what is new past the text already emitted. Decoding the whole sequence, rather than token by
    token, keeps tokenizers that merge across token boundaries (leading spaces, byte fallback) correct.
    While the decoded text ends in U+FFFD the last token(s) are the first bytes of a multi-byte character,
    so that tail is held back until the character completes.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._emitted = 0  # characters of the decoded text already handed out

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now final (possibly empty)."""
        self._ids.append(token_id)
        text = self._decode(self._ids)
        stable = len(text.rstrip(REPLACEMENT_CHAR))
        if stable <= self._emitted:
            return ""
        delta = text[self._emitted : stable]
        self._emitted = stable
        return delta

    def flush(self) -> str:
        """The held-back tail at the end of generation, minus an unfinished character (cut off by a limit)."""
        text = self._decode(self._ids).rstrip(REPLACEMENT_CHAR)
        delta = text[self._emitted :]
        self._emitted = max(self._emitted, len(text))
        return delta


class StopFilter:
    """Passes streamed text through until one of the stop strings appears; the stop string is not emitted.

    Text that could be the start of a stop string is held back until the following text settles it. Every
    character is emitted at most once: whatever was emitted is known not to start a stop string, so a match
    can only begin inside the held-back buffer.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]  # an empty stop string would end every answer before it starts
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what may be emitted now. After a stop string is seen, ``stopped`` is set."""
        if self.stopped:
            return ""
        self._pending += text
        cut = self._first_match(self._pending)
        if cut is not None:
            self.stopped = True
            emit, self._pending = self._pending[:cut], ""
            return emit
        keep = self._partial_suffix(self._pending)
        emit = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(emit) :]
        return emit

    def flush(self) -> str:
        """Generation ended without a stop string: release whatever was held back."""
        rest, self._pending = ("" if self.stopped else self._pending), ""
        return rest

    def _first_match(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        return min(found) if found else None

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
