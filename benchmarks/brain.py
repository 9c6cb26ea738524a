"""Benchmark a persona's brain: insert rate, recall latency and recall quality at 1k, 10k and 100k memories.

All with the real embedder (all-MiniLM-L6-v2 on the CPU):

* insert rate: single ``remember()`` calls and batched ``remember_many`` (one transaction and one fsync
  per call, one model call per batch) into a fresh brain, in memories/s;
* recall latency: p50/p95 of ``recall(question, k=10)`` in ``hybrid``, ``fts`` and ``vector`` mode
  (hybrid and vector include embedding the query), the modes interleaved question by question so drifting
  load hits all three alike; plus a breakdown of hybrid's parts (query embedding, the raw KNN scan, BM25)
  so a miss can be traced;
* recall quality: ``benchmarks/data/brain_labelled.jsonl`` holds facts, each with a question that
  paraphrases it. The facts are added to a corpus of generated filler memories (templates x vocabulary,
  Zipf-distributed word choice, sharing names and places with the facts) and recall@10 is the fraction of
  questions whose fact comes back in the top 10.

Embedding 100k filler memories takes minutes, so each corpus is built once into a cache directory
(default ``~/.cache/personad/bench``; the file name carries a hash of the generator version and the
embedder) and copied for each run; the labelled facts are added to the copy, so editing them needs no
rebuild. ``--rebuild`` forces a new corpus.

    .venv/bin/python benchmarks/brain.py            # 1k, 10k, 100k: ~1.5 min with the caches built
    .venv/bin/python benchmarks/brain.py --quick    # 1k and 10k, fewer inserts and timed queries: ~30 s
    .venv/bin/python benchmarks/brain.py --sizes 10000 --build-only

Building the caches the first time embeds 111k texts: about 7 minutes on 2 idle cores (over 20 when
other work shares them).

The last line of stdout is one JSON object with the numbers. Other processes on the machine share its
cores; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personad.brain import Brain, default_embedder
from personad.brain.db import connect_read_only

LABELLED = Path(__file__).resolve().parent / "data" / "brain_labelled.jsonl"
# Written after the fusion weights were chosen on LABELLED, by someone who never saw retrieval results:
# a held-out check that the weights were not tuned to one set.
HELDOUT = Path(__file__).resolve().parent / "data" / "brain_labelled_heldout.jsonl"
LABELLED_SETS = {"dev": LABELLED, "heldout": HELDOUT}
DEFAULT_CACHE = Path.home() / ".cache" / "personad" / "bench"
#: Bump whenever the filler generator changes: cached corpora are keyed by it.
GENERATOR_VERSION = "filler-v1"
SIZES = (1000, 10_000, 100_000)
K = 10
HYBRID_P95_TARGETS_MS = {10_000: 50.0, 100_000: 155.0}
MODES = ("hybrid", "fts", "vector")
#: Filler and facts get timestamps over this many days before a fixed epoch, so recency favours neither.
SPAN_DAYS = 730
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so a cached corpus does not age between runs
BUILD_BATCH = 500


def log(line: str) -> None:
    print(line, flush=True)


# --- filler generator ---------------------------------------------------------------------------------

PEOPLE = [
    "Maya", "Daniel", "Sofia", "Liam", "Priya", "Omar", "Elena", "Noah", "Aisha", "Lucas", "Hannah",
    "Mateo", "Chloe", "Ravi", "Zoe", "Ethan", "Leila", "Marco", "Nina", "Samuel", "Grace", "Tomas", "Yuki",
    "Isaac", "Amara", "Felix", "Ingrid", "Hugo", "Mei", "Carlos", "Freya", "Jonah", "Anika", "Diego",
    "Tessa", "Kofi", "Lena", "Arjun", "Clara", "Viktor", "Rosa", "Henrik", "Imani", "Pablo", "Julia",
    "Kenji", "Maren", "Ahmed", "Olivia", "Stefan", "Nadia", "Oscar", "Beatrice", "Theo", "Fatima", "Rafael",
    "Alma", "Jasper", "Sana", "Bruno", "Helga", "Adrian", "Lucia", "Emeka", "Vera", "Tobias", "Ines",
    "Malik", "Petra", "Caleb", "Yara", "Dmitri", "Harper", "Luca", "Elif", "Gabriel", "Ruth", "Nikhil",
    "Astrid", "Simon", "Wanjiru", "Elliot", "Camila", "Jun", "Saoirse", "Levi", "Paloma",
]  # fmt: skip
CITIES = [
    "Lisbon", "Berlin", "Toronto", "Osaka", "Nairobi", "Lyon", "Denver", "Porto", "Seattle", "Melbourne",
    "Oslo", "Austin", "Dublin", "Kyoto", "Madrid", "Vienna", "Boston", "Prague", "Chicago", "Montreal",
    "Edinburgh", "Copenhagen", "Barcelona", "Munich", "Singapore", "Lagos", "Helsinki", "Valencia",
    "Krakow", "Bangalore", "Zurich", "Seville", "Portland", "Marseille", "Hamburg", "Athens", "Budapest",
    "Reykjavik", "Tallinn",
]  # fmt: skip
VENUES = [
    "the office", "the cafe on the corner", "the library", "the gym", "the park", "home", "the airport",
    "the train station", "the coworking space", "the farmers market", "the bakery", "the clinic",
    "the bookshop", "the climbing hall", "the pub near the river", "the hotel lobby", "the conference hall",
    "the meeting room on the third floor", "the ramen place", "the garden", "the swimming pool", "the museum",
]  # fmt: skip
PROJECTS = [
    "billing migration", "onboarding flow", "search revamp", "mobile app release", "data warehouse",
    "quarterly roadmap", "design system", "pricing experiment", "support dashboard", "API gateway",
    "newsletter redesign", "hiring plan", "security audit", "analytics pipeline", "checkout rewrite",
    "partner portal", "recommendation engine", "translation effort", "infrastructure budget",
    "customer interviews", "accessibility review", "offline mode", "notification service", "invoice export",
]  # fmt: skip
TOPICS = [
    "remote work", "sleep habits", "electric cars", "urban gardening", "sourdough baking", "climate policy",
    "board games", "jazz history", "language learning", "marathon training", "home renovation",
    "machine learning", "personal finance", "bird watching", "photography", "interest rates",
    "chess openings", "vintage furniture", "public transport", "meal prep", "mindfulness",
    "open source licensing", "space exploration", "coffee roasting", "parenting", "cycling routes",
    "tax deadlines", "film scores",
]  # fmt: skip
FOODS = [
    "pasta", "sushi", "tacos", "a curry", "pancakes", "a salad", "dumplings", "pizza", "soup", "a sandwich",
    "falafel", "pho", "grilled fish", "risotto", "a burger", "noodles", "oatmeal", "a burrito", "ramen",
    "pastries", "tapas", "bibimbap",
]  # fmt: skip
WEEKDAYS = [
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
]  # fmt: skip
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
]  # fmt: skip
TIMES = ["9am", "10:30", "noon", "2pm", "3:15", "4pm", "half past five", "7pm", "8 in the morning", "lunch"]
FEELINGS = [
    "tired", "excited", "stressed", "relieved", "distracted", "cheerful", "frustrated", "quiet", "anxious",
    "confident", "annoyed", "curious", "overwhelmed", "calm",
]  # fmt: skip
DOCUMENTS = [
    "report", "slide deck", "contract", "spreadsheet", "meeting notes", "proposal", "invoice", "design doc",
    "budget draft", "release notes", "survey results", "job description", "travel itinerary", "checklist",
]  # fmt: skip
COMPONENTS = [
    "login service", "payment webhook", "cache layer", "search index", "email worker", "CSV importer",
    "auth token refresh", "image resizer", "cron scheduler", "database migration", "rate limiter",
    "websocket handler", "PDF renderer", "feature flag client",
]  # fmt: skip
CAUSES = [
    "a missing index", "an expired certificate", "a timezone bug", "a race condition", "a typo in the config",
    "an off-by-one error", "a memory leak", "a stale cache", "a network timeout", "a null value in the input",
    "a dependency upgrade", "a full disk", "wrong file permissions",
]  # fmt: skip
ACTIVITIES = [
    "running", "reading", "cooking", "hiking", "swimming", "writing", "painting", "gardening", "cycling",
    "yoga", "climbing", "knitting", "playing guitar", "studying", "travelling", "shopping", "working late",
]  # fmt: skip
WEATHER = ["rainy", "sunny", "windy", "freezing", "humid", "foggy", "stormy", "mild", "snowy", "grey"]
ADJECTIVES = [
    "quiet", "long", "last", "hidden", "silver", "broken", "northern", "small", "golden", "distant", "open",
    "second", "endless", "paper",
]  # fmt: skip
NOUNS = [
    "river", "garden", "winter", "city", "door", "mountain", "letter", "island", "machine", "light", "road",
    "house", "sea", "clock",
]  # fmt: skip
GENRES = ["mystery", "science fiction", "history", "poetry", "biography", "fantasy", "economics", "travel"]
RELATIONS = [
    "sister",
    "brother",
    "manager",
    "neighbour",
    "colleague",
    "friend",
    "cousin",
    "mentor",
    "landlord",
]

TEMPLATES: list[tuple[str, str]] = [
    ("conversation", "{person} said the {project} review moved to {weekday} at {time}."),
    ("conversation", "Had {food} with {person} at {venue} in {city}; we talked about {topic}."),
    ("observation", "{person} seemed {feeling} during the {project} standup on {weekday}."),
    ("task", "Reminder: send {person} the {document} for the {project} before {weekday}."),
    ("task", "The user asked me to summarise the {document} about {topic} by {weekday}."),
    ("observation", "The weather in {city} was {weather} on {weekday}, so {person} skipped {activity}."),
    ("observation", "Read an article about {topic} that mentioned a study from {city}."),
    ("conversation", "{person} recommended a {genre} book called The {adj} {noun}."),
    ("observation", "Spent {n} minutes debugging the {component}; the root cause was {cause}."),
    ("observation", "The {component} deploy on {weekday} failed because of {cause}."),
    ("conversation", "{person} is travelling to {city} in {month} for the {project} kickoff."),
    ("reflection", "I should ask {person} more about {topic}; they seemed {feeling} when it came up."),
    ("conversation", "{person} mentioned that their {relation} is moving to {city} in {month}."),
    ("task", "Booked a table at {venue} for {person} and two guests on {weekday} at {time}."),
    ("observation", "{person} and {person2} disagreed about the scope of the {project}."),
    ("conversation", "{person} wants the {document} to cover {topic} as well as the {project}."),
    ("observation", "Ticket {ticket} about the {component} was closed by {person} on {weekday}."),
    ("reflection", "Today was {feeling}: too many meetings and no time for the {project}."),
    ("conversation", "{person} asked whether we could move the {project} demo to {month}."),
    ("observation", "Noticed {person} {activity} at {venue} early on {weekday} morning."),
    ("conversation", "{person} told me {person2} is leaving the team at the end of {month}."),
    ("task", "Pick up {food} for {person} from {venue} after the {time} call."),
    ("observation", "The {project} dashboard showed {n} new signups from {city} this week."),
    ("conversation", "{person} thinks {topic} is overrated, but enjoys {activity} on weekends."),
    ("reflection", "Learned something about {topic} from {person}: start small and measure."),
    ("observation", "Flight to {city} was delayed {n} minutes; {person} waited at {venue}."),
    ("conversation", "{person} shared photos from a {weather} weekend in {city}."),
    ("task", "Draft the {document} on {topic} and ask {person} for a review."),
    ("observation", "The {component} alert fired {n} times overnight during the {project} load test."),
    ("conversation", "{person} suggested we try {food} at {venue} next {weekday}."),
    ("conversation", "{person} is reading a {genre} novel set in {city}."),
    ("observation", "{person} presented the {project} numbers; {person2} asked about {topic}."),
    ("task", "Renew the {document} with {person} before the end of {month}."),
    ("reflection", "Felt {feeling} after the call with {person} about the {project}."),
    ("conversation", "{person}'s {relation} recommended {venue} in {city} for {food}."),
    ("observation", "{person} fixed {cause} in the {component} and wrote a short post-mortem."),
]

# Some types are more common than others: conversations and observations dominate a persona's memory.
_TEMPLATE_WEIGHTS = [
    {"conversation": 3.0, "observation": 3.0, "task": 1.5, "reflection": 1.0}[t] for t, _ in TEMPLATES
]


class Zipf:
    """Pick from a list with weight 1 / rank^s, after a fixed shuffle (so the favourite varies by list)."""

    def __init__(self, items: list[str], rng: random.Random, s: float = 1.05) -> None:
        self.items = list(items)
        rng.shuffle(self.items)
        total = 0.0
        self.cumulative: list[float] = []
        for rank in range(1, len(self.items) + 1):
            total += 1.0 / rank**s
            self.cumulative.append(total)

    def __call__(self, rng: random.Random) -> str:
        index = bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])
        return self.items[min(index, len(self.items) - 1)]


def memory_meta(rng: random.Random) -> dict[str, Any]:
    """Timestamp and importance, drawn the same way for filler and labelled facts."""
    return {
        "timestamp": round(EPOCH - rng.random() * SPAN_DAYS * 86400.0, 3),
        "importance": round(min(1.0, max(0.0, rng.gauss(0.5, 0.18))), 3),
    }


def filler(seed: str = GENERATOR_VERSION) -> Iterator[dict[str, Any]]:
    """An endless, deterministic stream of distinct filler memories (the first N are the N-memory corpus)."""
    rng = random.Random(seed)
    vocab: dict[str, Callable[[random.Random], str]] = {
        "person": Zipf(PEOPLE, rng),
        "city": Zipf(CITIES, rng),
        "venue": Zipf(VENUES, rng),
        "project": Zipf(PROJECTS, rng),
        "topic": Zipf(TOPICS, rng),
        "food": Zipf(FOODS, rng),
        "weekday": Zipf(WEEKDAYS, rng, 0.3),
        "month": Zipf(MONTHS, rng, 0.3),
        "time": Zipf(TIMES, rng),
        "feeling": Zipf(FEELINGS, rng),
        "document": Zipf(DOCUMENTS, rng),
        "component": Zipf(COMPONENTS, rng),
        "cause": Zipf(CAUSES, rng),
        "activity": Zipf(ACTIVITIES, rng),
        "weather": Zipf(WEATHER, rng),
        "adj": Zipf(ADJECTIVES, rng),
        "noun": Zipf(NOUNS, rng),
        "genre": Zipf(GENRES, rng),
        "relation": Zipf(RELATIONS, rng),
    }
    seen: set[str] = set()
    while True:
        type_, template = rng.choices(TEMPLATES, weights=_TEMPLATE_WEIGHTS)[0]
        values = {name: pick(rng) for name, pick in vocab.items()}
        values["person2"] = vocab["person"](rng)
        if values["person2"] == values["person"]:
            continue
        values["n"] = str(int(rng.paretovariate(1.2) * 5))
        values["ticket"] = f"#{rng.randint(1000, 99999)}"
        content = template.format(**values)
        if content in seen:
            continue
        seen.add(content)
        yield {"type": type_, "content": content, "source": "self", **memory_meta(rng)}


# --- corpora --------------------------------------------------------------------------------------------


def corpus_path(cache: Path, size: int, embedder_name: str) -> Path:
    digest = hashlib.sha256(f"{GENERATOR_VERSION}\0{embedder_name}".encode()).hexdigest()[:10]
    label = f"{size // 1000}k" if size % 1000 == 0 else str(size)
    return cache / f"brain-{label}-{digest}.sqlite"


def build_corpus(path: Path, size: int, embedder: Any) -> float:
    """Fill a new brain with the first ``size`` filler memories; returns seconds taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Private to this process, so two runs building the same corpus cannot collide.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    stream = filler()
    done = 0
    try:
        with Brain.open(partial, embedder=embedder) as brain:
            while done < size:
                batch = list(itertools.islice(stream, min(BUILD_BATCH, size - done)))
                results = brain.remember_many(batch)
                assert all(r["created"] for r in results), "filler memories must be distinct"
                done += len(batch)
                if done % 10_000 == 0 or done == size:
                    elapsed = time.perf_counter() - started
                    log(f"  built {done}/{size} memories in {elapsed:.0f}s ({done / elapsed:.0f}/s)")
        # The last connection checkpointed the WAL on close: the main file is the whole brain.
        partial.replace(path)
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return time.perf_counter() - started


