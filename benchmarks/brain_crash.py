"""SIGKILL a brain writer at random moments, round after round, and check that nothing acknowledged is lost.

Each round starts ``tests/brain/crash_writer.py`` (the writer the durability test uses) on one brain file
that persists across rounds. It writes bursts of memories with ``remember()`` and ``remember_many()``
(facts about shared subjects, so kills also land inside the UPDATEs that close older facts, and
collaborations, which add an interactions row) and prints each id only after the call has returned.
The round SIGKILLs it at a random moment (most rounds 0-0.6 s into writing; about one in ten late in
its start-up, inside or just after Brain.open's migration and vector sync) and then checks the file
directly, without Brain.open (which would repair missing vectors):

* every acknowledged id is in ``memories`` (lost must be 0);
* ``PRAGMA integrity_check`` is ok, and so is FTS5's own integrity check against the memories table;
* every memory has exactly one vector (the vector table and memories agree);
* every collaboration memory has its interactions row;
* at most one claim is current per (type, key).

The writer uses the hashing embedder by default (a round then takes under a second; MiniLM's load would
dominate): what is tested is SQLite's and the brain's transaction handling, not the model. ``--real``
uses MiniLM and starts each round's kill clock at the first acknowledged write (about 5 s a round). The
last line of stdout is one JSON object; the exit status is 1 if anything was lost or inconsistent.

    .venv/bin/python benchmarks/brain_crash.py               # 100 rounds, about 1.5 minutes
    .venv/bin/python benchmarks/brain_crash.py --rounds 10 --real
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WRITER_MODULE = "tests.brain.crash_writer"


def log(line: str) -> None:
    print(line, flush=True)


def start_writer(db: Path, seed: int, real: bool) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", WRITER_MODULE, str(db), "--seed", str(seed), "--tag", f"r{seed}"]
    if not real:
        args.append("--fake")
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def acknowledged(output: str) -> list[str]:
    """Ids on complete lines only: an id counts once its newline is out."""
    return [line for line in output.split("\n")[:-1] if line.startswith("mem_")]


def check(db: Path, acked: list[str]) -> dict[str, Any]:
    """The invariants of tests/brain/test_durability.py, counted instead of asserted."""
    import pysqlite3.dbapi2 as sqlite3

    from personad.brain.db import connect
    from personad.brain.memory import normalise_text

    out: dict[str, Any] = {"problems": []}
    conn = connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        out["integrity_ok"] = integrity == [("ok",)]
        if not out["integrity_ok"]:
            out["problems"].append(f"integrity_check: {integrity[:5]}")
        try:
            # rank = 1 makes FTS5 compare its index with the memories table, not only with itself.
            conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
            out["fts_ok"] = True
        except sqlite3.DatabaseError as exc:
            out["fts_ok"] = False
            out["problems"].append(f"fts integrity-check: {exc}")
        missing = conn.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM memories)",
            (json.dumps(acked),),
        ).fetchall()
        out["lost"] = len(missing)
        if missing:
            out["problems"].append(f"{len(missing)} acknowledged ids missing, e.g. {missing[0][0]}")
        out["memories"] = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        out["vectors"] = conn.execute("SELECT count(*) FROM memories_vec").fetchone()[0]
        unvectored = conn.execute(
            "SELECT count(*) FROM memories WHERE seq NOT IN (SELECT rowid FROM memories_vec)"
        ).fetchone()[0]
        out["vectors_ok"] = out["vectors"] == out["memories"] and unvectored == 0
        if not out["vectors_ok"]:
            out["problems"].append(f"{out['memories']} memories but {out['vectors']} vectors")
        unlinked = conn.execute(
            "SELECT count(*) FROM memories m WHERE m.type = 'collaboration'"
            " AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.memory_id = m.id)"
        ).fetchone()[0]
        out["interactions_ok"] = unlinked == 0
        if unlinked:
            out["problems"].append(f"{unlinked} collaborations without an interactions row")
        conflicting = 0
        for type_, key in conn.execute("SELECT DISTINCT type, key FROM memories WHERE key IS NOT NULL"):
            current = conn.execute(
                "SELECT content FROM memories WHERE type = ? AND key = ? AND valid_to IS NULL", (type_, key)
            ).fetchall()
            conflicting += len({normalise_text(row[0]) for row in current}) > 1
        out["facts_ok"] = conflicting == 0
        if conflicting:
            out["problems"].append(f"{conflicting} subjects with more than one current claim")
    finally:
        conn.close()
    return out


def final_open(db: Path, real: bool) -> dict[str, Any]:
    """Open the brain normally at the end: stats agree and recall answers."""
    from personad.brain import Brain, HashEmbedder

    with Brain.open(db, embedder=None if real else HashEmbedder()) as brain:
        stats = brain.stats()
        hits = brain.recall("river stone lamp", k=3)
    return {"memories": stats["memories"], "vectors": stats["vectors"], "recall_hits": len(hits)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20240601, help="seeds the kill moments")
    parser.add_argument(
        "--max-delay",
        type=float,
        default=0.6,
        help="kill at most this many seconds after the writer is ready",
    )
    parser.add_argument(
        "--early", type=float, default=0.1, help="fraction of rounds killed while the writer is still opening"
    )
    parser.add_argument("--real", action="store_true", help="the writer uses MiniLM instead of hashing")
    parser.add_argument("--keep", type=Path, default=None, help="write the brain here and keep it")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.max_delay <= 0 or not 0 <= args.early <= 1:
        parser.error("--rounds >= 1, --max-delay > 0, 0 <= --early <= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    started = time.perf_counter()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="personad-bench-brain-crash-"))
    db = args.keep if args.keep is not None else workdir / "brain.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    embedder = "MiniLM" if args.real else "hashing"
    log(
        f"brain crash benchmark: {args.rounds} rounds of SIGKILL on {WRITER_MODULE} ({embedder} embedder), "
        f"kill 0-{args.max_delay:g}s after ready ({args.early:.0%} of rounds while opening), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; brain {db}"
    )
    acked: list[str] = []
    totals = {"integrity_failures": 0, "fts_failures": 0, "vector_mismatches": 0, "interaction_failures": 0,
              "fact_conflicts": 0, "lost": 0}  # fmt: skip
    killed_writing = killed_opening = writer_errors = 0
    last: dict[str, Any] = {}
    ready_s: list[float] = []  # how long writers took to open the brain
    try:
        for round_ in range(args.rounds):
            proc = start_writer(db, round_, args.real)
            assert proc.stdout is not None and proc.stderr is not None
            early = bool(ready_s) and rng.random() < args.early
            head = ""
            if early:
                # Late in start-up: inside Brain.open (migration, vector sync) or just after it.
                typical = statistics.median(ready_s)
                time.sleep(rng.uniform(0.6 * typical, 1.1 * typical))
            else:
                spawned = time.perf_counter()
                ready = proc.stdout.readline()
                if ready != "ready\n":
                    proc.wait(timeout=30)
                    log(f"round {round_}: writer failed to start: {proc.stderr.read()[-2000:]}")
                    writer_errors += 1
                    break
                ready_s.append(time.perf_counter() - spawned)
                if args.real:
                    # MiniLM loads on the first remember (seconds): start the clock once writes flow.
                    head += proc.stdout.readline()
                time.sleep(rng.uniform(0.0, args.max_delay))
            os.killpg(proc.pid, signal.SIGKILL)
            output = head + proc.stdout.read()
            error = proc.stderr.read()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
            if proc.returncode != -signal.SIGKILL:
                # It exited on its own before the kill: a crash in the writer, not a kill.
                writer_errors += 1
                log(f"round {round_}: writer exited {proc.returncode}: {error[-2000:]}")
            ids = acknowledged(output)
            if early and not output.startswith("ready\n"):
                killed_opening += 1
            elif ids:
                killed_writing += 1
            acked.extend(ids)
            last = check(db, acked)
            totals["lost"] = last["lost"]
            totals["integrity_failures"] += not last["integrity_ok"]
            totals["fts_failures"] += not last["fts_ok"]
            totals["vector_mismatches"] += not last["vectors_ok"]
            totals["interaction_failures"] += not last["interactions_ok"]
            totals["fact_conflicts"] += not last["facts_ok"]
            for problem in last["problems"]:
                log(f"round {round_}: PROBLEM {problem}")
            if (round_ + 1) % 10 == 0 or round_ + 1 == args.rounds:
                log(
                    f"  round {round_ + 1}/{args.rounds}: {len(acked)} acknowledged, "
                    f"{last['memories']} memories in the file, lost {last['lost']}, "
                    f"{time.perf_counter() - started:.0f}s"
                )
        final = final_open(db, args.real) if last else {}
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    distinct = len(set(acked))
    found = distinct - totals["lost"]
    rounds_run = round_ + 1
    total_s = time.perf_counter() - started
    failures = sum(totals.values())
    before_first = rounds_run - killed_writing - killed_opening - writer_errors
    log(
        f"rounds {rounds_run}: killed while writing {killed_writing}, while opening the brain "
        f"{killed_opening}, after opening but before the first acknowledgement {before_first}, "
        f"writer errors {writer_errors}"
    )
    if ready_s:
        log(f"writer start-up to ready: median {statistics.median(ready_s) * 1000:.0f} ms")
    log(f"acknowledged {distinct}, found {found}, lost {totals['lost']} (must be 0)")
    log(
        f"integrity failures {totals['integrity_failures']}, FTS index failures {totals['fts_failures']}, "
        f"vector/memory mismatches {totals['vector_mismatches']}, collaborations without interaction "
        f"{totals['interaction_failures']}, subjects with two current claims {totals['fact_conflicts']}"
    )
    if final:
        log(
            f"final Brain.open: {final['memories']} memories, {final['vectors']} vectors, "
            f"recall returned {final['recall_hits']}"
        )
    ok = failures == 0 and writer_errors == 0 and bool(final) and final["vectors"] == final["memories"]
    log(f"total {total_s:.1f}s -> {'ok' if ok else 'FAILED'}")
    summary = {
        "benchmark": "brain_crash",
        "rounds": rounds_run,
        "killed_while_writing": killed_writing,
        "killed_while_opening": killed_opening,
        "killed_before_first_ack": before_first,
        "writer_errors": writer_errors,
        "acknowledged": distinct,
        "found": found,
        "lost": totals["lost"],
        "memories_in_file": last.get("memories"),
        **{k: v for k, v in totals.items() if k != "lost"},
        "embedder": embedder,
        "ok": ok,
        "total_s": round(total_s, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
