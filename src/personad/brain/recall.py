"""Hybrid recall: FTS5 and vector candidates, filters, and confidence-gated score fusion."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from personad.errors import BadRequestError

from .memory import normalise_key
from .vectors import OPEN_UNTIL

RecallMode = Literal["hybrid", "fts", "vector"]
MODES: tuple[str, ...] = ("hybrid", "fts", "vector")

#: Candidates taken from each retriever before fusion.
CANDIDATES = 50
# Fusion: exact cosine similarity for every candidate (keyword-only candidates get theirs computed from their
# stored embedding) plus a keyword bonus that counts only when BM25 is confident. Measured on
# benchmarks/brain.py's dev set (recall@10 at 1k/10k/100k):
# * reciprocal rank fusion, equal weights: 0.86/0.84/0.77 (vectors alone: 0.957/0.926/0.833) — BM25 under
#   OR semantics fills its list with filler sharing one common word;
# * 0.8 x min-max cosine + 0.2 x relative BM25: 0.963/0.920/0.852 — loses a paraphrase question at 10k to
#   memories that merely share its common words;
# * confidence-gated (this): 0.963/0.926/0.852. BM25's confidence is how far its best hit stands out from
#   the second: a rare term (a name, an identifier) matched by one memory gives a clear gap, common words
#   matched by many memories give none, and then keywords do not reorder what the meaning ranked.
# The held-out set (written later, by someone who never saw results) gives 0.940/0.915/0.860 against
# vectors' 0.940/0.895/0.835.
FTS_WEIGHT = 0.1
CONFIDENCE_GAP = 0.2  # a best hit 20% above the second counts fully
# Importance and recency are tie-breakers, not signals: at most 0.0004 together, small against score
# differences between distinct matches, so they order memories the retrievers score (nearly) the same.
IMPORTANCE_WEIGHT = 0.00025
RECENCY_WEIGHT = 0.00015
RECENCY_HALF_LIFE_S = 30 * 24 * 3600.0

FILTER_KEYS = frozenset({"type", "source", "since", "until", "include_closed", "key", "as_of"})

# Letters and digits, as FTS5's unicode61 tokenizer splits them (it treats "_" as a separator too).
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Only the glue words of questions: BM25 gives them little weight anyway, but under OR semantics each
# would pull thousands of postings into the candidate scan.
_STOPWORD_TEXT = """
a an and are as at be been but by can could did do does for from had has have how i if in into is it its me my
of on or our should so than that the their them then there these they this to was we were what when where
which who whom why will with would you your s t d ll re ve m
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
MAX_QUERY_TERMS = 32


#: A term in more than half of all memories has zero BM25 weight (FTS5 clamps its IDF to ~0) yet makes
#: the search score every memory containing it; past this many postings such terms are dropped.
PRUNE_MIN_POSTINGS = 2000


def query_words(text: str) -> list[str]:
    """The distinct words of a free-text query, glue words dropped unless nothing else is left."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in words:
            words.append(word)
    return ([w for w in words if w not in _STOPWORDS] or words)[:MAX_QUERY_TERMS]


def match_expression(words: list[str]) -> str | None:
    """An FTS5 MATCH expression: each word quoted, OR-ed; None if there are no words.

    Quoting every token makes user punctuation, FTS operators (AND, NEAR, *, ^, column:) and quotes inert.
    """
    return " OR ".join(f'"{w}"' for w in words) or None


def fts_match_expression(text: str) -> str | None:
    """match_expression(query_words(text))."""
    return match_expression(query_words(text))


class TermStats:
    """Document frequencies of query terms, as the memories index tokenizes (and stems) them."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        # Temp objects live in this connection only: nothing is added to the brain file. The scratch FTS
        # table runs the same tokenizer as memories_fts, so the vocabulary lookups see the stemmed terms.
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5(word, "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms_instance"
            " USING fts5vocab(temp, query_terms, instance)"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_fts_terms"
            " USING fts5vocab(main, memories_fts, row)"
        )

    def informative(self, words: list[str], total: int) -> list[str]:
        """``words`` without those whose every term is in more than half of ``total`` memories."""
        limit = max(total / 2, PRUNE_MIN_POSTINGS)
        if total <= limit or not words:
            return words
        self._conn.executemany("INSERT INTO temp.query_terms (rowid, word) VALUES (?, ?)", enumerate(words))
        try:
            rows = self._conn.execute(
                "SELECT i.doc, min(coalesce(t.doc, 0)) FROM temp.query_terms_instance AS i"
                " LEFT JOIN temp.memories_fts_terms AS t ON t.term = i.term GROUP BY i.doc"
            ).fetchall()
        finally:
            self._conn.execute("DELETE FROM temp.query_terms")
        common = {index for index, postings in rows if postings > limit}
        return [word for index, word in enumerate(words) if index not in common]


