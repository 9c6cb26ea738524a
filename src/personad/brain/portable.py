"""Export a brain as JSON lines and import it back: backups, moving a persona, reading it without SQLite.

Vectors are not exported (they belong to one embedding model and are rebuilt on import), nor the FTS
index (derived by triggers).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pysqlite3.dbapi2 as sqlite3

from personad.errors import BadRequestError, ConflictError

from .memory import normalise_text
from .schema import SCHEMA_VERSION, schema_version
from .vectors import SOURCE_COLUMNS, insert_vector

FORMAT = "personad-brain"
#: Memories first: interactions refer to them.
EXPORT_TABLES = ("memories", "skills", "interactions", "goals", "emotions", "evolution_history")
#: The internal rowid alias of memories is not part of a memory's identity; the importer assigns its own.
_PRIVATE_COLUMNS = {"memories": {"seq"}}


@dataclass(frozen=True)
class ImportPlan:
    """A parsed, structurally checked export file."""

    path: Path
    schema_version: int
    rows: dict[str, list[dict[str, Any]]]


def _bad(path: Path, line: int, message: str) -> BadRequestError:
    return BadRequestError(f"{path}:{line}: {message}", code="invalid_import")


def export_jsonl(conn: Any, path: Path) -> dict[str, Any]:
    """Write the export (atomically: a temporary file renamed into place); return the row counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # One read transaction: the counts in the header and the rows come from the same snapshot.
    conn.execute("BEGIN")
    try:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in EXPORT_TABLES
        }
        header = {"format": FORMAT, "schema_version": schema_version(conn), "exported_at": time.time(),
                  "tables": counts}  # fmt: skip
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(header) + "\n")
            for table in EXPORT_TABLES:
                cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
                names = [c[0] for c in cursor.description]
                private = _PRIVATE_COLUMNS.get(table, set())
                for row in cursor:
                    record = {n: v for n, v in zip(names, row, strict=True) if n not in private}
                    fh.write(json.dumps({"table": table, "row": record}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        conn.execute("COMMIT")
        tmp.unlink(missing_ok=True)
    return {"path": str(path), "schema_version": header["schema_version"], "rows": counts}


def read_export(path: Path) -> ImportPlan:
    """Parse and check an export file: format, schema version, one known table per line, complete."""
    if not path.is_file():
        raise BadRequestError(f"no export file at {path}", code="invalid_import")
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in EXPORT_TABLES}
    header: dict[str, Any] | None = None
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(path, number, f"not JSON ({exc.msg})") from None
            if header is None:
                if not isinstance(record, dict) or record.get("format") != FORMAT:
                    raise _bad(
                        path, number, f"not a brain export (the first line must be a {FORMAT!r} header)"
                    )
                version = record.get("schema_version")
                if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                    raise _bad(path, number, f"bad schema_version {version!r}")
                if version > SCHEMA_VERSION:
                    raise ConflictError(
                        f"{path} was exported from schema version {version}, newer than this personad's "
                        f"{SCHEMA_VERSION}; upgrade personad to import it",
                        code="schema_too_new",
                    )
                header = record
                continue
            if (
                not isinstance(record, dict)
                or record.get("table") not in rows
                or not isinstance(record.get("row"), dict)
            ):
                raise _bad(path, number, f'expected {{"table": one of {list(EXPORT_TABLES)}, "row": {{…}}}}')
            rows[record["table"]].append(record["row"])
    if header is None:
        raise BadRequestError(f"{path} is empty", code="invalid_import")
    expected = header.get("tables")
    if isinstance(expected, dict):
        short = {t: (len(rows[t]), n) for t, n in expected.items() if t in rows and len(rows[t]) != n}
        if short:
            detail = ", ".join(f"{t}: {got} rows, header says {n}" for t, (got, n) in short.items())
            raise BadRequestError(f"{path} is incomplete or altered ({detail})", code="invalid_import")
    return ImportPlan(path, header["schema_version"], rows)


def new_memories(conn: Any, plan: ImportPlan) -> list[dict[str, Any]]:
    """The memory rows of the plan not already in this brain (by id or by content), each once."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in plan.rows["memories"]:
        memory_id, digest = row.get("id"), row.get("content_hash")
        if (
            not isinstance(memory_id, str)
            or not isinstance(digest, str)
            or memory_id in seen
            or digest in seen
        ):
            continue  # malformed rows are reported by apply_import, with their line
        seen.update((memory_id, digest))
        exists = conn.execute(
            "SELECT 1 FROM memories WHERE id = ? OR content_hash = ?", (memory_id, digest)
        ).fetchone()
        if exists is None:
            out.append(row)
    return out


def _insert(conn: Any, table: str, row: dict[str, Any], allowed: set[str], plan: ImportPlan) -> Any:
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise BadRequestError(
            f"{plan.path}: {table} row has unknown column(s) {unknown}", code="invalid_import"
        )
    names = list(row)
    sql = (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        " ON CONFLICT DO NOTHING"
    )
    try:
        # ON CONFLICT DO NOTHING skips rows already present, yet CHECK and type violations still raise.
        return conn.execute(sql, [row[n] for n in names])
    # The row's fault: a constraint, a value SQLite cannot store (an object, an int past 64 bits), one too
    # big. A locked or failing database (OperationalError) is not the file's fault and is not reported so.
    except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, OverflowError) as exc:
        raise BadRequestError(
            f"{plan.path}: cannot import {table} row {row.get('id') or row.get('skill_id')!r}: {exc}",
            code="invalid_import",
        ) from exc


def _reconcile_facts(conn: Any, subjects: set[tuple[str, str]]) -> None:
    # Two brains may each hold an open fact about one subject; as in remember(), a later claim with
    # different content closes an earlier one.
    for type_, key in sorted(subjects):
        rows = conn.execute(
            "SELECT id, content, valid_from FROM memories WHERE type = ? AND key = ? AND valid_to IS NULL"
            " ORDER BY valid_from, seq",
            (type_, key),
        ).fetchall()
        for index, (memory_id, content, _) in enumerate(rows):
            mine = normalise_text(content)
            later = next((r for r in rows[index + 1 :] if normalise_text(r[1]) != mine), None)
            if later is not None:
                conn.execute("UPDATE memories SET valid_to = ? WHERE id = ?", (later[2], memory_id))


def apply_import(
    conn: Any, plan: ImportPlan, todo: list[dict[str, Any]], vectors: np.ndarray | None
) -> dict[str, Any]:
    """Insert the plan's rows inside the caller's transaction; ``vectors`` are those of ``todo``."""
    columns = {
        table: {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        - _PRIVATE_COLUMNS.get(table, set())
        for table in EXPORT_TABLES
    }
    by_id = {row["id"]: vectors[i] for i, row in enumerate(todo)} if vectors is not None else {}
    inserted = dict.fromkeys(EXPORT_TABLES, 0)
    renamed: dict[str, str] = {}
    subjects: set[tuple[str, str]] = set()
    unembedded = 0
    for row in plan.rows["memories"]:
        cursor = _insert(conn, "memories", row, columns["memories"], plan)
        if cursor.rowcount == 1:
            inserted["memories"] += 1
            vector = by_id.get(row["id"])
            if vector is None:
                unembedded += 1  # appeared since planning; Brain.open embeds rows that lack a vector
            else:
                stored = conn.execute(
                    f"SELECT {', '.join(SOURCE_COLUMNS)} FROM memories WHERE seq = ?", (cursor.lastrowid,)
                ).fetchone()
                insert_vector(conn, cursor.lastrowid, vector, dict(zip(SOURCE_COLUMNS, stored, strict=True)))
            if row.get("key") is not None:
                subjects.add((row["type"], row["key"]))
        else:
            found = conn.execute(
                "SELECT id FROM memories WHERE id = ? OR content_hash = ?",
                (row.get("id"), row.get("content_hash")),
            ).fetchone()
            if found is not None and found[0] != row.get("id"):
                renamed[row["id"]] = found[0]  # the same memory under another id: point interactions at it
    for table in EXPORT_TABLES[1:]:
        for row in plan.rows[table]:
            if table == "interactions" and row.get("memory_id") in renamed:
                row = {**row, "memory_id": renamed[row["memory_id"]]}
            if _insert(conn, table, row, columns[table], plan).rowcount == 1:
                inserted[table] += 1
    _reconcile_facts(conn, subjects)
    skipped = {table: len(plan.rows[table]) - inserted[table] for table in EXPORT_TABLES}
    return {"path": str(plan.path), "schema_version": plan.schema_version, "inserted": inserted,
            "skipped": skipped, "unembedded": unembedded}  # fmt: skip
