from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from personad.brain import SCHEMA_VERSION, Brain, HashEmbedder
from personad.brain.portable import EXPORT_TABLES
from personad.errors import BadRequestError, ConflictError


def _fill(brain: Brain) -> None:
    now = time.time()
    brain.remember_many(
        [
            {"type": "fact", "key": "home", "content": "Lives in Lisbon", "timestamp": now - 100},
            {"type": "observation", "content": "Ünïcödé and emoji 🦜 survive", "context": {"n": [1, 2]}},
            {"type": "collaboration", "with_persona": "p2", "room_id": "r", "learned": {"tip": "batch"}},
        ]
    )
    brain.remember({"type": "fact", "key": "home", "content": "Lives in Porto", "importance": 0.9})
    brain.save_achievement("sql", "sha256:aa", 0.8, ["reports"])
    brain.use_skill("sql")
    goal = brain.goal_set("Ship it", priority=0.7)
    brain.goal_update(goal["id"], progress=0.5)
    brain.feel("proud", 0.8, 0.4, "shipped")
    brain.record_evolution("slow SQL", "sha256:bb", 0.6)


def _dump(brain: Brain) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in EXPORT_TABLES:
        rows = brain.query(f"SELECT * FROM {table} ORDER BY rowid")
        out[table] = [{k: v for k, v in row.items() if k != "seq"} for row in rows]
    return out


def test_export_then_import_round_trips_every_table(brain: Brain, tmp_path: Path) -> None:
    _fill(brain)
    export = brain.export_jsonl(tmp_path / "out" / "brain.jsonl")
    assert export["schema_version"] == SCHEMA_VERSION
    assert export["rows"]["memories"] == 4 and export["rows"]["interactions"] == 1

    lines = (tmp_path / "out" / "brain.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "personad-brain" and header["schema_version"] == SCHEMA_VERSION
    assert {json.loads(line)["table"] for line in lines[1:]} == set(EXPORT_TABLES)

    with Brain.open(tmp_path / "copy" / "brain.sqlite", embedder=HashEmbedder()) as copy:
        result = copy.import_jsonl(tmp_path / "out" / "brain.jsonl")
        assert result["inserted"] == export["rows"]
        assert _dump(copy) == _dump(brain)
        assert copy.stats()["vectors"] == 4
        assert [r["content"] for r in copy.recall("lives", k=1, mode="vector")] == ["Lives in Porto"]
        assert copy.recall("emoji", mode="fts")[0]["context"] == {"n": [1, 2]}

        again = copy.import_jsonl(tmp_path / "out" / "brain.jsonl")
        assert sum(again["inserted"].values()) == 0
        assert again["skipped"] == export["rows"]
        assert _dump(copy) == _dump(brain)


def test_importing_into_a_brain_that_knows_other_things(brain: Brain, tmp_path: Path) -> None:
    _fill(brain)
    brain.export_jsonl(tmp_path / "a.jsonl")
    with Brain.open(tmp_path / "b" / "brain.sqlite", embedder=HashEmbedder()) as other:
        # The same collaboration under another id, and a newer claim about "home".
        other.remember(
            {"type": "collaboration", "with_persona": "p2", "room_id": "r", "learned": {"tip": "batch"}}
        )
        newest = other.remember({"type": "fact", "key": "home", "content": "Lives in Faro"})
        result = other.import_jsonl(tmp_path / "a.jsonl")
        assert result["inserted"]["memories"] == 3
        assert result["skipped"]["memories"] == 1
        open_homes = other.recall("", filters={"key": "home"})
        assert [m["id"] for m in open_homes] == [newest["id"]]
        assert len(other.interactions()) == 2  # ours and theirs (pointing at our copy of the memory)
        memory_ids = {i["memory_id"] for i in other.interactions()}
        assert len(memory_ids) == 1


def test_newer_export_is_refused(brain: Brain, tmp_path: Path) -> None:
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps({"format": "personad-brain", "schema_version": SCHEMA_VERSION + 1}) + "\n")
    with pytest.raises(ConflictError) as err:
        brain.import_jsonl(path)
    assert err.value.code == "schema_too_new"


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([], "empty"),
        (["not json"], "not JSON"),
        ([{"format": "other"}], "not a brain export"),
        ([{"format": "personad-brain", "schema_version": 1}, {"table": "secrets", "row": {}}], "expected"),
        ([{"format": "personad-brain", "schema_version": 3, "tables": {"goals": 2}}], "incomplete"),
        (
            [{"format": "personad-brain", "schema_version": 3},
             {"table": "goals", "row": {"id": "g", "bogus": 1}}],
            "unknown column",
        ),
        (
            [{"format": "personad-brain", "schema_version": 3},
             {"table": "goals", "row": {"id": "g", "description": "d", "status": "someday", "created_at": 0,
                                        "updated_at": 0}}],
            "cannot import goals",
        ),
        (
            [{"format": "personad-brain", "schema_version": 3},
             {"table": "goals", "row": {"id": "g", "description": {"nested": 1}, "created_at": 0}}],
            "cannot import goals",
        ),
        (
            [{"format": "personad-brain", "schema_version": 3},
             {"table": "goals", "row": {"id": "g", "description": "d", "created_at": 2**70}}],
            "cannot import goals",
        ),
    ],
)  # fmt: skip
def test_malformed_exports_are_refused_atomically(
    brain: Brain, tmp_path: Path, lines: list[Any], fragment: str
) -> None:
    brain.goal_set("keep me")
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    with pytest.raises(BadRequestError) as err:
        brain.import_jsonl(path)
    assert err.value.code == "invalid_import"
    assert fragment in err.value.message
    assert brain.stats()["goals"] == 1


def test_import_of_a_missing_file(brain: Brain, tmp_path: Path) -> None:
    with pytest.raises(BadRequestError):
        brain.import_jsonl(tmp_path / "nope.jsonl")