def _str_list(value: Any, name: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise BadRequestError(
            f"filter {name!r} must be a string or a non-empty list of strings", code="invalid_filter"
        )
    return list(items)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequestError(
            f"filter {name!r} must be epoch seconds (a number), got {value!r}", code="invalid_filter"
        )
    return float(value)


@dataclass(frozen=True)
class Filters:
    """A parsed recall filter, rendered as SQL for the memories table and for the vector table."""

    #: (memories column, vector-table column, operator, value) per condition; "in" takes a tuple.
    conditions: tuple[tuple[str, str, str, Any], ...]
    as_of: float | None
    include_closed: bool

    @classmethod
    def parse(cls, filters: dict[str, Any] | None) -> Filters:
        """Validate a recall filter dict (see Brain.recall)."""
        filters = filters or {}
        if not isinstance(filters, dict):
            raise BadRequestError("filters must be an object", code="invalid_filter")
        unknown = sorted(set(filters) - FILTER_KEYS)
        if unknown:
            raise BadRequestError(
                f"unknown filter(s) {unknown}; allowed: {sorted(FILTER_KEYS)}", code="invalid_filter"
            )
        conditions: list[tuple[str, str, str, Any]] = []
        for name in ("type", "source"):
            if filters.get(name) is not None:
                conditions.append((name, name, "in", tuple(_str_list(filters[name], name))))
        if filters.get("key") is not None:
            if not isinstance(filters["key"], str) or not filters["key"].strip():
                raise BadRequestError("filter 'key' must be a non-empty string", code="invalid_filter")
            conditions.append(("key", "key", "=", normalise_key(filters["key"])))
        if filters.get("since") is not None:
            conditions.append(("timestamp", "ts", ">=", _number(filters["since"], "since")))
        if filters.get("until") is not None:
            conditions.append(("timestamp", "ts", "<=", _number(filters["until"], "until")))
        include_closed = filters.get("include_closed", False)
        if not isinstance(include_closed, bool):
            raise BadRequestError("filter 'include_closed' must be true or false", code="invalid_filter")
        as_of = _number(filters["as_of"], "as_of") if filters.get("as_of") is not None else None
        return cls(tuple(conditions), as_of, include_closed)

    def _render(self, vector: bool, prefix: str) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, vec_column, op, value in self.conditions:
            name = prefix + (vec_column if vector else column)
            if op == "in":
                clauses.append(f"{name} IN ({', '.join('?' * len(value))})")
                params.extend(value)
            else:
                clauses.append(f"{name} {op} ?")
                params.append(value)
        if self.as_of is not None:
            # What was believed at that moment: valid then, whether or not it has been superseded since.
            if vector:
                clauses.append("valid_from <= ? AND valid_to > ?")
            else:
                clauses.append(
                    f"{prefix}valid_from <= ? AND ({prefix}valid_to IS NULL OR {prefix}valid_to > ?)"
                )
            params.extend([self.as_of, self.as_of])
        elif not self.include_closed:
            if vector:
                clauses.append("valid_to >= ?")
                params.append(OPEN_UNTIL)
            else:
                clauses.append(f"{prefix}valid_to IS NULL")
        return " AND ".join(clauses) or "1", tuple(params)

    def sql(self, alias: str = "m") -> tuple[str, tuple[Any, ...]]:
        """A WHERE condition over ``memories AS alias`` and its parameters."""
        return self._render(False, f"{alias}.")

    def vector_sql(self) -> tuple[str, tuple[Any, ...]]:
        """The same condition over the vector table's filter columns, for its KNN scan."""
        return self._render(True, "")


def dense_ranks(scored: Iterable[tuple[int, float]]) -> dict[int, int]:
    """1-based ranks by ascending score, equal scores sharing a rank.

    Identical texts score identically in both retrievers; sharing the rank leaves the choice between
    them to importance and recency instead of to insertion order.
    """
    ranks: dict[int, int] = {}
    rank = 0
    previous: float | None = None
    for seq, score in sorted(scored, key=lambda item: item[1]):
        rounded = round(score, 9)
        if rounded != previous:
            rank += 1
            previous = rounded
        ranks.setdefault(seq, rank)
    return ranks


def prior(importance: float, timestamp: float, now: float) -> float:
    """The small importance-and-recency term added to every fused score."""
    age = max(0.0, now - timestamp)
    return IMPORTANCE_WEIGHT * importance + RECENCY_WEIGHT * 0.5 ** (age / RECENCY_HALF_LIFE_S)


def keyword_confidence(fts_hits: list[tuple[int, float]]) -> float:
    """0..1: how far BM25's best hit stands out from its second (1 for a single hit, 0 for none)."""
    relevance = sorted((-score for _, score in fts_hits), reverse=True)
    if not relevance or relevance[0] <= 0:
        return 0.0
    if len(relevance) == 1:
        return 1.0
    return max(0.0, min(1.0, (relevance[0] - relevance[1]) / (CONFIDENCE_GAP * relevance[0])))


def _fts_scores(hits: Iterable[tuple[int, float]]) -> dict[int, float]:
    """BM25 relevance relative to the best hit (FTS5's bm25() is negative: lower is better)."""
    relevance = {seq: -score for seq, score in hits}
    top = max(relevance.values(), default=0.0)
    return (
        {seq: value / top for seq, value in relevance.items()} if top > 0 else {seq: 1.0 for seq in relevance}
    )


def fuse(
    fts_hits: list[tuple[int, float]],
    similarities: dict[int, float],
    rows: dict[int, dict[str, Any]],
    now: float,
    *,
    fts_only: bool = False,
) -> list[tuple[float, int]]:
    """Fused scores, best first, for seqs present in rows.

    ``similarities`` holds the cosine similarity of every candidate to the query (empty in fts mode).
    Hybrid: cosine + FTS_WEIGHT x keyword confidence x relative BM25. A single retriever (``fts_only``, or
    no keyword hits) is ranked by its own score, the prior breaking ties.
    """
    fts = _fts_scores(fts_hits)
    weight = 1.0 if fts_only else FTS_WEIGHT * keyword_confidence(fts_hits)
    scored: list[tuple[float, float, int]] = []
    for seq, row in rows.items():
        score = prior(row["importance"], row["timestamp"], now)
        score += similarities.get(seq, 0.0) + weight * fts.get(seq, 0.0)
        scored.append((score, row["timestamp"], seq))
    scored.sort(reverse=True)
    return [(score, seq) for score, _, seq in scored]
