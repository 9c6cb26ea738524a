from __future__ import annotations

import json
import re
import sqlite3 as stock_sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from personad.brain import SCHEMA_VERSION, Brain, HashEmbedder
from personad.brain.db import connect
from personad.brain.schema import MIGRATIONS, applied_migrations, migrate, schema_version
from personad.errors import ConflictError

# The whole schema a fresh brain ends up with. A migration that changes it must change this too; the
# FTS5 and sqlite-vec storage tables are left out (their modules own them).
EXPECTED_SCHEMA = {
    ("index", "emotions_time"): "CREATE INDEX emotions_time ON emotions (timestamp)",
    ("index", "evolution_history_time"): (
        "CREATE INDEX evolution_history_time ON evolution_history (timestamp)"
    ),
    ("index", "goals_status_priority"): "CREATE INDEX goals_status_priority ON goals (status, priority)",
    ("index", "interactions_memory"): (
        "CREATE INDEX interactions_memory ON interactions (memory_id) WHERE memory_id IS NOT NULL"
    ),
    ("index", "interactions_time"): "CREATE INDEX interactions_time ON interactions (timestamp)",
    ("index", "interactions_with_time"): (
        "CREATE INDEX interactions_with_time ON interactions (with_persona, timestamp)"
    ),
    ("index", "memories_key"): "CREATE INDEX memories_key ON memories (key) WHERE key IS NOT NULL",
    ("index", "memories_open_key"): (
        "CREATE INDEX memories_open_key ON memories (type, key) WHERE key IS NOT NULL AND valid_to IS NULL"
    ),
    ("index", "memories_source"): "CREATE INDEX memories_source ON memories (source)",
    ("index", "memories_time"): "CREATE INDEX memories_time ON memories (timestamp)",
    ("index", "memories_type_time"): "CREATE INDEX memories_type_time ON memories (type, timestamp)",
    ("table", "brain_meta"): "CREATE TABLE brain_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    ("table", "emotions"): (
        "CREATE TABLE emotions (id TEXT PRIMARY KEY, label TEXT NOT NULL, valence REAL NOT NULL CHECK "
        "(valence BETWEEN -1 AND 1), arousal REAL NOT NULL CHECK (arousal BETWEEN 0 AND 1), cause TEXT "
        "NOT NULL DEFAULT '', timestamp REAL NOT NULL) STRICT"
    ),
    ("table", "evolution_history"): (
        "CREATE TABLE evolution_history (id TEXT PRIMARY KEY, trigger_pattern TEXT NOT NULL, "
        "lora_generated TEXT, success_rate REAL NOT NULL CHECK (success_rate BETWEEN 0 AND 1), timestamp "
        "REAL NOT NULL, details TEXT) STRICT"
    ),
    ("table", "goals"): (
        "CREATE TABLE goals (id TEXT PRIMARY KEY, description TEXT NOT NULL, status TEXT NOT NULL DEFAULT "
        "'active' CHECK (status IN ('active', 'done', 'abandoned', 'blocked')), priority REAL NOT NULL "
        "DEFAULT 0.5 CHECK (priority BETWEEN 0 AND 1), progress REAL NOT NULL DEFAULT 0 CHECK (progress "
        "BETWEEN 0 AND 1), created_at REAL NOT NULL, updated_at REAL NOT NULL) STRICT"
    ),
    ("table", "interactions"): (
        "CREATE TABLE interactions (id TEXT PRIMARY KEY, with_persona TEXT NOT NULL, room_id TEXT, "
        "outcome TEXT, learned TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(learned)), timestamp REAL "
        "NOT NULL, memory_id TEXT REFERENCES memories (id)) STRICT"
    ),
    ("table", "memories"): (
        "CREATE TABLE memories (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, "
        "content TEXT NOT NULL, context TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(context)), relevance "
        "REAL NOT NULL DEFAULT 1.0, importance REAL NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND "
        "1), source TEXT NOT NULL DEFAULT 'self', key TEXT, content_hash TEXT NOT NULL UNIQUE, timestamp "
        "REAL NOT NULL, valid_from REAL NOT NULL, valid_to REAL) STRICT"
    ),
    ("table", "memories_fts"): (
        "CREATE VIRTUAL TABLE memories_fts USING fts5(content, key, content='memories', "
        "content_rowid='seq', tokenize='porter unicode61 remove_diacritics 2')"
    ),
    ("table", "memories_vec"): (
        "CREATE VIRTUAL TABLE memories_vec USING vec0(embedding float[384] distance_metric=cosine, "
        "type text, source text, key text, ts float, valid_from float, valid_to float)"
    ),
    ("table", "migrations"): "CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)",
    ("table", "skills"): (
        "CREATE TABLE skills (skill_id TEXT PRIMARY KEY, lora_hash TEXT NOT NULL, effectiveness REAL NOT "
        "NULL CHECK (effectiveness BETWEEN 0 AND 1), acquired_at REAL NOT NULL, usage_count INTEGER NOT "
        "NULL DEFAULT 0, usage_scenarios TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(usage_scenarios))) "
        "STRICT"
    ),
    ("trigger", "memories_fts_delete"): (
        "CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN INSERT INTO memories_fts "
        "(memories_fts, rowid, content, key) VALUES ('delete', old.seq, old.content, old.key); END"
    ),
    ("trigger", "memories_fts_insert"): (
        "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN INSERT INTO memories_fts "
        "(rowid, content, key) VALUES (new.seq, new.content, new.key); END"
    ),
    ("trigger", "memories_fts_update"): (
        "CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, key ON memories BEGIN INSERT INTO "
        "memories_fts (memories_fts, rowid, content, key) VALUES ('delete', old.seq, old.content, "
        "old.key); INSERT INTO memories_fts (rowid, content, key) VALUES (new.seq, new.content, new.key); "
        "END"
    ),
    ("trigger", "memories_vec_validity"): (
        "CREATE TRIGGER memories_vec_validity AFTER UPDATE OF valid_to ON memories BEGIN UPDATE memories_vec "
        "SET valid_to = coalesce(new.valid_to, 1e+300) WHERE rowid = new.seq; END"
    ),
}


