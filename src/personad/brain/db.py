"""SQLite connections for the brain: pysqlite3 (a current SQLite with FTS5) with sqlite-vec loaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pysqlite3.dbapi2 as sqlite3
import sqlite_vec

#: The daemon and a persona's own process may write the same brain; a writer waits this long for the lock.
BUSY_TIMEOUT_MS = 10_000

# Reads of the vector table touch every chunk; mapping the file avoids a read() syscall and a page-cache
# copy per page. The mapping is address space, not resident memory.
_MMAP_BYTES = 1 << 30
_CACHE_KIB = 32 * 1024


def _load_vec(conn: Any) -> None:
    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        # Loading stays possible only for the instant we need it: SQL must never call load_extension().
        conn.enable_load_extension(False)


def connect(path: Path) -> Any:
    """The read-write connection: WAL, fsync on every commit, foreign keys on."""
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        _load_vec(conn)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL lets the persona process read while the daemon writes, and commits append to one file.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {path} to WAL (journal_mode is {mode})")
        # FULL, not WAL's usual NORMAL: NORMAL may lose the last commits on power loss, and a memory
        # the persona was told is stored must still be there after any crash. The cost is one fsync per
        # commit, which is why remember_many() batches into one transaction.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
        conn.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(path: Path) -> Any:
    """A connection SQLite itself refuses to write through (``mode=ro``), for ad-hoc user SQL."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        _load_vec(conn)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB // 4}")
        conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write_transaction(conn: Any) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error.

    IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can fail
    with SQLITE_BUSY when another process wrote in between, and busy_timeout cannot retry that.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
