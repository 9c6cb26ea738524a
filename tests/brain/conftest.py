"""Brains for tests: a hashing embedder by default, the real MiniLM model where recall quality matters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from personad.brain import Brain, HashEmbedder, MiniLMEmbedder, default_embedder


@pytest.fixture
def brain_path(tmp_path: Path) -> Path:
    return tmp_path / "personas" / "scout" / "brain.sqlite"


@pytest.fixture
def brain(brain_path: Path) -> Iterator[Brain]:
    """A fresh brain with the hashing embedder (exact-word vectors, no model)."""
    with Brain.open(brain_path, embedder=HashEmbedder()) as b:
        yield b


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder, loaded once for the whole session."""
    embedder = default_embedder()
    embedder.embed(["load the model"])
    return embedder
