"""Acknowledged writes survive a SIGKILL, and the database stays consistent, round after round."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from personad.brain import Brain, HashEmbedder
from personad.brain.db import connect
from personad.brain.memory import normalise_text
from personad.brain.schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 24


def _writer(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.brain.crash_writer", str(db), "--fake", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _acknowledged(output: str) -> list[str]:
    # Only complete lines count: an id is acknowledged once its newline is out.
    lines = output.split("\n")[:-1]
    return [line for line in lines if line.startswith("mem_")]


def _check(db: Path, acknowledged: list[str]) -> dict[str, Any]:
    """Check the file directly (not through Brain.open, which would repair missing vectors)."""
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # rank = 1 makes FTS5 compare its index with the memories table, not only with itself.
        conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
        missing = conn.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM memories)",
            (json.dumps(acknowledged),),
        ).fetchall()
        assert missing == [], f"{len(missing)} acknowledged memories lost"
        memories = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        vectors = conn.execute("SELECT count(*) FROM memories_vec").fetchone()[0]
        assert vectors == memories
        unlinked = conn.execute(
            "SELECT count(*) FROM memories m WHERE m.type = 'collaboration'"
            " AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.memory_id = m.id)"
        ).fetchone()[0]
        assert unlinked == 0
        # At most one claim is current per subject.
        for _, key in conn.execute(
            "SELECT DISTINCT type, key FROM memories WHERE key IS NOT NULL"
        ).fetchall():
            current = conn.execute("SELECT content FROM memories WHERE key = ? AND valid_to IS NULL", (key,))
            assert len({normalise_text(row[0]) for row in current}) <= 1
        return {"memories": memories}
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_acknowledged_memories_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "brain.sqlite"
    rng = random.Random(20240601)
    acknowledged: list[str] = []
    killed_mid_stream = 0
    for round_ in range(ROUNDS):
        proc = _writer(db, "--seed", str(round_))
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready == "ready\n", proc.stderr.read() if proc.stderr else ready
        time.sleep(rng.uniform(0.01, 0.15))
        proc.send_signal(signal.SIGKILL)
        output = proc.stdout.read()
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        ids = _acknowledged(output)
        killed_mid_stream += bool(ids)
        acknowledged.extend(ids)
        stats = _check(db, acknowledged)
        assert stats["memories"] >= len(set(acknowledged))
    assert killed_mid_stream >= ROUNDS // 2, (
        "the writer was rarely killed while writing; the test proves little"
    )
    with Brain.open(db, embedder=HashEmbedder()) as brain:
        assert brain.stats()["vectors"] == brain.stats()["memories"]
        assert brain.recall("river stone", k=3)


@pytest.mark.timeout(120)
def test_processes_create_and_write_one_brain_at_once(tmp_path: Path) -> None:
    # No brain yet: all three race to create and migrate it, then write concurrently.
    db = tmp_path / "brain.sqlite"
    procs = [_writer(db, "--seed", str(n), "--ops", "40", "--tag", f"p{n}") for n in range(3)]
    outputs = [proc.communicate(timeout=90) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    acknowledged = [i for out, _ in outputs for i in _acknowledged(out)]
    assert len(acknowledged) >= 120
    _check(db, acknowledged)
    with Brain.open(db, embedder=HashEmbedder()) as brain:
        assert brain.query("SELECT count(*) AS n FROM migrations") == [{"n": len(MIGRATIONS)}]
