"""Ad-hoc SQL that cannot write: a ``mode=ro`` connection plus an authorizer that allows only reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pysqlite3.dbapi2 as sqlite3

from personad.errors import BadRequestError, ForbiddenError

from .db import connect_read_only

MAX_ROWS = 1000
TIMEOUT_S = 2.0

_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
# Pragmas that only report. FTS5 itself reads data_version on every query, so that one must pass.
_REPORTING_PRAGMAS = frozenset(
    {
        "data_version", "user_version", "schema_version", "application_id", "page_count", "page_size",
        "freelist_count", "encoding", "table_list", "database_list", "compile_options", "function_list",
        "module_list", "pragma_list", "collation_list",
    }
)  # fmt: skip
# Pragmas whose argument names a table or index rather than setting a value.
_INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list", "table_list"}
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").lower().replace("_", " ")
    for name in dir(sqlite3)
    if name.startswith("SQLITE_")
    and name not in {"SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE"}
    and isinstance(getattr(sqlite3, name), int)
    and any(word in name for word in ("CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "ALTER", "ATTACH",
                                       "DETACH", "PRAGMA", "TRANSACTION", "SAVEPOINT", "REINDEX", "ANALYZE",
                                       "FUNCTION"))
}  # fmt: skip


def _jsonable(value: Any) -> Any:
    # Results travel over the bus as JSON; a BLOB (an embedding, say) becomes hex rather than breaking that.
    return value.hex() if isinstance(value, bytes | memoryview) else value


class ReadOnlySQL:
    """Runs one read-only statement at a time, capped in rows and time."""

    def __init__(self, path: Path, *, max_rows: int = MAX_ROWS, timeout_s: float = TIMEOUT_S) -> None:
        self._conn = connect_read_only(path)
        self._max_rows = max_rows
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._denied: str | None = None
        self._deadline = 0.0
        self._conn.set_authorizer(self._authorize)
        self._conn.set_progress_handler(self._progress, 10_000)

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() not in _DENIED_FUNCTIONS:
                return sqlite3.SQLITE_OK
        elif action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _INTROSPECTION_PRAGMAS or (name in _REPORTING_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        what = _ACTION_NAMES.get(action, f"action {action}")
        detail = arg2 if action == sqlite3.SQLITE_FUNCTION else arg1
        self._denied = f"{what} {detail}" if detail else what
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        # A non-zero return interrupts the statement: a runaway recursive CTE cannot stall the caller.
        return 1 if time.monotonic() > self._deadline else 0

    def run(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Execute one read-only statement; return up to ``max_rows`` rows as dicts."""
        if not isinstance(sql, str) or not sql.strip():
            raise BadRequestError("sql must be a non-empty string", code="invalid_sql")
        if isinstance(params, str | bytes) or not isinstance(params, Sequence | Mapping):
            raise BadRequestError(
                "params must be a list (for ?) or an object (for :name)", code="invalid_sql"
            )
        bound: Any = dict(params) if isinstance(params, Mapping) else list(params)
        with self._lock:
            self._denied = None
            self._deadline = time.monotonic() + self._timeout_s
            cursor = self._conn.cursor()
            try:
                cursor.execute(sql, bound)
                columns = [c[0] for c in cursor.description or ()]
                rows = cursor.fetchmany(self._max_rows)
            except sqlite3.Warning as exc:
                # pysqlite refuses a second statement before running anything ("SELECT 1; DROP …").
                raise ForbiddenError(
                    "query() runs exactly one read-only statement; send statements separately",
                    code="multiple_statements",
                ) from exc
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            except (ValueError, OverflowError, TypeError) as exc:
                # What the driver refuses to bind or run: a NUL in the SQL, an int past 64 bits, a list.
                raise BadRequestError(f"SQL error: {exc}", code="invalid_sql") from exc
            finally:
                # Closing ends the read transaction; an open one would stop WAL checkpoints from finishing.
                cursor.close()
        return [{name: _jsonable(value) for name, value in zip(columns, row, strict=True)} for row in rows]

    def _translate(self, exc: Exception) -> Exception:
        message = str(exc)
        if self._denied is not None or "readonly database" in message or "not authorized" in message:
            what = self._denied or "writing"
            return ForbiddenError(
                f"query() is read-only ({what} is not allowed); use remember(), goal_set() and the other "
                "brain commands to change it",
                code="read_only",
            )
        if "interrupted" in message:
            return BadRequestError(
                f"query took longer than {self._timeout_s:g} s and was stopped; narrow it or add a LIMIT",
                code="query_timeout",
            )
        return BadRequestError(f"SQL error: {message}", code="invalid_sql")

    def close(self) -> None:
        """Close the read-only connection."""
        with self._lock:
            self._conn.close()
