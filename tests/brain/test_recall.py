from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personad.brain import Brain, MiniLMEmbedder
from personad.brain.recall import fts_match_expression
from personad.errors import BadRequestError

DAY = 24 * 3600.0

NOTES = [
    "The quarterly budget meeting was moved to Thursday afternoon.",
    "Ana's dog is a golden retriever named Biscuit.",
    "The user prefers answers in French.",
    "Bob is allergic to peanuts and shellfish.",
    "Marta will be on vacation in Portugal until the 14th.",
    "We decided to use PostgreSQL for the analytics warehouse.",
    "The office coffee machine is broken again.",
    "The persona scout-2 is good at summarising long documents.",
    # Near-identical deploy-token notes: vectors cannot tell them apart, the exact code can.
    "Rotated the staging deploy token: ABC-1234-FALCON.",
    "Rotated the staging deploy token: QRS-9981-OSPREY.",
    "Rotated the staging deploy token: ZQX-4471-KESTREL.",
    "Rotated the staging deploy token: LMN-5520-HARRIER.",
    "Rotated the staging deploy token: TUV-3307-MERLIN.",
]


def _contents(results: list[dict[str, Any]]) -> list[str]:
    return [r["content"] for r in results]


@pytest.fixture(scope="module")
def real_brain(tmp_path_factory: pytest.TempPathFactory, minilm: MiniLMEmbedder) -> Iterator[Brain]:
    """A brain with the real model, shared by this module's read-only tests."""
    path = tmp_path_factory.mktemp("real") / "brain.sqlite"
    with Brain.open(path, embedder=minilm) as brain:
        brain.remember_many([{"type": "fact", "content": note} for note in NOTES])
        yield brain


@pytest.mark.slow  # the real MiniLM model (loaded once per session, a few seconds)
@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("When is the finance review scheduled?", NOTES[0]),
        ("Is anyone travelling abroad soon?", NOTES[4]),
        ("which database did we pick for reporting?", NOTES[5]),
    ],
)
def test_hybrid_recall_finds_a_paraphrase_that_fts_misses(
    real_brain: Brain, question: str, answer: str
) -> None:
    assert answer not in _contents(real_brain.recall(question, mode="fts"))
    [best] = real_brain.recall(question, k=1)
    assert best["content"] == answer
    assert best["ranks"] == {"fts": None, "vector": 1}


@pytest.mark.slow  # the real MiniLM model (loaded once per session, a few seconds)
def test_hybrid_recall_finds_an_exact_code_where_vectors_are_weak(real_brain: Brain) -> None:
    [best] = real_brain.recall("ZQX-4471-KESTREL", k=1)
    assert best["content"] == "Rotated the staging deploy token: ZQX-4471-KESTREL."
    assert best["ranks"]["fts"] == 1
    assert real_brain.recall("ZQX-4471-KESTREL", k=1, mode="fts")[0]["content"] == best["content"]


@pytest.mark.slow  # the real MiniLM model (loaded once per session, a few seconds)
def test_hybrid_recall_agrees_with_both_retrievers_on_an_easy_question(real_brain: Brain) -> None:
    [best] = real_brain.recall("What kind of dog does Ana have?", k=1)
    assert best["content"] == NOTES[1]
    assert best["ranks"] == {"fts": 1, "vector": 1}
    assert set(best) >= {"id", "type", "content", "context", "importance", "source", "key", "timestamp",
                         "valid_from", "valid_to", "score", "ranks"}  # fmt: skip


@pytest.mark.slow  # the real MiniLM model (loaded once per session, a few seconds)
def test_recall_results_are_ordered_by_score_and_limited(real_brain: Brain) -> None:
    results = real_brain.recall("deploy token", k=4)
    assert len(results) == 4
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


# --- with the hashing embedder ------------------------------------------------------------------------


def test_filters(brain: Brain) -> None:
    now = time.time()
    brain.remember_many(
        [
            {
                "type": "fact",
                "content": "alpha report ready",
                "source": "user:ana",
                "timestamp": now - 3 * DAY,
            },
            {"type": "observation", "content": "alpha report late", "source": "self", "timestamp": now - DAY},
            {"type": "instruction", "content": "alpha report format", "source": "user:bob", "timestamp": now},
            {"type": "fact", "key": "alpha.owner", "content": "alpha report owner is Ana", "timestamp": now},
        ]
    )

    def contents(**filters: Any) -> set[str]:
        return {r["content"] for r in brain.recall("alpha report", filters=filters)}

    assert len(contents()) == 4
    assert contents(type="fact") == {"alpha report ready", "alpha report owner is Ana"}
    assert contents(type=["observation", "instruction"]) == {"alpha report late", "alpha report format"}
    assert contents(source="user:bob") == {"alpha report format"}
    assert contents(source=["user:ana", "user:bob"]) == {"alpha report ready", "alpha report format"}
    assert contents(since=now - 2 * DAY, until=now - DAY / 2) == {"alpha report late"}
    assert contents(key="Alpha.Owner") == {"alpha report owner is Ana"}
    assert contents(type="nothing") == set()
    for mode in ("fts", "vector"):
        got = {r["content"] for r in brain.recall("alpha report", filters={"type": "fact"}, mode=mode)}
        assert got == {"alpha report ready", "alpha report owner is Ana"}


