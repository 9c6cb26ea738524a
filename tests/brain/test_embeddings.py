from __future__ import annotations

import threading

import numpy as np
import pytest

from personad.brain import Embedder, HashEmbedder, MiniLMEmbedder, default_embedder
from personad.brain.embeddings import EMBEDDING_DIM, normalise_rows


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_hash_embedder_is_deterministic_normalised_and_word_based() -> None:
    emb = HashEmbedder()
    vectors = emb.embed(["The cat sat", "the CAT sat", "quantum chromodynamics", ""])
    assert vectors.shape == (4, EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[1])  # case-insensitive, same words
    np.testing.assert_array_equal(
        HashEmbedder().embed(["The cat sat"])[0], vectors[0]
    )  # stable across instances
    assert _cos(vectors[0], vectors[2]) < 0.5
    assert emb.embed([]).shape == (0, EMBEDDING_DIM)


def test_normalise_rows_gives_zero_rows_a_unit_vector() -> None:
    out = normalise_rows(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.6, 0.8]])


def test_embedders_satisfy_the_protocol() -> None:
    assert isinstance(HashEmbedder(), Embedder)
    assert isinstance(MiniLMEmbedder(), Embedder)


def test_default_embedder_is_a_process_wide_singleton() -> None:
    assert default_embedder() is default_embedder()


@pytest.mark.slow
def test_minilm_embeds_paraphrases_close_and_unrelated_text_far(minilm: MiniLMEmbedder) -> None:
    a, b, c = minilm.embed(
        [
            "The quarterly budget meeting was moved to Thursday afternoon.",
            "When is the finance review scheduled?",
            "Bob is allergic to peanuts.",
        ]
    )
    assert a.shape == (EMBEDDING_DIM,)
    np.testing.assert_allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0, rtol=1e-5)
    assert _cos(a, b) > _cos(a, c) + 0.1


@pytest.mark.slow
def test_minilm_is_thread_safe_and_batch_independent(minilm: MiniLMEmbedder) -> None:
    texts = [f"memory number {i} about topic {i % 3}" for i in range(8)]
    expected = minilm.embed(texts)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = minilm.embed([texts[i]])[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, vector in results.items():
        np.testing.assert_allclose(vector, expected[i], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("texts", [[], ["x"]])
def test_minilm_shapes(minilm: MiniLMEmbedder, texts: list[str]) -> None:
    assert minilm.embed(texts).shape == (len(texts), EMBEDDING_DIM)
