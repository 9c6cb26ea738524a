"""The brain's schema as numbered migrations, applied in order and recorded in ``migrations``.

Never edit a migration that has shipped: add ``m00N_…`` at the end of ``MIGRATIONS`` instead, because
existing brains only ever run the ones they have not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pysqlite3.dbapi2 as sqlite3

from personad.errors import ConflictError

from .db import write_transaction
from .embeddings import EMBEDDING_DIM
from .vectors import OPEN_UNTIL

Migration = Callable[[Any], None]


def run_script(conn: Any, script: str) -> None:
    """Run several statements inside the caller's transaction.

    ``executescript`` would COMMIT first, splitting a migration across transactions; a crash in between
    would leave a half-built schema that is never retried.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:80]!r}")


def m001_initial(conn: Any) -> None:
    """Memories, skills, interactions, goals, emotions and evolution history."""
    # memories.seq is the INTEGER PRIMARY KEY because the FTS index and the vector table are keyed by rowid,
    # and VACUUM may renumber the rowids of a table without one; `id` is the stable public key.
    run_script(
        conn,
        """
        CREATE TABLE memories (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            content TEXT NOT NULL,
            context TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(context)),
            relevance REAL NOT NULL DEFAULT 1.0,
            importance REAL NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
            source TEXT NOT NULL DEFAULT 'self',
            key TEXT,
            content_hash TEXT NOT NULL UNIQUE,
            timestamp REAL NOT NULL,
            valid_from REAL NOT NULL,
            valid_to REAL
        ) STRICT;
        CREATE INDEX memories_time ON memories (timestamp);
        CREATE INDEX memories_type_time ON memories (type, timestamp);
        CREATE INDEX memories_source ON memories (source);
        CREATE INDEX memories_key ON memories (key) WHERE key IS NOT NULL;
        CREATE INDEX memories_open_key ON memories (type, key) WHERE key IS NOT NULL AND valid_to IS NULL;

        CREATE TABLE skills (
            skill_id TEXT PRIMARY KEY,
            lora_hash TEXT NOT NULL,
            effectiveness REAL NOT NULL CHECK (effectiveness BETWEEN 0 AND 1),
            acquired_at REAL NOT NULL,
            usage_count INTEGER NOT NULL DEFAULT 0,
            usage_scenarios TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(usage_scenarios))
        ) STRICT;

        CREATE TABLE interactions (
            id TEXT PRIMARY KEY,
            with_persona TEXT NOT NULL,
            room_id TEXT,
            outcome TEXT,
            learned TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(learned)),
            timestamp REAL NOT NULL
        ) STRICT;
        CREATE INDEX interactions_time ON interactions (timestamp);
        CREATE INDEX interactions_with_time ON interactions (with_persona, timestamp);

        CREATE TABLE goals (
            id TEXT PRIMARY KEY,
            description TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'done', 'abandoned', 'blocked')),
            priority REAL NOT NULL DEFAULT 0.5 CHECK (priority BETWEEN 0 AND 1),
            progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        ) STRICT;
        CREATE INDEX goals_status_priority ON goals (status, priority);

        CREATE TABLE emotions (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            valence REAL NOT NULL CHECK (valence BETWEEN -1 AND 1),
            arousal REAL NOT NULL CHECK (arousal BETWEEN 0 AND 1),
            cause TEXT NOT NULL DEFAULT '',
            timestamp REAL NOT NULL
        ) STRICT;
        CREATE INDEX emotions_time ON emotions (timestamp);

        CREATE TABLE evolution_history (
            id TEXT PRIMARY KEY,
            trigger_pattern TEXT NOT NULL,
            lora_generated TEXT,
            success_rate REAL NOT NULL CHECK (success_rate BETWEEN 0 AND 1),
            timestamp REAL NOT NULL
        ) STRICT;
        CREATE INDEX evolution_history_time ON evolution_history (timestamp);
        """,
    )


def m002_search(conn: Any) -> None:
    """Full-text index and vector table over memories."""
    # Triggers keep the external-content FTS index in the same transaction as the row, so a crash can
    # never leave the two disagreeing. Vectors are written by code (they need the model) but also inside
    # the same transaction; Brain.open re-embeds any row that lacks one (e.g. inserted by the sqlite3 CLI).
    # The vector table carries copies of the filterable columns (see vectors.py); closing a fact updates
    # its copy by trigger.
    run_script(
        conn,
        f"""
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            content, key, content='memories', content_rowid='seq',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, content, key) VALUES (new.seq, new.content, new.key);
        END;
        CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content, key)
                VALUES ('delete', old.seq, old.content, old.key);
        END;
        CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, key ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content, key)
                VALUES ('delete', old.seq, old.content, old.key);
            INSERT INTO memories_fts (rowid, content, key) VALUES (new.seq, new.content, new.key);
        END;
        INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
        CREATE VIRTUAL TABLE memories_vec USING vec0(
            embedding float[{EMBEDDING_DIM}] distance_metric=cosine,
            type text, source text, key text, ts float, valid_from float, valid_to float
        );
        CREATE TRIGGER memories_vec_validity AFTER UPDATE OF valid_to ON memories BEGIN
            UPDATE memories_vec SET valid_to = coalesce(new.valid_to, {OPEN_UNTIL}) WHERE rowid = new.seq;
        END;
        """,
    )


def m003_links_and_meta(conn: Any) -> None:
    """Link interactions to the memory that recorded them; a key/value table for brain-wide facts."""
    run_script(
        conn,
        """
        ALTER TABLE interactions ADD COLUMN memory_id TEXT REFERENCES memories (id);
        CREATE INDEX interactions_memory ON interactions (memory_id) WHERE memory_id IS NOT NULL;
        CREATE TABLE brain_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        """,
    )


def m004_evolution_details(conn: Any) -> None:
    """What an evolution step measured, beyond its success rate (an exam's per-family rates), as JSON."""
    run_script(conn, "ALTER TABLE evolution_history ADD COLUMN details TEXT;")


MIGRATIONS: list[Migration] = [m001_initial, m002_search, m003_links_and_meta, m004_evolution_details]
SCHEMA_VERSION = len(MIGRATIONS)


def applied_migrations(conn: Any) -> list[str]:
    """Names of the migrations recorded in this database, oldest first."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'"
    ).fetchone()
    if not exists:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY applied_at, rowid")]


def schema_version(conn: Any) -> int:
    """How many of the known migrations this database has."""
    known = {m.__name__ for m in MIGRATIONS}
    return sum(1 for name in applied_migrations(conn) if name in known)


def migrate(conn: Any, *, upto: int | None = None) -> list[str]:
    """Apply pending migrations (the first ``upto`` only, for tests) in one transaction; return their names.

    Two processes opening a fresh brain at once both get here: BEGIN IMMEDIATE makes the second wait for
    the first and then find nothing left to do.
    """
    targets = MIGRATIONS if upto is None else MIGRATIONS[:upto]
    known = {m.__name__ for m in MIGRATIONS}
    ran: list[str] = []
    with write_transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = applied_migrations(conn)
        unknown = [name for name in done if name not in known]
        if unknown:
            raise ConflictError(
                f"this brain was written by a newer personad (unknown migrations: {', '.join(unknown)}); "
                "upgrade personad to open it",
                code="schema_too_new",
            )
        for migration in targets:
            if migration.__name__ in done:
                continue
            migration(conn)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (migration.__name__, time.time())
            )
            ran.append(migration.__name__)
    return ran
