from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from personad.brain import Brain, HashEmbedder
from personad.errors import BadRequestError, NotFoundError

DAY = 24 * 3600.0


def _ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in results]


# --- remember -----------------------------------------------------------------------------------------


def test_remember_stores_and_returns_the_memory(brain: Brain) -> None:
    result = brain.remember(
        {
            "type": "observation",
            "content": "  The build is green  ",
            "context": {"room": "r1"},
            "importance": 0.8,
        }
    )
    assert result["created"] is True
    assert result["closed"] == []
    memory = brain.get(result["id"])
    assert memory["content"] == "The build is green"
    assert memory["context"] == {"room": "r1"}
    assert memory["importance"] == 0.8
    assert memory["source"] == "self"
    assert memory["valid_to"] is None
    assert memory["valid_from"] == memory["timestamp"] == pytest.approx(time.time(), abs=5)


def test_remembering_the_same_thing_twice_is_idempotent(brain: Brain) -> None:
    first = brain.remember({"type": "fact", "content": "Water boils at 100 C", "source": "user:ana"})
    again = brain.remember({"type": "fact", "content": "Water   boils at\n100 C ", "source": "user:ana"})
    assert again == {"id": first["id"], "created": False, "closed": []}
    other_source = brain.remember({"type": "fact", "content": "Water boils at 100 C", "source": "user:bob"})
    assert other_source["created"] is True
    assert brain.stats()["memories"] == 2


def test_remember_many_is_one_batch_and_dedupes_within_it(brain: Brain) -> None:
    results = brain.remember_many(
        [
            {"type": "conversation", "content": "hello"},
            {"type": "conversation", "content": "hello"},
            {"type": "conversation", "content": "goodbye"},
        ]
    )
    assert [r["created"] for r in results] == [True, False, True]
    assert results[0]["id"] == results[1]["id"]
    assert brain.stats()["memories"] == brain.stats()["vectors"] == 2
    assert brain.remember_many([]) == []


def test_a_bad_memory_in_a_batch_stores_nothing(brain: Brain) -> None:
    with pytest.raises(BadRequestError) as err:
        brain.remember_many([{"type": "fact", "content": "fine"}, {"type": "fact", "content": ""}])
    assert err.value.code == "invalid_memory"
    assert "memory 1" in err.value.message
    assert brain.stats()["memories"] == 0


@pytest.mark.parametrize(
    ("memory", "fragment"),
    [
        ("not a dict", "must be an object"),
        ({"content": "no type"}, "type must be"),
        ({"type": "Fact", "content": "x"}, "type must be"),
        ({"type": "fact two", "content": "x"}, "type must be"),
        ({"type": "fact"}, "content must be"),
        ({"type": "fact", "content": "   "}, "content must be"),
        ({"type": "fact", "content": 42}, "content must be"),
        ({"type": "fact", "content": "x", "importance": 1.5}, "importance"),
        ({"type": "fact", "content": "x", "importance": True}, "importance"),
        ({"type": "fact", "content": "x", "context": [1]}, "context must be an object"),
        ({"type": "fact", "content": "x", "context": {"f": object()}}, "JSON"),
        ({"type": "fact", "content": "x", "source": "User Ana"}, "source must"),
        ({"type": "fact", "content": "x", "key": ""}, "key must"),
        ({"type": "fact", "content": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"type": "fact", "content": "x", "timestamp": float("nan")}, "timestamp"),
        ({"type": "fact", "content": "x", "colour": "red"}, "unknown memory field"),
        ({"type": "collaboration", "learned": ["x"]}, "with_persona"),
        ({"type": "collaboration", "with_persona": "p2"}, "content must be"),
    ],
)
def test_bad_memories_are_refused_with_a_clear_message(brain: Brain, memory: Any, fragment: str) -> None:
    with pytest.raises(BadRequestError) as err:
        brain.remember(memory)
    assert err.value.code == "invalid_memory"
    assert fragment in err.value.message


def test_collaboration_records_an_interaction(brain: Brain) -> None:
    result = brain.remember(
        {
            "type": "collaboration",
            "with_persona": "scout-2",
            "room_id": "general",
            "outcome": "shipped the parser",
            "learned": ["split tokens first", "test edge cases"],
        }
    )
    memory = brain.get(result["id"])
    assert "scout-2" in memory["content"]
    assert "split tokens first" in memory["content"]
    assert memory["context"]["with_persona"] == "scout-2"
    [interaction] = brain.interactions(with_persona="scout-2")
    assert interaction["room_id"] == "general"
    assert interaction["outcome"] == "shipped the parser"
    assert interaction["learned"] == ["split tokens first", "test edge cases"]
    assert interaction["memory_id"] == result["id"]
    assert brain.interactions(with_persona="nobody") == []
    # Re-sending it neither duplicates the memory nor the interaction.
    again: dict[str, Any] = {
        "type": "collaboration",
        "with_persona": "scout-2",
        "room_id": "general",
        "outcome": "shipped the parser",
        "learned": ["split tokens first", "test edge cases"],
    }
    assert brain.remember(again) == {"id": result["id"], "created": False, "closed": []}
    assert len(brain.interactions()) == 1


