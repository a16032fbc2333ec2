"""Retrieval modes and how their rankings are fused.

Dense retrieval (embeddings) finds paraphrases; lexical retrieval (BM25 over the FTS5
index, scored by :mod:`searchkit.lexical`) finds rare exact terms such as names, numbers and jargon. Each wins on different
collections, and fusing the two rankings beats either alone on all of the BEIR sets we
measure (see ``benchmarks/results/eval_beir.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from enum import Enum
from typing import Any

import numpy as np

from searchkit.config import SearchConfig
from searchkit.embedding import Embedder, encode_queries
from searchkit.fieldindex import FieldIndex
from searchkit.filters import Filter
from searchkit.lexical import Bm25, TermStatistics
from searchkit.store import Store
from searchkit.vectors import VectorBackend

__all__ = [
    "Retriever",
    "Ranking",
    "Mode",
    "Fusion",
    "reciprocal_rank_fusion",
    "weighted_fusion",
    "fuse",
    "min_max_scale",
    "RRF_K",
    "HYBRID_WEIGHT",
]

# Constant of reciprocal rank fusion (Cormack et al. 2009); 60 is the usual choice.
RRF_K = 60
# Share of the dense score in the weighted fusion; best or within 0.004 of best on SciFact, NPL and Cranfield (benchmarks/eval_beir.py).
HYBRID_WEIGHT = SearchConfig.hybrid_weight
# Candidates taken from each retriever before hybrid fusion.
HYBRID_CANDIDATES = 100


class Mode(str, Enum):
    """How candidates are found: by meaning, by words, or both fused."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class Fusion(str, Enum):
    """How hybrid retrieval combines the dense and lexical rankings."""

    WEIGHTED = "weighted"
    RRF = "rrf"


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Sum of 1 / (k + rank) over the rankings each id appears in (ranks start at 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def min_max_scale(values: Sequence[float]) -> list[float]:
    """Scaled to [0, 1]; all-equal values carry no preference and all become 1."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [1.0] * len(values)
    return [(value - low) / (high - low) for value in values]


def _min_max(scores: Mapping[int, float]) -> dict[int, float]:
    return dict(zip(scores, min_max_scale(list(scores.values()))))


def weighted_fusion(dense: Mapping[int, float], lexical: Mapping[int, float], weight: float = HYBRID_WEIGHT) -> dict[int, float]:
    """``weight`` × dense + (1 − ``weight``) × lexical, each min-max normalised over its candidates.

    An id missing from one list gets 0 from it: the lowest score that list could give.
    """
    dense_norm, lexical_norm = _min_max(dense), _min_max(lexical)
    return {
        item: weight * dense_norm.get(item, 0.0) + (1 - weight) * lexical_norm.get(item, 0.0)
        for item in dense_norm.keys() | lexical_norm.keys()
    }


def fuse(
    dense: Mapping[int, float], lexical: Mapping[int, float], fusion: Fusion, weight: float = HYBRID_WEIGHT
) -> list[tuple[int, float]]:
    """The fused ranking, best first (ties broken by id for determinism)."""
    if fusion is Fusion.RRF:
        ranked = [sorted(scores, key=lambda item: (-scores[item], item)) for scores in (dense, lexical)]
        fused = reciprocal_rank_fusion(ranked)
    else:
        fused = weighted_fusion(dense, lexical, weight)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


# (chunk id, score) pairs, best first.
Ranking = list[tuple[int, float]]


class Retriever:
    """Ranks chunks for queries: dense through the vector backend, lexical by BM25, hybrid by fusing both.

    ``backend`` is a callable because the index swaps its backend on reindex and repair;
    searches through it hold ``lock``, which every change to the backend holds too.
    ``generation`` is the store generation the backend reflects: filters are answered
    from a :class:`FieldIndex` at that generation or later.
    """

    def __init__(
        self, store: Store, embedder: Embedder, backend: Callable[[], VectorBackend], dimension: int,
        lock: AbstractContextManager[Any], generation: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.backend = backend
        self.dimension = dimension
        self.lock = lock
        self.generation = generation
        self.bm25 = Bm25(store)
        self.fields = FieldIndex(store)

    def allowed(self, compiled: Filter | None) -> np.ndarray | None:
        """The ids of the chunks ``compiled`` lets through (None: no filter), from memory where it can answer."""
        if compiled is None:
            return None
        ids = self.fields.chunk_ids(compiled, self.generation())
        return self.store.chunk_ids_where(compiled.condition) if ids is None else ids

    def rank(
        self,
        queries: Sequence[str],
        k: int,
        compiled: Filter | None,
        mode: Mode,
        fusion: Fusion,
        hybrid_weight: float,
        k1: float = SearchConfig.k1,
        b: float = SearchConfig.b,
        statistics: Sequence[TermStatistics] | None = None,
    ) -> list[Ranking]:
        if mode is Mode.DENSE:
            return self.dense(queries, k, compiled)
        if mode is Mode.LEXICAL:
            return self.lexical(queries, k, compiled, k1, b, statistics)
        depth = max(k, HYBRID_CANDIDATES)
        dense, lexical = self.dense(queries, depth, compiled), self.lexical(queries, depth, compiled, k1, b, statistics)
        return [fuse(dict(d), dict(l), fusion, hybrid_weight)[:k] for d, l in zip(dense, lexical)]

    def dense(self, queries: Sequence[str], k: int, compiled: Filter | None) -> list[Ranking]:
        if len(self.backend()) == 0:
            return [[] for _ in queries]
        return self.nearest(encode_queries(self.embedder, queries), k, compiled)

    def nearest(self, queries: np.ndarray, k: int, compiled: Filter | None) -> list[Ranking]:
        """The ``k`` nearest chunks to each query vector among those matching ``compiled``."""
        allowed = self.allowed(compiled)
        with self.lock:
            scores, ids = self.backend().search(
                queries, k, allowed, fetch=lambda wanted: self.store.embeddings_for(wanted, self.dimension)
            )
        return [[(int(i), float(s)) for s, i in zip(row_scores, row_ids) if i >= 0] for row_scores, row_ids in zip(scores, ids)]

    def lexical(
        self, queries: Sequence[str], k: int, compiled: Filter | None,
        k1: float = SearchConfig.k1, b: float = SearchConfig.b, statistics: Sequence[TermStatistics] | None = None,
    ) -> list[Ranking]:
        """BM25 rankings; ``statistics`` (one per query) score with a whole sharded collection's numbers."""
        allowed = self.allowed(compiled)
        collections = statistics if statistics is not None else [None] * len(queries)
        return [self.bm25.rank(query, k, k1, b, allowed, collection) for query, collection in zip(queries, collections)]

    def term_statistics(self, queries: Sequence[str]) -> list[TermStatistics]:
        """This index's BM25 statistics for each query's terms, to be summed over the shards of a collection."""
        return [TermStatistics.of(self.bm25.postings(query)) for query in queries]
