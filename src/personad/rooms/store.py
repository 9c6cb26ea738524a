"""Chat rooms, memberships and messages in ``<home>/rooms.sqlite``.

WAL with ``synchronous=FULL``: a message the daemon acknowledged survives a crash of the daemon or host.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personad.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError

_ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

_M001 = """
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL DEFAULT '',
    created_by TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    joined_at REAL NOT NULL,
    PRIMARY KEY (room_id, session_id)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    client_id TEXT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_room ON messages(room_id, id);
"""


def m001_initial(db: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would commit the migration's transaction early.
    for statement in _M001.split(";"):
        if statement.strip():
            db.execute(statement)


def m002_direct_rooms_and_message_meta(db: sqlite3.Connection) -> None:
    """Direct rooms (every message there is addressed to its members) and per-message metadata."""
    db.execute("ALTER TABLE rooms ADD COLUMN direct INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE messages ADD COLUMN meta TEXT")


# Applied in order; PRAGMA user_version records how many have run.
MIGRATIONS = (m001_initial, m002_direct_rooms_and_message_meta)


def validate_room_id(room: str) -> str:
    if not _ROOM_ID.match(room):
        raise BadRequestError(
            f"invalid room name {room!r}: use 1-64 lowercase letters, digits, '_', '-' or '.'",
            code="invalid_room",
        )
    return room


@dataclass(frozen=True)
class Sender:
    session_id: str
    client_id: str | None
    kind: str
    name: str


class RoomStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def create(
        self,
        room: str,
        *,
        topic: str = "",
        created_by: str | None = None,
        exist_ok: bool = False,
        direct: bool = False,
    ) -> dict[str, Any]:
        validate_room_id(room)
        try:
            self._db.execute(
                "INSERT INTO rooms(id, topic, created_by, created_at, direct) VALUES (?, ?, ?, ?, ?)",
                (room, topic, created_by, time.time(), int(direct)),
            )
        except sqlite3.IntegrityError:
            if not exist_ok:
                raise ConflictError(
                    f"room {room!r} already exists; join it with room_join", code="room_exists"
                ) from None
        return self.get(room)

    def get(self, room: str) -> dict[str, Any]:
        # Every lookup goes through here: a name no room can have is invalid_room, never a driver error
        # (a lone surrogate cannot even be bound, sqlite3 raises UnicodeEncodeError).
        validate_room_id(room)
        row = self._db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM members m WHERE m.room_id = r.id) AS members"
            " FROM rooms r WHERE r.id = ?",
            (room,),
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no room {room!r}; create it with room_create or list rooms with 'rooms'",
                code="room_not_found",
            )
        return {**dict(row), "direct": bool(row["direct"])}

    def list_rooms(self, session_id: str | None = None) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM members m WHERE m.room_id = r.id) AS members,"
            " EXISTS(SELECT 1 FROM members m WHERE m.room_id = r.id AND m.session_id = ?) AS joined"
            " FROM rooms r ORDER BY r.id",
            (session_id,),
        ).fetchall()
        return [{**dict(r), "joined": bool(r["joined"]), "direct": bool(r["direct"])} for r in rows]

    def join(self, room: str, sender: Sender) -> dict[str, Any]:
        self.get(room)
        self._db.execute(
            "INSERT OR IGNORE INTO members(room_id, session_id, kind, name, joined_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (room, sender.session_id, sender.kind, sender.name, time.time()),
        )
        return self.get(room)

    def leave(self, room: str, session_id: str) -> bool:
        self.get(room)
        cur = self._db.execute("DELETE FROM members WHERE room_id = ? AND session_id = ?", (room, session_id))
        return cur.rowcount > 0

    def is_member(self, room: str, session_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM members WHERE room_id = ? AND session_id = ?", (room, session_id)
        ).fetchone()
        return row is not None

    def require_member(self, room: str, session_id: str) -> None:
        self.get(room)
        if not self.is_member(room, session_id):
            raise ForbiddenError(f"not a member of room {room!r}; room_join it first", code="not_a_member")

    def members(self, room: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT session_id FROM members WHERE room_id = ?", (room,))]

    def post(
        self, room: str, sender: Sender, text: str, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cur = self._db.execute(
            "INSERT INTO messages(room_id, session_id, client_id, kind, name, text, ts, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                room,
                sender.session_id,
                sender.client_id,
                sender.kind,
                sender.name,
                text,
                time.time(),
                json.dumps(meta) if meta else None,
            ),
        )
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _message(row)

    def history(self, room: str, *, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` messages older than id ``before`` (newest page when None), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM messages WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room, before if before is not None else 2**62, limit),
        ).fetchall()
        return [_message(r) for r in reversed(rows)]


def _message(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "room": row["room_id"],
        "text": row["text"],
        "ts": row["ts"],
        "meta": json.loads(row["meta"]) if row["meta"] else None,
        "sender": {
            "session_id": row["session_id"],
            "client_id": row["client_id"],
            "kind": row["kind"],
            "name": row["name"],
        },
    }