def test_get_unknown_memory_is_not_found(brain: Brain) -> None:
    with pytest.raises(NotFoundError):
        brain.get("mem_nope")


# --- facts that change --------------------------------------------------------------------------------


def test_a_newer_contradicting_fact_closes_the_older_one(brain: Brain) -> None:
    old = brain.remember({"type": "fact", "key": "user.city", "content": "The user lives in Lisbon",
                          "timestamp": time.time() - 10 * DAY})  # fmt: skip
    new = brain.remember({"type": "fact", "key": "User.City", "content": "The user lives in Porto"})
    assert new["closed"] == [old["id"]]
    closed = brain.get(old["id"])
    assert closed["valid_to"] == brain.get(new["id"])["valid_from"]
    assert brain.stats()["memories"] == 2  # never deleted

    assert _ids(brain.recall("where does the user live")) == [new["id"]]
    for mode in ("fts", "vector"):
        assert _ids(brain.recall("user lives", mode=mode)) == [new["id"]]
    assert set(_ids(brain.recall("where does the user live", filters={"include_closed": True}))) == {
        old["id"],
        new["id"],
    }
    assert _ids(brain.recall("user lives", filters={"as_of": time.time() - 5 * DAY})) == [old["id"]]
    assert _ids(brain.recall("", filters={"key": "user.city"})) == [new["id"]]


def test_re_remembering_a_closed_fact_does_not_reopen_it(brain: Brain) -> None:
    old = brain.remember({"type": "fact", "key": "mood", "content": "calm", "timestamp": time.time() - 60})
    brain.remember({"type": "fact", "key": "mood", "content": "busy"})
    again = brain.remember({"type": "fact", "key": "mood", "content": "calm", "timestamp": time.time() - 60})
    assert again == {"id": old["id"], "created": False, "closed": []}
    assert brain.get(old["id"])["valid_to"] is not None


def test_an_older_fact_learned_late_is_stored_already_closed(brain: Brain) -> None:
    now = time.time()
    current = brain.remember({"type": "fact", "key": "version", "content": "v2", "timestamp": now})
    late = brain.remember({"type": "fact", "key": "version", "content": "v1", "timestamp": now - 100})
    assert late["closed"] == []
    assert brain.get(late["id"])["valid_to"] == now
    assert brain.get(current["id"])["valid_to"] is None


def test_the_same_fact_from_another_source_corroborates(brain: Brain) -> None:
    a = brain.remember({"type": "fact", "key": "sky", "content": "The sky is blue", "source": "user:ana"})
    b = brain.remember({"type": "fact", "key": "sky", "content": "The sky is  blue", "source": "persona:p2"})
    assert b["created"] is True and b["closed"] == []
    assert brain.get(a["id"])["valid_to"] is None


def test_facts_of_other_keys_or_types_are_untouched(brain: Brain) -> None:
    a = brain.remember({"type": "fact", "key": "a", "content": "one"})
    brain.remember({"type": "fact", "key": "b", "content": "two"})
    brain.remember({"type": "preference", "key": "a", "content": "three"})
    assert brain.get(a["id"])["valid_to"] is None


# --- skills, goals, emotions, evolution, stats --------------------------------------------------------


def test_skills_upsert_and_count_uses(brain: Brain) -> None:
    skill = brain.save_achievement("sql", "sha256:aa", 0.7, usage_scenarios=["reports"])
    assert skill["usage_count"] == 0 and skill["usage_scenarios"] == ["reports"]
    updated = brain.save_achievement("sql", "sha256:bb", 0.9, usage_scenarios=["reports", "migrations"])
    assert updated["lora_hash"] == "sha256:bb"
    assert updated["effectiveness"] == 0.9
    assert updated["usage_scenarios"] == ["reports", "migrations"]
    assert updated["acquired_at"] == skill["acquired_at"]
    assert brain.use_skill("sql")["usage_count"] == 1
    assert brain.use_skill("sql")["usage_count"] == 2
    assert [s["skill_id"] for s in brain.skills()] == ["sql"]
    with pytest.raises(NotFoundError):
        brain.use_skill("juggling")
    with pytest.raises(BadRequestError):
        brain.save_achievement("sql", "h", 1.2)


