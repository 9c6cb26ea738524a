"""The vector table: one row per memory, keyed by its rowid, with the columns recall filters on.

The filter columns are copies of the memory's (sqlite-vec filters on them during the KNN scan, so a
filtered recall costs one scan instead of widening k until enough neighbours pass). They never change
after insert except ``valid_to``, which a trigger keeps in step within the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: vec0 metadata cannot be NULL: an open memory is valid until "forever".
OPEN_UNTIL = 1e300

INSERT_SQL = (
    "INSERT INTO memories_vec (rowid, embedding, type, source, key, ts, valid_from, valid_to)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The memories columns insert_vector needs from a row.
SOURCE_COLUMNS = ("type", "source", "key", "timestamp", "valid_from", "valid_to")


def insert_vector(conn: Any, seq: int, vector: np.ndarray, memory: Mapping[str, Any]) -> None:
    """Store a memory's vector with its filter columns (``memory`` holds SOURCE_COLUMNS)."""
    valid_to = memory["valid_to"]
    conn.execute(
        INSERT_SQL,
        (
            seq,
            np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
            memory["type"],
            memory["source"],
            memory["key"] or "",
            float(memory["timestamp"]),
            float(memory["valid_from"]),
            OPEN_UNTIL if valid_to is None else float(valid_to),
        ),
    )
