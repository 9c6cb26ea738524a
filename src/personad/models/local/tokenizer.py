"""The tokenizer of the inference-only worker: ``tokenizers`` and the model's Jinja chat template.

The worker needs five things from a tokenizer: render the chat template, encode the prompt, decode ids,
and the end-of-turn and unknown token ids. transformers' ``AutoTokenizer`` provides them but costs ~1 s
of import and ~1 s of loading (plus ~110 MB) on every worker start; the same ``tokenizer.json`` loads in
``tokenizers`` (the Rust library transformers' fast tokenizers run on) in a tenth of that. The template is
rendered as transformers renders it (a sandboxed Jinja environment with ``trim_blocks`` and
``lstrip_blocks``); a test checks that both produce the same ids for the same conversations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ChatTokenizer:
    """The subset of a transformers tokenizer that ``LocalEngine`` and the batch scheduler use."""

    def __init__(self, backend: Any, config: dict[str, Any], chat_template: str | None) -> None:
        self.backend = backend
        self.chat_template = chat_template
        self.eos_token = _token_text(config.get("eos_token"))
        self.unk_token = _token_text(config.get("unk_token"))
        self.eos_token_id = self._id(self.eos_token)
        self.unk_token_id = self._id(self.unk_token)
        self._template: Any = None

    @classmethod
    def load(cls, model_dir: Path) -> ChatTokenizer:
        from tokenizers import Tokenizer

        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        template_path = model_dir / "chat_template.jinja"
        template = config.get("chat_template")
        if template_path.is_file():  # where transformers 5 saves it
            template = template_path.read_text(encoding="utf-8")
        return cls(Tokenizer.from_file(str(model_dir / "tokenizer.json")), config, template)

    def _id(self, token: str | None) -> int | None:
        if token is None:
            return None
        value = self.backend.token_to_id(token)
        return int(value) if value is not None else None

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def convert_tokens_to_ids(self, token: str) -> int | None:
        value = self._id(token)
        return value if value is not None else self.unk_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = False, tokenize: bool = True
    ) -> Any:
        if self._template is None:
            if not self.chat_template:
                raise ValueError("this tokenizer has no chat template")
            self._template = _environment().from_string(self.chat_template)
        text = self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            eos_token=self.eos_token,
            unk_token=self.unk_token,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json gives it: a string or an AddedToken-shaped dict."""
    if isinstance(value, dict):
        return str(value.get("content")) if value.get("content") is not None else None
    return str(value) if value is not None else None


def _environment() -> Any:
    """Jinja set up as transformers sets it up for chat templates."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env