def test_goals_lifecycle(brain: Brain) -> None:
    low = brain.goal_set("Tidy the notes", priority=0.2)
    high = brain.goal_set("Ship the parser", priority=0.9)
    assert low["status"] == "active" and low["progress"] == 0
    assert [g["id"] for g in brain.goal_list()] == [high["id"], low["id"]]
    done = brain.goal_update(high["id"], status="done", progress=1.0)
    assert done["status"] == "done" and done["progress"] == 1.0
    assert done["updated_at"] >= done["created_at"]
    assert [g["id"] for g in brain.goal_list("active")] == [low["id"]]
    assert brain.goal_update(low["id"], description="Tidy all notes")["description"] == "Tidy all notes"
    with pytest.raises(NotFoundError):
        brain.goal_update("goal_missing", status="done")
    for bad in ({"status": "finished"}, {"progress": 2}, {"priority": -1}):
        with pytest.raises(BadRequestError):
            brain.goal_update(low["id"], **bad)
    with pytest.raises(BadRequestError):
        brain.goal_set("")
    with pytest.raises(BadRequestError):
        brain.goal_list("someday")


def test_emotions_newest_first_and_validated(brain: Brain) -> None:
    brain.feel("curious", 0.4, 0.6, cause="new room")
    brain.feel("frustrated", -0.5, 0.8)
    assert [e["label"] for e in brain.emotions()] == ["frustrated", "curious"]
    assert len(brain.emotions(limit=1)) == 1
    for args in (("x", 2, 0.5), ("x", 0, -0.1), ("", 0, 0)):
        with pytest.raises(BadRequestError):
            brain.feel(*args)


def test_evolution_history(brain: Brain) -> None:
    step = brain.record_evolution("repeated SQL errors", "sha256:cc", 0.75)
    assert brain.evolution_history() == [step]
    with pytest.raises(BadRequestError):
        brain.record_evolution("x", None, 7)
    # What else a step measured (an exam's per-family rates) comes back as the object it was.
    details = {"families": {"dan": {"hits": 1, "total": 9}}, "source": "garak"}
    exam = brain.record_evolution("exam:garak", None, 0.9, details=details)
    assert exam["details"] == details and brain.evolution_history(limit=1) == [exam]
    with pytest.raises(BadRequestError):
        brain.record_evolution("x", None, 0.5, details=["not", "an", "object"])  # type: ignore[arg-type]


def test_stats_counts_rows(brain: Brain) -> None:
    brain.remember({"type": "fact", "key": "k", "content": "one"})
    brain.remember({"type": "fact", "key": "k", "content": "two"})
    brain.goal_set("g")
    stats = brain.stats()
    assert stats["memories"] == 2 and stats["memories_open"] == 1 and stats["memories_closed"] == 1
    assert stats["vectors"] == 2 and stats["goals"] == 1 and stats["skills"] == 0
    assert stats["schema_version"] == 4


# --- concurrency and lifecycle ------------------------------------------------------------------------


def test_threads_and_a_second_connection_can_write_at_once(brain: Brain, brain_path: Path) -> None:
    other = Brain.open(brain_path, embedder=HashEmbedder())
    ids: list[str] = []
    lock = threading.Lock()

    def work(target: Brain, n: int) -> None:
        for i in range(20):
            result = target.remember({"type": "observation", "content": f"thread {n} note {i}"})
            target.recall(f"note {i}", k=3)
            with lock:
                ids.append(result["id"])

    threads = [threading.Thread(target=work, args=(brain if n % 2 else other, n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert len(set(ids)) == 80
    assert brain.stats()["memories"] == brain.stats()["vectors"] == 80


def test_close_is_idempotent_and_reopen_keeps_data(brain_path: Path) -> None:
    with Brain.open(brain_path, embedder=HashEmbedder()) as brain:
        memory_id = brain.remember({"type": "fact", "content": "persisted"})["id"]
    brain.close()
    with Brain.open(brain_path, embedder=HashEmbedder()) as again:
        assert again.get(memory_id)["content"] == "persisted"


def test_opening_with_another_embedder_re_embeds(brain_path: Path) -> None:
    class Other(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.name = "other-space"
            self.calls = 0

        def embed(self, texts: list[str]) -> Any:
            self.calls += len(texts)
            return super().embed(texts)

    with Brain.open(brain_path, embedder=HashEmbedder()) as brain:
        brain.remember_many([{"type": "fact", "content": f"note {i}"} for i in range(3)])
    other = Other()
    with Brain.open(brain_path, embedder=other) as brain:
        assert other.calls == 3
        assert brain.stats()["vectors"] == 3
        assert brain.query("SELECT value FROM brain_meta WHERE key = 'embedder'") == [
            {"value": "other-space"}
        ]


def test_embedder_of_the_wrong_size_is_refused(brain_path: Path) -> None:
    with pytest.raises(BadRequestError) as err:
        Brain.open(brain_path, embedder=HashEmbedder(dim=16))
    assert err.value.code == "invalid_embedder"
