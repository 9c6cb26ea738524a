"""Skills, goals, emotions, evolution history and interactions: small tables with plain rows.

Functions take an open connection; the caller (Brain) holds its lock and, for writes, a transaction.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

from personad.errors import BadRequestError, NotFoundError

GOAL_STATUSES = ("active", "done", "abandoned", "blocked")


def new_id(prefix: str) -> str:
    """A random id with a readable prefix (mem_, goal_, emo_, int_, evo_)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _bad(message: str, code: str = "invalid_params") -> BadRequestError:
    return BadRequestError(message, code=code)


def check_number(value: Any, name: str, low: float, high: float) -> float:
    """A finite number within [low, high], or a BadRequestError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def check_text(value: Any, name: str, limit: int = 10_000) -> str:
    """A non-empty string (stripped) of at most ``limit`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _bad(f"{name} must be a non-empty string of at most {limit} characters, got {value!r}")
    return value.strip()


def check_limit(value: Any, name: str = "limit", high: int = 10_000) -> int:
    """A positive integer row limit."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise _bad(f"{name} must be an integer between 1 and {high}, got {value!r}")
    return value


def _one(conn: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    cursor = conn.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([c[0] for c in cursor.description], row, strict=True))


def _all(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _decode(row: dict[str, Any], *json_columns: str) -> dict[str, Any]:
    for column in json_columns:
        if column in row and isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


# --- skills -------------------------------------------------------------------------------------------


def get_skill(conn: Any, skill: str) -> dict[str, Any]:
    """One skill row, or NotFoundError."""
    row = _one(conn, "SELECT * FROM skills WHERE skill_id = ?", (skill,))
    if row is None:
        raise NotFoundError(f"no skill {skill!r}; save_achievement() records one", code="skill_not_found")
    return _decode(row, "usage_scenarios")


ACHIEVEMENT_KEYS = ("skill", "lora_hash", "effectiveness", "usage_scenarios")
_HEX = frozenset("0123456789abcdef")


def normalise_lora_hash(value: str) -> str:
    """The registry's form of an adapter hash: a full sha256 digest, with or without the seed's ``sha256:``
    prefix and in any case, becomes 64 lowercase hex digits (what ``AdapterRegistry`` manifests carry, so
    ``use_skills_with_hashes`` and ``skill_usage_by_hash`` match it). Anything else is an opaque label and is
    kept verbatim (``sha256:aa`` is not a digest, so it stays ``sha256:aa``)."""
    text = value.strip()
    digest = text[7:] if text[:7].lower() == "sha256:" else text
    if len(digest) == 64 and set(digest.lower()) <= _HEX:
        return digest.lower()
    return text


def achievement_args(achievement: Any) -> tuple[Any, Any, Any, Any]:
    """The seed's ``saveAchievement({skill, lora_hash, effectiveness, usage_scenarios})`` as arguments, or a
    BadRequestError ``invalid_achievement`` naming what is wrong with the object."""
    if not isinstance(achievement, dict):
        raise _bad("an achievement must be an object", "invalid_achievement")
    unknown = sorted(str(k) for k in achievement if k not in ACHIEVEMENT_KEYS)
    if unknown:
        raise _bad(
            f"unknown achievement field(s) {', '.join(unknown)}; expected {', '.join(ACHIEVEMENT_KEYS)}",
            "invalid_achievement",
        )
    missing = [k for k in ACHIEVEMENT_KEYS[:3] if k not in achievement]
    if missing:
        raise _bad(f"an achievement needs {', '.join(missing)}", "invalid_achievement")
    return (
        achievement["skill"],
        achievement["lora_hash"],
        achievement["effectiveness"],
        achievement.get("usage_scenarios"),
    )


def save_achievement(
    conn: Any, skill: Any, lora_hash: Any, effectiveness: Any, usage_scenarios: Any = None
) -> dict[str, Any]:
    """Insert a skill, or update its adapter and effectiveness and add new usage scenarios.

    Every problem is a BadRequestError with code ``invalid_achievement``. ``lora_hash`` is normalised by
    ``normalise_lora_hash``."""
    try:
        skill = check_text(skill, "skill", 200)
        lora_hash = normalise_lora_hash(check_text(lora_hash, "lora_hash", 200))
        effectiveness = check_number(effectiveness, "effectiveness", 0, 1)
    except BadRequestError as exc:
        raise _bad(exc.message, "invalid_achievement") from None
    scenarios = [] if usage_scenarios is None else usage_scenarios
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    if not isinstance(scenarios, list | tuple) or not all(
        isinstance(s, str) and s.strip() for s in scenarios
    ):
        raise _bad("usage_scenarios must be a list of non-empty strings", "invalid_achievement")
    existing = _one(conn, "SELECT usage_scenarios FROM skills WHERE skill_id = ?", (skill,))
    merged: list[str] = json.loads(existing["usage_scenarios"]) if existing else []
    merged += [s.strip() for s in scenarios if s.strip() not in merged]
    conn.execute(
        """INSERT INTO skills (skill_id, lora_hash, effectiveness, acquired_at, usage_count, usage_scenarios)
           VALUES (?, ?, ?, ?, 0, ?)
           ON CONFLICT (skill_id) DO UPDATE SET lora_hash = excluded.lora_hash,
               effectiveness = excluded.effectiveness, usage_scenarios = excluded.usage_scenarios""",
        (skill, lora_hash, effectiveness, time.time(), json.dumps(merged)),
    )
    return get_skill(conn, skill)


def measure_skills(
    conn: Any, lora_hashes: Any, effectiveness: Any, new_lora_hash: Any = None
) -> list[dict[str, Any]]:
    """Set the effectiveness of every skill carried by one of ``lora_hashes`` to a new measurement (and,
    when the adapter was retrained, its hash to ``new_lora_hash``); returns the updated skills."""
    effectiveness = check_number(effectiveness, "effectiveness", 0, 1)
    hashes = sorted({normalise_lora_hash(h) for h in lora_hashes if isinstance(h, str) and h.strip()})
    if not hashes:
        return []
    replacement = (
        None if new_lora_hash is None else normalise_lora_hash(check_text(new_lora_hash, "lora_hash"))
    )
    marks = ",".join("?" * len(hashes))
    ids = [
        r["skill_id"]
        for r in _all(conn, f"SELECT skill_id FROM skills WHERE lora_hash IN ({marks})", tuple(hashes))
    ]
    for skill_id in ids:
        conn.execute(
            "UPDATE skills SET effectiveness = ?, lora_hash = coalesce(?, lora_hash) WHERE skill_id = ?",
            (effectiveness, replacement, skill_id),
        )
    return [get_skill(conn, skill_id) for skill_id in ids]


def use_skill(conn: Any, skill: Any) -> dict[str, Any]:
    """Count one use of a skill."""
    skill = check_text(skill, "skill", 200)
    cursor = conn.execute("UPDATE skills SET usage_count = usage_count + 1 WHERE skill_id = ?", (skill,))
    if cursor.rowcount == 0:
        raise NotFoundError(f"no skill {skill!r}; save_achievement() records one", code="skill_not_found")
    return get_skill(conn, skill)


def use_skills_with_hashes(conn: Any, lora_hashes: Any) -> int:
    """Count one use of every skill whose adapter (by ``lora_hash``) answered a request; returns how many."""
    hashes = sorted({normalise_lora_hash(h) for h in lora_hashes if isinstance(h, str) and h.strip()})
    if not hashes:
        return 0
    marks = ",".join("?" * len(hashes))
    cursor = conn.execute(
        f"UPDATE skills SET usage_count = usage_count + 1 WHERE lora_hash IN ({marks})", tuple(hashes)
    )
    return int(cursor.rowcount)


def usage_by_hash(conn: Any) -> dict[str, int]:
    """Total uses per adapter ``lora_hash`` over all skills."""
    rows = _all(conn, "SELECT lora_hash, SUM(usage_count) AS uses FROM skills GROUP BY lora_hash")
    return {row["lora_hash"]: int(row["uses"] or 0) for row in rows}


def list_skills(conn: Any) -> list[dict[str, Any]]:
    """All skills, most effective first."""
    rows = _all(conn, "SELECT * FROM skills ORDER BY effectiveness DESC, skill_id")
    return [_decode(row, "usage_scenarios") for row in rows]


# --- goals --------------------------------------------------------------------------------------------


def _status(value: Any) -> str:
    if value not in GOAL_STATUSES:
        raise _bad(f"status must be one of {', '.join(GOAL_STATUSES)}, got {value!r}")
    return str(value)


def get_goal(conn: Any, goal_id: Any) -> dict[str, Any]:
    """One goal row, or NotFoundError."""
    row = _one(conn, "SELECT * FROM goals WHERE id = ?", (goal_id,)) if isinstance(goal_id, str) else None
    if row is None:
        raise NotFoundError(
            f"no goal {goal_id!r}; goal_list() shows the goals there are", code="goal_not_found"
        )
    return row


def goal_set(conn: Any, description: Any, priority: Any = 0.5, status: Any = "active") -> dict[str, Any]:
    """Create a goal."""
    description = check_text(description, "description")
    priority = check_number(priority, "priority", 0, 1)
    now = time.time()
    goal_id = new_id("goal")
    conn.execute(
        "INSERT INTO goals (id, description, status, priority, progress, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 0, ?, ?)",
        (goal_id, description, _status(status), priority, now, now),
    )
    return get_goal(conn, goal_id)


def goal_list(conn: Any, status: Any = None) -> list[dict[str, Any]]:
    """Goals (optionally of one status), highest priority first."""
    if status is None:
        return _all(conn, "SELECT * FROM goals ORDER BY priority DESC, created_at, rowid")
    return _all(
        conn,
        "SELECT * FROM goals WHERE status = ? ORDER BY priority DESC, created_at, rowid",
        (_status(status),),
    )


def goal_update(conn: Any, goal_id: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a goal's status, progress, priority or description."""
    get_goal(conn, goal_id)
    values: dict[str, Any] = {}
    if changes.get("status") is not None:
        values["status"] = _status(changes["status"])
    if changes.get("progress") is not None:
        values["progress"] = check_number(changes["progress"], "progress", 0, 1)
    if changes.get("priority") is not None:
        values["priority"] = check_number(changes["priority"], "priority", 0, 1)
    if changes.get("description") is not None:
        values["description"] = check_text(changes["description"], "description")
    if values:
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{column} = ?" for column in values)
        conn.execute(f"UPDATE goals SET {assignments} WHERE id = ?", (*values.values(), goal_id))
    return get_goal(conn, goal_id)


# --- emotions, evolution, interactions ----------------------------------------------------------------


def feel(conn: Any, label: Any, valence: Any, arousal: Any, cause: Any = "") -> dict[str, Any]:
    """Record an emotion: valence in [-1, 1], arousal in [0, 1]."""
    label = check_text(label, "label", 100)
    valence = check_number(valence, "valence", -1, 1)
    arousal = check_number(arousal, "arousal", 0, 1)
    if not isinstance(cause, str) or len(cause) > 10_000:
        raise _bad("cause must be a string of at most 10000 characters")
    row = {"id": new_id("emo"), "label": label, "valence": valence, "arousal": arousal,
           "cause": cause.strip(), "timestamp": time.time()}  # fmt: skip
    conn.execute(
        "INSERT INTO emotions (id, label, valence, arousal, cause, timestamp) VALUES (?, ?, ?, ?, ?, ?)",
        tuple(row.values()),
    )
    return row


def emotions(conn: Any, limit: Any = 20) -> list[dict[str, Any]]:
    """The latest emotions, newest first."""
    return _all(
        conn, "SELECT * FROM emotions ORDER BY timestamp DESC, rowid DESC LIMIT ?", (check_limit(limit),)
    )


def record_evolution(
    conn: Any, trigger_pattern: Any, lora_generated: Any, success_rate: Any, details: Any = None
) -> dict[str, Any]:
    """Record one self-improvement step: what triggered it, which adapter it produced, how well it worked,
    and (``details``, a JSON object) what else it measured."""
    trigger_pattern = check_text(trigger_pattern, "trigger_pattern")
    if lora_generated is not None:
        lora_generated = check_text(lora_generated, "lora_generated", 200)
    success_rate = check_number(success_rate, "success_rate", 0, 1)
    if details is not None and not isinstance(details, dict):
        raise BadRequestError("details must be a JSON object", code="invalid_params")
    row = {"id": new_id("evo"), "trigger_pattern": trigger_pattern, "lora_generated": lora_generated,
           "success_rate": success_rate, "timestamp": time.time(),
           "details": None if details is None else json.dumps(details)}  # fmt: skip
    conn.execute(
        "INSERT INTO evolution_history"
        " (id, trigger_pattern, lora_generated, success_rate, timestamp, details)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        tuple(row.values()),
    )
    return {**row, "details": details}


def evolution_history(conn: Any, limit: Any = 50) -> list[dict[str, Any]]:
    """Evolution steps, newest first."""
    sql = "SELECT * FROM evolution_history ORDER BY timestamp DESC, rowid DESC LIMIT ?"
    rows = _all(conn, sql, (check_limit(limit),))
    for row in rows:
        row["details"] = json.loads(row["details"]) if row.get("details") else None
    return rows


def interactions(conn: Any, with_persona: Any = None, limit: Any = 50) -> list[dict[str, Any]]:
    """Recorded collaborations, newest first, optionally with one persona."""
    limit = check_limit(limit)
    if with_persona is None:
        rows = _all(conn, "SELECT * FROM interactions ORDER BY timestamp DESC, rowid DESC LIMIT ?", (limit,))
    else:
        rows = _all(
            conn,
            "SELECT * FROM interactions WHERE with_persona = ? ORDER BY timestamp DESC, rowid DESC LIMIT ?",
            (check_text(with_persona, "with_persona", 200), limit),
        )
    return [_decode(row, "learned") for row in rows]


def table_rows(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of any query as dicts (for export and tests)."""
    return _all(conn, sql, params)
