from __future__ import annotations

import pytest

from personad.brain import Brain
from personad.brain.readonly import ReadOnlySQL
from personad.errors import BadRequestError, ForbiddenError


@pytest.fixture
def stocked(brain: Brain) -> Brain:
    brain.remember_many([{"type": "fact", "content": f"note about otters {i}"} for i in range(3)])
    brain.goal_set("Write the report", priority=0.8)
    return brain


def test_select_returns_rows_as_dicts(stocked: Brain) -> None:
    rows = stocked.query("SELECT type, count(*) AS n FROM memories GROUP BY type")
    assert rows == [{"type": "fact", "n": 3}]
    assert stocked.query("SELECT description FROM goals WHERE priority > ?", [0.5]) == [
        {"description": "Write the report"}
    ]
    assert stocked.query("SELECT :x + 1 AS y", {"x": 41}) == [{"y": 42}]
    assert stocked.query("SELECT 1 AS one; -- a trailing comment is not a statement") == [{"one": 1}]


def test_reads_of_fts_vectors_and_introspection_work(stocked: Brain) -> None:
    hits = stocked.query(
        "SELECT m.content FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
        " WHERE memories_fts MATCH 'otters' ORDER BY m.seq"
    )
    assert [h["content"] for h in hits] == [f"note about otters {i}" for i in range(3)]
    [vector] = stocked.query("SELECT embedding FROM memories_vec LIMIT 1")
    assert isinstance(vector["embedding"], str) and len(vector["embedding"]) == 384 * 4 * 2  # hex of a BLOB
    assert any(c["name"] == "content" for c in stocked.query("PRAGMA table_info(memories)"))
    assert stocked.query("SELECT count(*) AS n FROM pragma_table_info('goals')")[0]["n"] == 7
    assert stocked.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5)"
                         " SELECT sum(x) AS s FROM c") == [{"s": 15}]  # fmt: skip


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO goals (id, description, created_at, updated_at) VALUES ('g', 'x', 0, 0)",
        "REPLACE INTO brain_meta (key, value) VALUES ('embedder', 'x')",
        "UPDATE memories SET content = 'hacked'",
        "DELETE FROM memories",
        "DROP TABLE memories",
        "ALTER TABLE goals ADD COLUMN x TEXT",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE evil (x)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE INDEX evil ON goals (description)",
        "ATTACH DATABASE ':memory:' AS other",
        "DETACH DATABASE main",
        "PRAGMA user_version = 7",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA writable_schema = ON",
        "WITH doomed AS (SELECT seq FROM memories) DELETE FROM memories WHERE seq IN (SELECT * FROM doomed)",
        "WITH x AS (SELECT 1) UPDATE goals SET status = 'done'",
        "SELECT load_extension('/tmp/evil.so')",
        "BEGIN",
        "SAVEPOINT s",
        "VACUUM",
        "REINDEX",
        "ANALYZE",
        "INSERT INTO memories_fts (memories_fts) VALUES ('delete-all')",
        "DELETE FROM memories_vec",
    ],
)
def test_writes_are_refused_by_the_authorizer(stocked: Brain, sql: str) -> None:
    with pytest.raises(ForbiddenError) as err:
        stocked.query(sql)
    assert err.value.code == "read_only"
    assert stocked.stats()["memories"] == 3
    assert stocked.goal_list()[0]["status"] == "active"
    assert stocked.recall("otters", mode="fts")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DROP TABLE memories",
        "SELECT * FROM goals; DELETE FROM goals",
        "SELECT 1; SELECT 2",
    ],
)
def test_multiple_statements_are_refused(stocked: Brain, sql: str) -> None:
    with pytest.raises(ForbiddenError) as err:
        stocked.query(sql)
    assert err.value.code == "multiple_statements"
    assert stocked.stats()["goals"] == 1
    assert stocked.stats()["memories"] == 3


def test_cte_with_delete_inside_is_not_sql(stocked: Brain) -> None:
    # SQLite has no DML inside a CTE, so this "trick" is a syntax error, not a write.
    with pytest.raises(BadRequestError) as err:
        stocked.query("WITH x AS (DELETE FROM memories RETURNING *) SELECT * FROM x")
    assert err.value.code == "invalid_sql"
    assert stocked.stats()["memories"] == 3


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT * FROM nowhere", "SELECT ?", ""])
def test_sql_errors_are_bad_requests(stocked: Brain, sql: str) -> None:
    with pytest.raises(BadRequestError) as err:
        stocked.query(sql)
    assert err.value.code == "invalid_sql"


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT ?", "x"),  # a string is not a parameter list
        ("SELECT ?", [2**70]),  # past SQLite's 64-bit integers
        ("SELECT ?", [[1]]),
        ("SELECT :a", {"a": {"b": 1}}),
        ("SELECT ?", {"0": 1}),
        ("SELECT ?", [1, 2]),
        ("SELECT :a", {}),
        ("SELECT 1\x00", []),
    ],
)
def test_bad_params_are_bad_requests(stocked: Brain, sql: str, params: object) -> None:
    with pytest.raises(BadRequestError):
        stocked.query(sql, params)  # type: ignore[arg-type]


def test_rows_are_capped(stocked: Brain) -> None:
    rows = stocked.query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x FROM c"
    )
    assert len(rows) == 1000


def test_runaway_queries_are_stopped(brain: Brain) -> None:
    readonly = ReadOnlySQL(brain.path, timeout_s=0.2)
    try:
        with pytest.raises(BadRequestError) as err:
            readonly.run(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
            )
        assert err.value.code == "query_timeout"
        assert readonly.run("SELECT 1 AS one") == [{"one": 1}]  # the connection is still usable
    finally:
        readonly.close()


def test_query_sees_writes_made_after_it_opened(brain: Brain) -> None:
    assert brain.query("SELECT count(*) AS n FROM memories") == [{"n": 0}]
    brain.remember({"type": "fact", "content": "fresh"})
    assert brain.query("SELECT count(*) AS n FROM memories") == [{"n": 1}]
