"""BM25 over the full-text index, scored here so that its parameters are settings.

FTS5 keeps everything BM25 needs, in step with every add, update and delete because it is
written in the same transactions as the chunks: which chunks hold a term and how often
(its ``fts5vocab`` view), each chunk's length in tokens and the collection's totals. Its
built-in ``bm25()`` fixes k1 = 1.2 and b = 0.75 and scores every query word, stopwords
included. Measured on SciFact, NPL and Cranfield (``benchmarks/lexical_beir.py``), the
stopwords are what cost most: a long natural-language query ("what are the effects of
...") matches nearly every chunk through its function words, and their small weights add
up to noise. So the query is analysed here (stopwords dropped, then stemmed by the very
tokenizer the index used) and each chunk is scored from FTS5's statistics with the
Lucene/Anserini form of BM25, with k1 and b taken from the index's search settings.
Nothing is derived or cached outside the store, so there is nothing to rebuild or catch up.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from searchkit.store import Store

__all__ = ["STOPWORDS", "Bm25", "Postings", "QueryAnalyzer", "TermStatistics", "bm25_scores", "FTS_TOKENIZER"]

# The tokenizer of the full-text index: Unicode words, diacritics folded, Porter-stemmed.
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

# English function words (the usual list of NLTK, Lucene and bm25s, as one set). A query made
# only of them ("the who", "to be or not to be") keeps them: an empty query would find nothing.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can did do does doing don down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own s same she should so some such t than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with you your yours yourself yourselves
""".split())

_WORD = re.compile(r"\w+", re.UNICODE)
# Distinct terms scored per query; more add little to BM25 and cost a postings read each.
MAX_QUERY_TERMS = 64


class QueryAnalyzer:
    """Turns query text into the index's terms: stopwords dropped, then the index's own tokenizer.

    Stemming through an in-memory FTS5 table with the same tokenizer guarantees that a query
    word becomes exactly the term the index holds ("vaccines" and "vaccinated" both "vaccin"),
    with no second stemmer to drift from SQLite's.
    """

    def __init__(self, stopwords: frozenset[str] = STOPWORDS) -> None:
        self.stopwords = stopwords
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE query USING fts5(body, tokenize = '{FTS_TOKENIZER}')")
        self._db.execute("CREATE VIRTUAL TABLE query_terms USING fts5vocab(query, 'instance')")

    def words(self, query: str) -> list[str]:
        """The query's words, lower-cased, without stopwords unless it has nothing else."""
        words = [word.lower() for word in _WORD.findall(query)]
        return [word for word in words if word not in self.stopwords] or words

    def terms(self, query: str) -> list[str]:
        """Distinct index terms of the query, in the order they first occur."""
        words = self.words(query)
        if not words:
            return []
        with self._lock:
            self._db.execute("INSERT INTO query (rowid, body) VALUES (1, ?)", (" ".join(words),))
            try:
                stems = [t for (t,) in self._db.execute("SELECT term FROM query_terms ORDER BY offset")]
            finally:
                self._db.execute("DELETE FROM query")
        return list(dict.fromkeys(stems))[:MAX_QUERY_TERMS]

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Postings:
    """What the store holds for one query's terms, read in one pass over the full-text index."""

    chunks: int  # chunks in the index
    tokens: int  # tokens in all chunks
    terms: dict[str, tuple[np.ndarray, np.ndarray]]  # term: (ids of the chunks holding it, occurrences in each)
    lengths: tuple[np.ndarray, np.ndarray]  # (chunk ids, ascending; their lengths in tokens)


@dataclass(frozen=True)
class TermStatistics:
    """The collection-wide numbers of BM25 for one query: chunks, tokens, and each term's document frequency.

    A sharded collection scores each shard's chunks with the sum of every shard's
    statistics, so a chunk gets the score it would have in one unsharded index.
    """

    chunks: int
    tokens: int
    frequencies: dict[str, int]

    @classmethod
    def of(cls, postings: Postings | None) -> TermStatistics:
        if postings is None:
            return cls(0, 0, {})
        return cls(postings.chunks, postings.tokens, {term: len(ids) for term, (ids, _) in postings.terms.items()})

    def __add__(self, other: TermStatistics) -> TermStatistics:
        frequencies = dict(self.frequencies)
        for term, count in other.frequencies.items():
            frequencies[term] = frequencies.get(term, 0) + count
        return TermStatistics(self.chunks + other.chunks, self.tokens + other.tokens, frequencies)


