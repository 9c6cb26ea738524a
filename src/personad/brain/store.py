"""A persona's persistent brain: one SQLite file of memories (full-text and vector search) and records."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pysqlite3.dbapi2 as sqlite3

from personad.errors import BadRequestError, NotFoundError

from . import portable, records
from .db import connect, connect_read_only, write_transaction
from .embeddings import EMBEDDING_DIM, Embedder, default_embedder
from .memory import MemoryInput, embed_text, normalise_text, parse_memory
from .readonly import ReadOnlySQL
from .recall import (
    CANDIDATES,
    MODES,
    Filters,
    RecallMode,
    TermStats,
    dense_ranks,
    fuse,
    match_expression,
    prior,
    query_words,
)
from .schema import SCHEMA_VERSION, migrate, schema_version
from .vectors import SOURCE_COLUMNS, insert_vector

MEMORY_COLUMNS = (
    "m.seq, m.id, m.type, m.content, m.context, m.importance, m.relevance, m.source, m.key, "
    "m.timestamp, m.valid_from, m.valid_to"
)
_MEMORY_FIELDS = [c.strip().removeprefix("m.") for c in MEMORY_COLUMNS.split(",")]
_EMBED_BATCH = 256


def memory_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A memories row (selected with MEMORY_COLUMNS) as the dict the API returns, without the internal seq."""
    out = dict(zip(_MEMORY_FIELDS, row, strict=True))
    out.pop("seq")
    out["context"] = json.loads(out["context"])
    return out


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _search_pool() -> ThreadPoolExecutor:
    """Worker threads shared by every brain in the process, for the vector half of hybrid recall."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="brain-search")
        return _pool


def _json_seqs(seqs: Sequence[int]) -> str:
    # One JSON parameter instead of N placeholders: no SQLITE_MAX_VARIABLE_NUMBER limit, one cached plan.
    return json.dumps(list(seqs))


class Brain:
    """One persona's memory store. Thread-safe; several processes may open the same file."""

    def __init__(self, path: Path, conn: Any, embedder: Embedder) -> None:
        self.path = path
        self.embedder = embedder
        self._conn = conn
        # Python sqlite3 connections must not be used by two threads at once; SQLite serialises writers
        # anyway, so one lock per connection costs nothing. Embedding happens outside it.
        self._lock = threading.RLock()
        self._readonly: ReadOnlySQL | None = None
        # A second read connection for the vector half of a hybrid recall, which runs on another thread.
        self._search: Any = None
        self._search_lock = threading.Lock()
        self._terms = TermStats(conn)
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, embedder: Embedder | None = None) -> Brain:
        """Open (creating and migrating as needed) the brain at ``path``.

        ``embedder`` defaults to the process-wide MiniLM model, which loads on first use. Every process
        that opens one brain must use the same embedder: vectors from different models do not compare.
        """
        path = Path(path)
        embedder = embedder if embedder is not None else default_embedder()
        if embedder.dim != EMBEDDING_DIM:
            raise BadRequestError(
                f"the brain stores {EMBEDDING_DIM}-d vectors; embedder {embedder.name!r} makes "
                f"{embedder.dim}-d ones",
                code="invalid_embedder",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(path)
        try:
            migrate(conn)
            brain = cls(path, conn, embedder)
            brain._sync_vectors()
        except BaseException:
            conn.close()
            raise
        return brain

    def close(self) -> None:
        """Close the brain's connections (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._readonly is not None:
                self._readonly.close()
            with self._search_lock:
                if self._search is not None:
                    self._search.close()
            try:
                # Keeps the planner's statistics current; worth a moment, not a wait on another writer.
                self._conn.execute("PRAGMA busy_timeout = 50")
                self._conn.execute("PRAGMA optimize")
            except sqlite3.OperationalError:
                pass
            finally:
                self._conn.close()

    def __enter__(self) -> Brain:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Brain({str(self.path)!r}, embedder={self.embedder.name!r})"

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.embed(texts)
        if vectors.shape != (len(texts), EMBEDDING_DIM):
            raise BadRequestError(
                f"embedder {self.embedder.name!r} returned shape {vectors.shape}, "
                f"expected ({len(texts)}, {EMBEDDING_DIM})",
                code="invalid_embedder",
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _sync_vectors(self) -> None:
        """Give every memory a vector from this embedder (after a migration, a CLI insert, a model change)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM brain_meta WHERE key = 'embedder'").fetchone()
            stored = row[0] if row else None
            if stored is not None and stored != self.embedder.name:
                missing = [r[0] for r in self._conn.execute("SELECT seq FROM memories")]
                orphans: list[int] = []
                replace_all = True
            else:
                replace_all = False
                memories = self._conn.execute("SELECT count(*) FROM memories").fetchone()[0]
                vectors = self._conn.execute("SELECT count(*) FROM memories_vec").fetchone()[0]
                if memories == vectors and stored is not None:
                    return
                have = {r[0] for r in self._conn.execute("SELECT seq FROM memories")}
                embedded = {r[0] for r in self._conn.execute("SELECT rowid FROM memories_vec")}
                missing, orphans = sorted(have - embedded), sorted(embedded - have)
        for start in range(0, len(missing), _EMBED_BATCH):
            batch = missing[start : start + _EMBED_BATCH]
            with self._lock:
                cursor = self._conn.execute(
                    f"SELECT seq, content, {', '.join(SOURCE_COLUMNS)} FROM memories"
                    " WHERE seq IN (SELECT value FROM json_each(?))",
                    (_json_seqs(batch),),
                )
                names = [c[0] for c in cursor.description]
                rows = [dict(zip(names, row, strict=True)) for row in cursor]
            vectors = self._embed([embed_text(row["content"], row["key"]) for row in rows])
            with self._lock, write_transaction(self._conn):
                for row, vector in zip(rows, vectors, strict=True):
                    if replace_all:
                        self._conn.execute("DELETE FROM memories_vec WHERE rowid = ?", (row["seq"],))
                    elif self._conn.execute(
                        "SELECT 1 FROM memories_vec WHERE rowid = ?", (row["seq"],)
                    ).fetchone():
                        continue  # another process filled it in meanwhile
                    insert_vector(self._conn, row["seq"], vector, row)
        with self._lock, write_transaction(self._conn):
            for seq in orphans:
                self._conn.execute("DELETE FROM memories_vec WHERE rowid = ?", (seq,))
            # Recorded last: a crash mid-way leaves the old name, so the next open finishes the job.
            self._conn.execute(
                "INSERT INTO brain_meta (key, value) VALUES ('embedder', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self.embedder.name,),
            )

    # --- memories -------------------------------------------------------------------------------------

    def remember(self, memory: dict[str, Any]) -> dict[str, Any]:
        """Store one memory; see remember_many for the fields and the result."""
        return self.remember_many([memory])[0]

    def remember_many(self, memories: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store memories in one transaction, embedding them in one batch.

        Each memory: ``type`` (lowercase identifier), ``content``, optional ``context`` (object),
        ``importance`` and ``relevance`` (0..1), ``source`` (``self``, ``user:<name>``, ``persona:<id>``,
        ``system``), ``key`` (a fact's subject: a newer memory of the same type and key with different
        content closes the older one's validity, never deleting it), ``timestamp`` (epoch seconds). A
        ``collaboration`` also takes ``with_persona``, ``room_id``, ``outcome`` and ``learned`` and records
        an interaction. Returns ``{"id", "created", "closed"}`` per memory; storing the same type, key,
        content and source again returns the existing id with ``created: false``.
        """
        if not isinstance(memories, list):
            raise BadRequestError("memories must be a list of objects", code="invalid_memory")
        now = time.time()
        inputs: list[MemoryInput] = []
        for index, raw in enumerate(memories):
            try:
                inputs.append(parse_memory(raw, now))
            except BadRequestError as exc:
                if len(memories) > 1:
                    exc.message = f"memory {index}: {exc.message}"
                    exc.args = (exc.message,)
                raise
        if not inputs:
            return []
        # Re-sent memories cost a lookup, not a model call.
        with self._lock:
            known = self._known_hashes([i.content_hash for i in inputs])
        fresh: dict[str, MemoryInput] = {}
        for item in inputs:
            if item.content_hash not in known:
                fresh.setdefault(item.content_hash, item)
        vectors = (
            dict(zip(fresh, self._embed([i.text_for_embedding for i in fresh.values()]), strict=True))
            if fresh
            else {}
        )
        with self._lock, write_transaction(self._conn):
            results = []
            for item in inputs:
                vector = vectors.get(item.content_hash)
                if vector is None:
                    existing = self._conn.execute(
                        "SELECT id FROM memories WHERE content_hash = ?", (item.content_hash,)
                    ).fetchone()
                    if existing is not None:
                        results.append({"id": existing[0], "created": False, "closed": []})
                        continue
                    # Known before embedding, gone now (another process's import rolled back): embed here.
                    vector = self._embed([item.text_for_embedding])[0]
                results.append(self._insert(item, vector))
                # A second copy within this batch must find the first, not insert again.
                vectors.pop(item.content_hash, None)
        return results

    def _known_hashes(self, hashes: list[str]) -> set[str]:
        rows = self._conn.execute(
            "SELECT content_hash FROM memories WHERE content_hash IN (SELECT value FROM json_each(?))",
            (json.dumps(hashes),),
        )
        return {r[0] for r in rows}

    def _insert(self, item: MemoryInput, vector: np.ndarray) -> dict[str, Any]:
        memory_id = records.new_id("mem")
        valid_to: float | None = None
        closed: list[str] = []
        if item.key is not None:
            mine = normalise_text(item.content)
            rivals = self._conn.execute(
                "SELECT id, content, valid_from FROM memories"
                " WHERE type = ? AND key = ? AND valid_to IS NULL",
                (item.type, item.key),
            ).fetchall()
            for rival_id, content, valid_from in rivals:
                if normalise_text(content) == mine:
                    continue  # the same claim from another source corroborates; it does not contradict
                if valid_from <= item.timestamp:
                    self._conn.execute(
                        "UPDATE memories SET valid_to = ? WHERE id = ?", (item.timestamp, rival_id)
                    )
                    closed.append(rival_id)
                else:
                    # Learning an older claim late: it was already superseded when the newer one began.
                    valid_to = valid_from if valid_to is None else min(valid_to, valid_from)
        cursor = self._conn.execute(
            "INSERT INTO memories (id, type, content, context, relevance, importance, source, key,"
            " content_hash, timestamp, valid_from, valid_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (memory_id, item.type, item.content, json.dumps(item.context, ensure_ascii=False),
             item.relevance, item.importance, item.source, item.key, item.content_hash, item.timestamp,
             item.timestamp, valid_to),
        )  # fmt: skip
        insert_vector(
            self._conn,
            cursor.lastrowid,
            vector,
            {"type": item.type, "source": item.source, "key": item.key, "timestamp": item.timestamp,
             "valid_from": item.timestamp, "valid_to": valid_to},
        )  # fmt: skip
        if item.interaction is not None:
            i = item.interaction
            self._conn.execute(
                "INSERT INTO interactions (id, with_persona, room_id, outcome, learned, timestamp, memory_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (records.new_id("int"), i.with_persona, i.room_id, i.outcome,
                 json.dumps(i.learned, ensure_ascii=False), item.timestamp, memory_id),
            )  # fmt: skip
        return {"id": memory_id, "created": True, "closed": closed}

    def get(self, memory_id: str) -> dict[str, Any]:
        """One memory by id (closed or not), or NotFoundError."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories AS m WHERE m.id = ?", (memory_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no memory {memory_id!r}", code="memory_not_found")
        return memory_dict(row)

    # --- recall ---------------------------------------------------------------------------------------

    def recall(
        self, query: str, k: int = 10, filters: dict[str, Any] | None = None, *, mode: RecallMode = "hybrid"
    ) -> list[dict[str, Any]]:
        """The ``k`` memories that best match ``query``, best first.

        ``hybrid`` ranks the FTS5 BM25 and vector-KNN candidates by cosine similarity plus a BM25 bonus
        weighted by how confident the keyword match is (see ``recall.fuse``), plus a small importance and
        recency term; ``fts`` and ``vector`` use one retriever. An empty query lists the
        newest matching memories. Filters: ``type`` and ``source`` (a string or a list), ``key``, ``since``
        and ``until`` (epoch seconds, on timestamp), ``include_closed`` (default false: superseded facts are
        left out) and ``as_of`` (what was valid at that moment). Each result carries ``score`` and
        ``ranks`` ({"fts": int|None, "vector": int|None}, 1-based).
        """
        if mode not in MODES:
            raise BadRequestError(
                f"mode must be one of {', '.join(MODES)}, got {mode!r}", code="invalid_recall"
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise BadRequestError(
                f"k must be an integer between 1 and 1000, got {k!r}", code="invalid_recall"
            )
        if not isinstance(query, str):
            raise BadRequestError("query must be a string", code="invalid_recall")
        flt = Filters.parse(filters)
        text = query.strip()
        pool = max(CANDIDATES, k)
        now = time.time()
        if not text:
            with self._lock:
                return self._newest(flt, k, now)
        fts_hits: list[tuple[int, float]] = []
        vec_hits: list[tuple[int, float]] = []
        query_vector: np.ndarray | None = None
        if mode == "vector":
            query_vector, vec_hits = self._vector_hits(text, flt, pool)
        else:
            # The two retrievers run at once: embedding and the KNN scan on a worker thread and a second
            # connection, BM25 here (both release the GIL), so hybrid costs about the slower of the two.
            pending = _search_pool().submit(self._vector_hits, text, flt, pool) if mode == "hybrid" else None
            try:
                with self._lock:
                    words = self._terms.informative(query_words(text), self._max_seq())
                    match = match_expression(words)
                    fts_hits = self._fts_hits(match, flt, pool) if match else []
            finally:
                if pending is not None:
                    query_vector, vec_hits = pending.result()
        fts, vec = dense_ranks(fts_hits), dense_ranks(vec_hits)
        similarities = {seq: 1.0 - distance for seq, distance in vec_hits}
        with self._lock:
            rows = self._rows(list(fts.keys() | vec.keys()))
            if query_vector is not None:
                # Keyword-only candidates are compared on meaning too, from their stored embeddings.
                similarities.update(self._similarities(query_vector, [s for s in fts if s not in vec]))
        results = []
        for score, seq in fuse(fts_hits, similarities, rows, now, fts_only=mode == "fts")[:k]:
            result = rows[seq]
            result["score"] = round(score, 8)
            result["ranks"] = {"fts": fts.get(seq), "vector": vec.get(seq)}
            results.append(result)
        return results

    def _max_seq(self) -> int:
        # Memories are never deleted, so the largest rowid is the count, at the cost of one index seek.
        return self._conn.execute("SELECT coalesce(max(seq), 0) FROM memories").fetchone()[0]

    def _rows(self, seqs: list[int]) -> dict[int, dict[str, Any]]:
        if not seqs:
            return {}
        cursor = self._conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories AS m WHERE m.seq IN (SELECT value FROM json_each(?))",
            (_json_seqs(seqs),),
        )
        return {row[0]: memory_dict(row) for row in cursor}

    def _newest(self, flt: Filters, k: int, now: float) -> list[dict[str, Any]]:
        where, params = flt.sql()
        cursor = self._conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories AS m WHERE {where}"
            " ORDER BY m.timestamp DESC, m.seq DESC LIMIT ?",
            (*params, k),
        )
        results = []
        for row in cursor.fetchall():
            result = memory_dict(row)
            result["score"] = round(prior(result["importance"], result["timestamp"], now), 8)
            result["ranks"] = {"fts": None, "vector": None}
            results.append(result)
        return results

    def _fts_hits(self, match: str, flt: Filters, pool: int) -> list[tuple[int, float]]:
        # The key column weighs half: a subject match matters, but less than the words of the memory.
        # CROSS JOIN pins the FTS index as the outer loop; with a type or time filter the planner may
        # otherwise walk the memories index and run MATCH once per row.
        where, params = flt.sql()
        sql = (
            "SELECT m.seq, bm25(memories_fts, 1.0, 0.5) AS score"
            " FROM memories_fts CROSS JOIN memories AS m ON m.seq = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND {where} ORDER BY score LIMIT ?"
        )
        return self._conn.execute(sql, (match, *params, pool)).fetchall()

    def _similarities(self, query: np.ndarray, seqs: list[int]) -> dict[int, float]:
        """Cosine similarity of the query to these memories' stored embeddings."""
        if not seqs:
            return {}
        # One point lookup per memory: vec0 answers ``rowid = ?`` from its rowid index, but scans every
        # chunk for ``rowid IN (...)`` (measured at 100k: 1.3 ms for 50 lookups vs 25-70 ms).
        found = {}
        norm = float(np.linalg.norm(query)) or 1.0
        for seq in seqs:
            row = self._conn.execute("SELECT embedding FROM memories_vec WHERE rowid = ?", (seq,)).fetchone()
            if row is None:
                continue
            vector = np.frombuffer(row[0], dtype=np.float32)
            found[seq] = float(vector @ query) / (norm * (float(np.linalg.norm(vector)) or 1.0))
        return found

    def _vector_hits(self, text: str, flt: Filters, pool: int) -> tuple[np.ndarray, list[tuple[int, float]]]:
        query = self._embed([text])[0]
        vector = query.tobytes()
        # The filter runs inside the KNN scan (vec0 metadata columns), so k neighbours all pass it.
        where, params = flt.vector_sql()
        sql = f"SELECT rowid, distance FROM memories_vec WHERE embedding MATCH ? AND k = ? AND {where}"
        with self._search_lock:
            if self._search is None:
                self._search = connect_read_only(self.path)
            return query, self._search.execute(sql, (vector, pool, *params)).fetchall()

    # --- read-only SQL --------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Run one read-only SQL statement (at most 1000 rows, 2 s); writes raise ForbiddenError."""
        with self._lock:
            if self._readonly is None:
                self._readonly = ReadOnlySQL(self.path)
            readonly = self._readonly
        return readonly.run(sql, params)

    # --- skills, goals, emotions, evolution, interactions ---------------------------------------------

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock, write_transaction(self._conn):
            return fn(self._conn, *args)

    def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            return fn(self._conn, *args)

    def save_achievement(
        self,
        skill: str | Mapping[str, Any],
        lora_hash: str | None = None,
        effectiveness: float | None = None,
        usage_scenarios: list[str] | None = None,
    ) -> dict[str, Any]:
        """Record (or update) a skill learned as a LoRA adapter; new usage scenarios are added to the old.

        Takes the arguments, or the seed's one object:
        ``save_achievement({"skill": ..., "lora_hash": "sha256:…", "effectiveness": 0.95,
        "usage_scenarios": [...]})``. A full sha256 ``lora_hash`` is stored as the registry's 64 lowercase
        hex digits (``sha256:`` prefix dropped), so skill-use counting by adapter hash matches it. Any
        problem (unknown or missing fields, bad values) is a BadRequestError ``invalid_achievement``.
        """
        if isinstance(skill, Mapping):
            if lora_hash is not None or effectiveness is not None or usage_scenarios is not None:
                raise BadRequestError(
                    "pass an achievement object or the arguments, not both", code="invalid_achievement"
                )
            args = records.achievement_args(dict(skill))
        else:
            args = (skill, lora_hash, effectiveness, usage_scenarios)
        return self._write(records.save_achievement, *args)

    def measure_skills(
        self, lora_hashes: Sequence[str], effectiveness: float, *, new_lora_hash: str | None = None
    ) -> list[dict[str, Any]]:
        """A new measurement of an adapter: every skill carried by one of ``lora_hashes`` takes
        ``effectiveness`` (and ``new_lora_hash`` when the adapter was retrained). Returns those skills; the
        caller records when and how it measured (the Academy: an ``evolution_history`` row)."""
        return list(self._write(records.measure_skills, list(lora_hashes), effectiveness, new_lora_hash))

    def use_skill(self, skill: str) -> dict[str, Any]:
        """Count one use of a skill (NotFoundError if unknown)."""
        return self._write(records.use_skill, skill)

    def use_skills_with_hashes(self, lora_hashes: list[str]) -> int:
        """Count one use of each skill whose adapter (``lora_hash``) was in the stack that answered."""
        return int(self._write(records.use_skills_with_hashes, lora_hashes))

    def skill_usage_by_hash(self) -> dict[str, int]:
        """Uses per adapter ``lora_hash`` (the mesh's demand counts these)."""
        return dict(self._read(records.usage_by_hash))

    def skills(self) -> list[dict[str, Any]]:
        """All skills, most effective first."""
        return self._read(records.list_skills)

    def goal_set(self, description: str, priority: float = 0.5, status: str = "active") -> dict[str, Any]:
        """Create a goal."""
        return self._write(records.goal_set, description, priority, status)

    def goal_list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Goals, optionally of one status, highest priority first."""
        return self._read(records.goal_list, status)

    def goal_update(
        self,
        goal_id: str,
        *,
        status: str | None = None,
        progress: float | None = None,
        priority: float | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Change a goal (NotFoundError if unknown); status is active, done, abandoned or blocked."""
        changes = {"status": status, "progress": progress, "priority": priority, "description": description}
        return self._write(records.goal_update, goal_id, changes)

    def feel(self, label: str, valence: float, arousal: float, cause: str = "") -> dict[str, Any]:
        """Record an emotion (valence -1..1, arousal 0..1)."""
        return self._write(records.feel, label, valence, arousal, cause)

    def emotions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest emotions, newest first."""
        return self._read(records.emotions, limit)

    def record_evolution(
        self,
        trigger_pattern: str,
        lora_generated: str | None,
        success_rate: float,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one self-improvement step (``details``: what else it measured, as a JSON object)."""
        return self._write(records.record_evolution, trigger_pattern, lora_generated, success_rate, details)

    def evolution_history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Evolution steps, newest first."""
        return self._read(records.evolution_history, limit)

    def interactions(self, with_persona: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recorded collaborations, newest first, optionally with one persona."""
        return self._read(records.interactions, with_persona, limit)

    def stats(self) -> dict[str, Any]:
        """Row counts per table, open and closed memories, and the schema version."""
        with self._lock:
            count = self._conn.execute
            out: dict[str, Any] = {
                table: count(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("memories", "skills", "interactions", "goals", "emotions", "evolution_history")
            }
            out["memories_closed"] = count(
                "SELECT count(*) FROM memories WHERE valid_to IS NOT NULL"
            ).fetchone()[0]
            out["memories_open"] = out["memories"] - out["memories_closed"]
            out["vectors"] = count("SELECT count(*) FROM memories_vec").fetchone()[0]
            out["schema_version"] = schema_version(self._conn)
        return out

    # --- export / import ------------------------------------------------------------------------------

    def export_jsonl(self, path: Path) -> dict[str, Any]:
        """Write every table but the vectors as JSON lines, after a header line with the schema version."""
        with self._lock:
            return portable.export_jsonl(self._conn, Path(path))

    def import_jsonl(self, path: Path) -> dict[str, Any]:
        """Add the rows of an export (re-embedding memories); rows already present are skipped."""
        plan = portable.read_export(Path(path))
        with self._lock:
            todo = portable.new_memories(self._conn, plan)
        vectors = self._embed([embed_text(row["content"], row.get("key")) for row in todo]) if todo else None
        with self._lock, write_transaction(self._conn):
            result = portable.apply_import(self._conn, plan, todo, vectors)
        if result["unembedded"]:
            self._sync_vectors()
        return result


__all__ = ["SCHEMA_VERSION", "Brain"]