def ensure_corpus(cache: Path, size: int, embedder: Any, rebuild: bool) -> Path:
    path = corpus_path(cache, size, embedder.name)
    if path.exists() and not rebuild:
        return path
    log(f"building the {size}-memory corpus at {path} (once; later runs reuse it)")
    build_corpus(path, size, embedder)
    return path


def remove_stale_runs(cache: Path) -> None:
    """Delete the working copies of runs that were killed (their pid is gone)."""
    for run in cache.glob("run-*-*"):
        try:
            pid = int(run.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(run, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def fresh_copy(source: Path, workdir: Path, name: str) -> Path:
    """A private copy of a cached corpus, so runs never change (or age) the cache."""
    target = workdir / name
    shutil.copyfile(source, target)
    # A build closes cleanly (no WAL left); anything else that opened the cache may have left one behind.
    wal = Path(f"{source}-wal")
    if wal.exists() and wal.stat().st_size:
        shutil.copyfile(wal, Path(f"{target}-wal"))
    return target


# --- measurements ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load_labelled(path: Path = LABELLED) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len({r["fact"] for r in rows}) != len(rows):
        raise SystemExit(f"{path}: facts must be distinct")
    return rows


def load_all_labelled() -> list[dict[str, str]]:
    """Every labelled set, each row tagged with its set name; facts distinct across sets."""
    rows = [{**row, "set": name} for name, path in LABELLED_SETS.items() for row in load_labelled(path)]
    if len({r["fact"] for r in rows}) != len(rows):
        raise SystemExit("labelled facts must be distinct across sets")
    return rows


def fact_memories(labelled: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The labelled facts as memories, with timestamps and importance drawn like the filler's."""
    rng = random.Random("labelled-facts")
    return [
        {"type": "fact", "content": row["fact"], "source": "self", **memory_meta(rng)} for row in labelled
    ]


def measure_inserts(
    workdir: Path, embedder: Any, singles: int, batched: int, batch_size: int
) -> dict[str, Any]:
    """memories/s for remember() one at a time and remember_many() in batches, into a fresh brain."""
    stream = filler("insert-benchmark")
    path = workdir / "insert.sqlite"
    with Brain.open(path, embedder=embedder) as brain:
        for memory in itertools.islice(stream, 5):  # warm-up: statements, the model's first batches
            brain.remember(memory)
        one = list(itertools.islice(stream, singles))
        many = list(itertools.islice(stream, batched))
        per_call: list[float] = []
        started = time.perf_counter()
        for memory in one:
            t0 = time.perf_counter()
            brain.remember(memory)
            per_call.append(time.perf_counter() - t0)
        single_s = time.perf_counter() - started
        batch_calls: list[float] = []
        started = time.perf_counter()
        for start in range(0, len(many), batch_size):
            t0 = time.perf_counter()
            brain.remember_many(many[start : start + batch_size])
            batch_calls.append(time.perf_counter() - t0)
        batched_s = time.perf_counter() - started
        # How much of each call is the model: embed the same texts again outside the brain.
        sample = [m["content"] for m in many[:batch_size]]
        embed_batch_s = []
        for _ in range(3):
            t0 = time.perf_counter()
            embedder.embed(sample)
            embed_batch_s.append(time.perf_counter() - t0)
        embed_one_s = []
        for memory in one[:50]:
            t0 = time.perf_counter()
            embedder.embed([memory["content"]])
            embed_one_s.append(time.perf_counter() - t0)
    return {
        "single_per_s": singles / single_s,
        "single_p50_ms": percentile(per_call, 50) * 1000,
        "single_p95_ms": percentile(per_call, 95) * 1000,
        "batched_per_s": batched / batched_s,
        "batch_p50_ms": percentile(batch_calls, 50) * 1000,
        "embed_batch_ms": statistics.median(embed_batch_s) * 1000,
        "embed_one_ms": statistics.median(embed_one_s) * 1000,
    }


@dataclass
class SizeResult:
    size: int
    memories: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    hits: dict[str, list[int | None]] = field(default_factory=lambda: {m: [] for m in MODES})
    embed_ms: list[float] = field(default_factory=list)
    knn_ms: list[float] = field(default_factory=list)

    def p(self, mode: str, q: float) -> float:
        return percentile(self.latencies[mode], q)

    def recall_at(self, mode: str, k: int = K, rows: list[int] | None = None) -> float:
        ranks = self.hits[mode] if rows is None else [self.hits[mode][i] for i in rows]
        return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)

    def mrr(self, mode: str) -> float:
        ranks = self.hits[mode]
        return sum(1.0 / r for r in ranks if r is not None) / len(ranks)


WARMUP_QUERIES = [
    "what did we talk about last week",
    "anything about the budget",
    "who was travelling recently",
    "notes on debugging",
    "what does the user like",
]


def knn_breakdown(path: Path, vector: bytes) -> float:
    """Seconds for the raw KNN scan recall runs (same SQL, k=50, open memories only), embedding excluded."""
    conn = knn_breakdown.conns.get(path)  # type: ignore[attr-defined]
    if conn is None:
        conn = connect_read_only(path)
        knn_breakdown.conns[path] = conn  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    conn.execute(
        "SELECT rowid, distance FROM memories_vec WHERE embedding MATCH ? AND k = 50 AND valid_to >= 1e300",
        (vector,),
    ).fetchall()
    return time.perf_counter() - t0


knn_breakdown.conns = {}  # type: ignore[attr-defined]


def measure_size(
    corpus: Path, workdir: Path, size: int, embedder: Any, labelled: list[dict[str, str]], queries: int
) -> SizeResult:
    path = fresh_copy(corpus, workdir, f"recall-{size}.sqlite")
    with Brain.open(path, embedder=embedder) as brain:
        ids = [r["id"] for r in brain.remember_many(fact_memories(labelled))]
        result = SizeResult(size=size, memories=brain.stats()["memories"])
        for query in WARMUP_QUERIES:
            for mode in MODES:
                brain.recall(query, k=K, mode=mode)  # type: ignore[arg-type]
        for index, (row, fact_id) in enumerate(zip(labelled, ids, strict=True)):
            question = row["question"]
            # Rotate the order so no mode always runs first (or right after another's cache warm-up).
            order = MODES[index % 3 :] + MODES[: index % 3]
            for mode in order:
                t0 = time.perf_counter()
                found = brain.recall(question, k=K, mode=mode)  # type: ignore[arg-type]
                elapsed = time.perf_counter() - t0
                if index < queries:
                    result.latencies[mode].append(elapsed * 1000)
                found_ids = [r["id"] for r in found]
                result.hits[mode].append(found_ids.index(fact_id) + 1 if fact_id in found_ids else None)
            if index < queries:
                t0 = time.perf_counter()
                vector = embedder.embed([question])[0].tobytes()
                result.embed_ms.append((time.perf_counter() - t0) * 1000)
                result.knn_ms.append(knn_breakdown(path, vector) * 1000)
    for conn in knn_breakdown.conns.values():  # type: ignore[attr-defined]
        conn.close()
    knn_breakdown.conns.clear()  # type: ignore[attr-defined]
    path.unlink(missing_ok=True)
    return result


def report_size(r: SizeResult, labelled: list[dict[str, str]]) -> None:
    n = len(r.latencies["hybrid"])
    log(f"{r.size} filler + {len(labelled)} facts = {r.memories} memories, {n} timed queries per mode")
    for mode in MODES:
        log(
            f"  {mode:<6} p50 {r.p(mode, 50):7.1f} ms  p95 {r.p(mode, 95):7.1f} ms  "
            f"recall@{K} {r.recall_at(mode):.3f}  recall@1 {r.recall_at(mode, 1):.3f}  MRR {r.mrr(mode):.3f}"
        )
    log(
        f"  parts: query embedding p50 {percentile(r.embed_ms, 50):.1f} ms"
        f" p95 {percentile(r.embed_ms, 95):.1f} ms;"
        f" KNN scan (k=50) p50 {percentile(r.knn_ms, 50):.1f} ms p95 {percentile(r.knn_ms, 95):.1f} ms;"
        f" BM25 side = fts mode p50 {r.p('fts', 50):.1f} ms"
    )
    top = K
    lost = sum(
        1
        for h, v in zip(r.hits["hybrid"], r.hits["vector"], strict=True)
        if v is not None and v <= top and (h is None or h > top)
    )
    gained = sum(
        1
        for h, v in zip(r.hits["hybrid"], r.hits["vector"], strict=True)
        if h is not None and h <= top and (v is None or v > top)
    )
    log(f"  hybrid vs vector in the top {K}: {gained} questions gained, {lost} lost")


# --- driver ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer inserts")
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated corpus sizes (default 1000,10000,100000; quick 1000,10000)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"corpus cache (default {DEFAULT_CACHE})"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached corpora")
    parser.add_argument("--build-only", action="store_true", help="build the corpora and exit")
    parser.add_argument(
        "--singles", type=int, default=None, help="remember() calls timed (default 200; quick 50)"
    )
    parser.add_argument(
        "--batched", type=int, default=None, help="memories stored by remember_many (default 2000; quick 500)"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--queries", type=int, default=None, help="questions timed per mode and size (default all; quick 50)"
    )
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = SIZES[:2] if args.quick else SIZES
    else:
        try:
            args.sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
        except ValueError:
            parser.error("--sizes takes comma-separated integers")
    if args.singles is None:
        args.singles = 50 if args.quick else 200
    if args.batched is None:
        args.batched = 500 if args.quick else 2000
    if args.queries is None:
        args.queries = 50 if args.quick else 10**9
    if not args.sizes or min(args.sizes) < 1 or args.singles < 1 or args.batched < 1 or args.batch_size < 1:
        parser.error("sizes, --singles, --batched and --batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    embedder = default_embedder()
    t0 = time.perf_counter()
    embedder.embed(["load the model"])
    log(
        f"brain benchmark: embedder {embedder.name} (CPU, loaded in {time.perf_counter() - t0:.1f}s), "
        f"{os.cpu_count()} cores, load average {load_before[0]:.2f} "
        "(other processes may be running and share the cores: the numbers are for this machine, now)"
    )
    labelled = load_all_labelled()
    subsets = {name: [i for i, r in enumerate(labelled) if r["set"] == name] for name in LABELLED_SETS}
    corpora = {size: ensure_corpus(args.cache_dir, size, embedder, args.rebuild) for size in args.sizes}
    for size, path in corpora.items():
        log(f"corpus {size}: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    if args.build_only:
        return 0
    summary: dict[str, Any] = {"benchmark": "brain", "embedder": embedder.name, "cores": os.cpu_count()}
    remove_stale_runs(args.cache_dir)
    # Next to the cache, not in /tmp: the insert test's fsyncs should hit the disk brains live on.
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=args.cache_dir))
    try:
        log(
            "inserts into a fresh brain (synchronous=FULL: one fsync per call): "
            f"{args.singles} x remember(), "
            f"{args.batched} via remember_many in batches of {args.batch_size}"
        )
        ins = measure_inserts(workdir, embedder, args.singles, args.batched, args.batch_size)
        log(
            f"  single  {ins['single_per_s']:7.1f} memories/s (per call p50 {ins['single_p50_ms']:.1f} ms, "
            f"p95 {ins['single_p95_ms']:.1f} ms; embedding one text alone ~{ins['embed_one_ms']:.1f} ms)"
        )
        log(
            f"  batched {ins['batched_per_s']:7.1f} memories/s (per batch p50 {ins['batch_p50_ms']:.0f} ms, "
            f"embedding {args.batch_size} texts alone ~{ins['embed_batch_ms']:.0f} ms)"
        )
        summary["insert_single_per_s"] = round(ins["single_per_s"], 1)
        summary["insert_batched_per_s"] = round(ins["batched_per_s"], 1)
        summary["insert_single_p50_ms"] = round(ins["single_p50_ms"], 2)
        results: dict[int, SizeResult] = {}
        for size in args.sizes:
            r = measure_size(corpora[size], workdir, size, embedder, labelled, args.queries)
            results[size] = r
            report_size(r, labelled)
            for mode in MODES:
                summary[f"{mode}_p50_ms_{size}"] = round(r.p(mode, 50), 2)
                summary[f"{mode}_p95_ms_{size}"] = round(r.p(mode, 95), 2)
                summary[f"recall10_{mode}_{size}"] = round(r.recall_at(mode), 4)
                summary[f"mrr_{mode}_{size}"] = round(r.mrr(mode), 4)
                for name, rows in subsets.items():
                    summary[f"recall10_{mode}_{size}_{name}"] = round(r.recall_at(mode, rows=rows), 4)
            log(
                "  recall@10 by set: "
                + "; ".join(
                    f"{name} ({len(rows)}) "
                    + " / ".join(f"{m} {r.recall_at(m, rows=rows):.3f}" for m in MODES)
                    for name, rows in subsets.items()
                )
            )
            summary[f"embed_query_p50_ms_{size}"] = round(percentile(r.embed_ms, 50), 2)
            summary[f"knn_scan_p50_ms_{size}"] = round(percentile(r.knn_ms, 50), 2)
            summary[f"knn_scan_p95_ms_{size}"] = round(percentile(r.knn_ms, 95), 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for size, target in HYBRID_P95_TARGETS_MS.items():
        label = f"{size // 1000}k"
        if size in results:
            ok = results[size].p("hybrid", 95) <= target
            log(
                f"hybrid p95 at {label}: {results[size].p('hybrid', 95):.1f} ms (target <= {target:g} ms) -> "
                f"{'ok' if ok else 'MISSED'}"
            )
            summary[f"hybrid_p95_ok_{label}"] = ok
        else:
            summary[f"hybrid_p95_ok_{label}"] = None
        summary[f"hybrid_p95_target_ms_{label}"] = target
    ge = all(
        r.recall_at("hybrid") >= max(r.recall_at("fts"), r.recall_at("vector")) for r in results.values()
    )
    log(f"hybrid recall@{K} >= both fts and vector at every size (all sets): {'ok' if ge else 'MISSED'}")
    summary["hybrid_recall_ge_baselines"] = ge
    for name, rows in subsets.items():
        summary[f"hybrid_recall_ge_baselines_{name}"] = all(
            r.recall_at("hybrid", rows=rows)
            >= max(r.recall_at("fts", rows=rows), r.recall_at("vector", rows=rows))
            for r in results.values()
        )
    load_after = os.getloadavg()
    summary.update(
        labelled=len(labelled),
        sizes=list(args.sizes),
        timed_queries=min(args.queries, len(labelled)),
        load_avg_before=round(load_before[0], 2),
        load_avg_after=round(load_after[0], 2),
        total_s=round(time.perf_counter() - started, 1),
    )
    log(f"load average after: {load_after[0]:.2f}; total {summary['total_s']:.0f}s")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