def bm25_scores(
    postings: Postings, k1: float, b: float, collection: TermStatistics | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, scores) of every chunk holding a query term.

    score = Σ over terms of idf · tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen)), with
    idf = ln(1 + (N − df + 0.5)/(df + 0.5)) (Lucene's, never negative: a term in most chunks
    adds little, never a penalty). N, the average length and df come from ``collection``
    when given (the statistics of every shard of a collection), else from ``postings``.
    """
    empty = np.zeros(0, dtype=np.int64), np.zeros(0)
    if not postings.chunks or not postings.terms:
        return empty
    total_chunks = collection.chunks if collection is not None else postings.chunks
    total_tokens = collection.tokens if collection is not None else postings.tokens
    ids = sorted_unique(np.concatenate([chunk_ids for chunk_ids, _ in postings.terms.values()]))
    known_ids, known_lengths = postings.lengths
    # a chunk deleted between the two reads has no length: it is left out rather than guessed
    sized = positions(known_ids, ids)
    ids, sized = ids[sized >= 0], sized[sized >= 0]
    if not len(ids):
        return empty
    lengths = known_lengths[sized].astype(np.float64)
    average = total_tokens / total_chunks if total_tokens > 0 else 1.0
    norm = k1 * (1.0 - b + b * lengths / average)
    scores = np.zeros(len(ids))
    for term, (chunk_ids, counts) in postings.terms.items():
        df = collection.frequencies.get(term, len(chunk_ids)) if collection is not None else len(chunk_ids)
        idf = math.log(1.0 + (total_chunks - df + 0.5) / (df + 0.5))
        at = positions(ids, chunk_ids)
        present = at >= 0
        at, tf = at[present], counts[present].astype(np.float64)
        scores[at] += idf * tf * (k1 + 1.0) / (tf + norm[at])
    return ids, scores


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: a sort, which beats ``np.unique``'s hashing on a query's few thousand ids."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if len(values) else values


def positions(ascending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each of ``values`` lies in ``ascending``, −1 where it is absent (a binary search each, no set operations)."""
    if not len(ascending):
        return np.full(len(values), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(ascending, values), len(ascending) - 1)
    return np.where(ascending[at] == values, at, -1)


class Bm25:
    """Ranks chunks by BM25 with settable ``k1`` and ``b``, from the store's full-text statistics."""

    def __init__(self, store: Store, analyzer: QueryAnalyzer | None = None) -> None:
        self.store = store
        self.analyzer = analyzer or QueryAnalyzer()

    def rank(
        self, query: str, k: int, k1: float, b: float, allowed: np.ndarray | None = None,
        collection: TermStatistics | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, score) pairs, best first (ties by chunk id), among ``allowed`` if given.

        Every chunk holding a query term is scored, so a search returns ``k`` hits whenever
        ``k`` chunks (among those allowed) hold one of its terms. Statistics are over the
        whole index, filtered or not, so a filter changes which chunks compete, not their scores.
        ``collection`` replaces this index's statistics with a whole sharded collection's.
        """
        return self.ranked(self.postings(query), k, k1, b, allowed, collection)

    def postings(self, query: str) -> Postings | None:
        """What ranking ``query`` needs from the store, whatever k1 and b (tuning reads it once)."""
        terms = self.analyzer.terms(query)
        return self.store.term_postings(terms) if terms else None

    @staticmethod
    def ranked(
        postings: Postings | None, k: int, k1: float, b: float, allowed: np.ndarray | None = None,
        collection: TermStatistics | None = None,
    ) -> list[tuple[int, float]]:
        ids, scores = Bm25.scored(postings, k1, b, allowed, collection)
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]

    @staticmethod
    def scored(
        postings: Postings | None, k1: float, b: float, allowed: np.ndarray | None = None,
        collection: TermStatistics | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids ascending, BM25) of every chunk holding a query term, among ``allowed`` if given."""
        if postings is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids, scores = bm25_scores(postings, k1, b, collection)
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, scores = ids[keep], scores[keep]
        return ids, scores