def _normalise(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql).strip()
    return sql.replace("( ", "(").replace(" )", ")").replace(" ,", ",")


def schema_snapshot(conn: Any) -> dict[tuple[str, str], str]:
    """Our own objects from sqlite_master, whitespace-normalised, without the modules' storage tables."""
    shadow = {row[1] for row in conn.execute("PRAGMA table_list") if row[2] == "shadow"}
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    return {
        (type_, name): _normalise(sql)
        for type_, name, sql in rows
        if name not in shadow and not (type_ == "table" and name.startswith("memories_vec_"))
    }


def test_fresh_brain_has_the_expected_schema(brain_path: Path) -> None:
    with Brain.open(brain_path, embedder=HashEmbedder()) as brain:
        assert schema_snapshot(brain._conn) == EXPECTED_SCHEMA
        assert applied_migrations(brain._conn) == [m.__name__ for m in MIGRATIONS]
        assert schema_version(brain._conn) == SCHEMA_VERSION == len(MIGRATIONS)


def test_migrations_are_numbered_in_order() -> None:
    names = [m.__name__ for m in MIGRATIONS]
    assert names[0] == "m001_initial"
    assert [int(n[1:4]) for n in names] == list(range(1, len(names) + 1))


def test_migrate_is_idempotent(brain_path: Path) -> None:
    Brain.open(brain_path, embedder=HashEmbedder()).close()
    conn = connect(brain_path)
    try:
        assert migrate(conn) == []
    finally:
        conn.close()


def test_old_brain_is_upgraded_and_its_memories_indexed(brain_path: Path) -> None:
    brain_path.parent.mkdir(parents=True)
    conn = connect(brain_path)
    assert migrate(conn, upto=1) == ["m001_initial"]
    now = time.time()
    conn.execute(
        "INSERT INTO memories (id, type, content, context, source, content_hash, timestamp, valid_from)"
        " VALUES ('mem_old', 'fact', 'The lighthouse keeper feeds seven gulls', '{}', 'self', 'h1', ?, ?)",
        (now, now),
    )
    conn.execute(
        "INSERT INTO interactions (id, with_persona, learned, timestamp) VALUES ('int_old', 'p2', '[]', ?)",
        (now,),
    )
    conn.close()

    with Brain.open(brain_path, embedder=HashEmbedder()) as brain:
        assert schema_snapshot(brain._conn) == EXPECTED_SCHEMA
        assert brain.stats()["vectors"] == brain.stats()["memories"] == 1
        assert [r["id"] for r in brain.recall("lighthouse", mode="fts")] == ["mem_old"]
        assert [r["id"] for r in brain.recall("keeper gulls", mode="vector")] == ["mem_old"]
        assert brain.interactions()[0]["memory_id"] is None


def test_brain_from_a_newer_personad_is_refused(brain_path: Path) -> None:
    Brain.open(brain_path, embedder=HashEmbedder()).close()
    conn = connect(brain_path)
    conn.execute("INSERT INTO migrations (name, applied_at) VALUES ('m999_future', 0)")
    conn.close()
    with pytest.raises(ConflictError) as err:
        Brain.open(brain_path, embedder=HashEmbedder())
    assert err.value.code == "schema_too_new"


def test_stock_sqlite3_reads_everything_but_the_vectors(brain: Brain) -> None:
    brain.remember({"type": "fact", "content": "Stock SQLite can read the albatross note", "key": "bird"})
    brain.goal_set("Learn to read")
    brain.close()
    conn = stock_sqlite3.connect(f"file:{brain.path}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT content, key FROM memories").fetchall() == [
            ("Stock SQLite can read the albatross note", "bird")
        ]
        assert conn.execute("SELECT description FROM goals").fetchall() == [("Learn to read",)]
        hits = conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'albatross'").fetchall()
        assert len(hits) == 1
        assert json.loads(conn.execute("SELECT context FROM memories").fetchone()[0]) == {}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