@pytest.mark.parametrize(
    "filters",
    [
        {"colour": "red"},
        {"type": 3},
        {"type": []},
        {"since": "monday"},
        {"include_closed": "yes"},
        {"key": ""},
    ],
)
def test_bad_filters_are_refused(brain: Brain, filters: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError) as err:
        brain.recall("x", filters=filters)
    assert err.value.code == "invalid_filter"


def test_narrow_filters_still_find_vector_matches_far_down_the_list(brain: Brain) -> None:
    brain.remember_many([{"type": "observation", "content": f"common words number {i}"} for i in range(300)])
    brain.remember({"type": "rare", "content": "common words but rare type"})
    [hit] = brain.recall("common words", filters={"type": "rare"}, mode="vector")
    assert hit["content"] == "common words but rare type"
    wide = brain.recall("common words", k=100, filters={"type": "observation"}, mode="vector")
    assert len(wide) == 100


@pytest.mark.parametrize(
    "query",
    ['"', "'", 'say "hi', "NEAR(a b)", "a AND OR NOT", "*", "col:x", "^start", "'; DROP TABLE memories; --",
     "((((", "-", "\x00", "emoji 🦜 ünïcödé", "a" * 5000, "   ", "?!.,;", "_", "___ __init__", "a_b-c"],
)  # fmt: skip
def test_any_query_text_is_safe(brain: Brain, query: str) -> None:
    brain.remember({"type": "fact", "content": "say hi to the parrot 🦜"})
    for mode in ("hybrid", "fts", "vector"):
        assert isinstance(brain.recall(query, mode=mode), list)
    assert brain.stats()["memories"] == 1


def test_fts_expression_quotes_every_word() -> None:
    assert (
        fts_match_expression('user\'s "favourite" NEAR(colour)')
        == '"user" OR "favourite" OR "near" OR "colour"'
    )
    assert fts_match_expression("what is it") == '"what" OR "is" OR "it"'  # only stopwords: keep them
    assert fts_match_expression("?!") is None


def test_importance_breaks_a_tie(brain: Brain) -> None:
    now = time.time()
    brain.remember({"type": "note", "content": "meet at the harbour", "source": "user:a", "importance": 0.2,
                    "timestamp": now})  # fmt: skip
    brain.remember({"type": "note", "content": "meet at the harbour", "source": "user:b", "importance": 0.9,
                    "timestamp": now})  # fmt: skip
    first, second = brain.recall("harbour", k=2)
    assert first["source"] == "user:b"
    assert first["ranks"] == second["ranks"]


def test_recency_breaks_a_tie(brain: Brain) -> None:
    now = time.time()
    brain.remember({"type": "note", "content": "lunch at noon", "source": "user:a", "timestamp": now})
    brain.remember(
        {"type": "note", "content": "lunch at noon", "source": "user:b", "timestamp": now - 90 * DAY}
    )
    first, second = brain.recall("lunch", k=2)
    assert first["source"] == "user:a"
    assert first["score"] > second["score"]


def test_relevance_beats_importance_and_recency(brain: Brain) -> None:
    now = time.time()
    brain.remember({"type": "note", "content": "zebra crossing repainted", "importance": 0.0,
                    "timestamp": now - 365 * DAY})  # fmt: skip
    brain.remember(
        {"type": "note", "content": "zebra", "importance": 1.0, "timestamp": now, "source": "user:x"}
    )
    brain.remember({"type": "note", "content": "crossing the road", "importance": 1.0, "timestamp": now})
    assert brain.recall("zebra crossing repainted", k=1)[0]["content"] == "zebra crossing repainted"


def test_empty_query_lists_the_newest(brain: Brain) -> None:
    now = time.time()
    for i in range(5):
        brain.remember({"type": "note", "content": f"note {i}", "timestamp": now - i})
    assert _contents(brain.recall("", k=3)) == ["note 0", "note 1", "note 2"]
    assert all(r["ranks"] == {"fts": None, "vector": None} for r in brain.recall(""))


@pytest.mark.parametrize(("k", "mode"), [(0, "hybrid"), (1001, "hybrid"), (True, "hybrid"), (5, "semantic")])
def test_bad_recall_arguments(brain: Brain, k: Any, mode: Any) -> None:
    with pytest.raises(BadRequestError) as err:
        brain.recall("x", k=k, mode=mode)
    assert err.value.code == "invalid_recall"


def test_recall_on_an_empty_brain(brain_path: Path, brain: Brain) -> None:
    assert brain.recall("anything") == []
    assert brain.recall("anything", filters={"type": "fact"}) == []
