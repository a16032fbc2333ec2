"""Retrieval modes and how their rankings are fused.

Dense retrieval (embeddings) finds paraphrases; lexical retrieval (BM25 over the FTS5
index, scored by :mod:`searchkit.lexical`) finds rare exact terms such as names, numbers and jargon. Each wins on different
collections, and fusing the two beats either alone on every BEIR set we measure
(``benchmarks/results/eval_beir.md``).

Hybrid search works on :class:`Candidates`: the top chunks of each retriever, each with
*both* of its scores (a lexical candidate's cosine from its stored embedding, a dense
candidate's BM25, 0 when it holds no query term). Giving a chunk missing from one list
the lowest score of that list, as score fusion usually does, ranks a chunk that list
simply did not reach as if it were its worst; the true score is cheap to compute. The
weighted fusion z-scores each retriever's scores over the union and mixes them, and
then the query vector is moved towards its top fused chunks (Rocchio's pseudo-relevance
feedback) and the dense side searched once more. Measured on SciFact, NPL and Cranfield
(``benchmarks/results/fusion_variants.md``), each step gained on every set, and the
settings chosen on any two sets gained on the third.

One function, :func:`hybrid_rank`, does this for a single index, for a sharded collection
(each shard gives the candidates it holds; their union is the unsharded one) and for
``searchkit tune``, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np

from searchkit.config import SearchConfig
from searchkit.embedding import Embedder, encode_queries
from searchkit.fieldindex import FieldIndex
from searchkit.filters import Filter
from searchkit.lexical import Bm25, TermStatistics, positions
from searchkit.store import Store
from searchkit.vectors import VectorBackend

__all__ = [
    "Retriever",
    "Ranking",
    "Mode",
    "Fusion",
    "Candidates",
    "CandidateSource",
    "candidates_of",
    "LexicalSide",
    "hybrid_rank",
    "fuse",
    "expand_queries",
    "reciprocal_rank_fusion",
    "min_max_scale",
    "z_scores",
    "RRF_K",
    "HYBRID_WEIGHT",
    "FEEDBACK",
    "FEEDBACK_CHUNKS",
]

# Constant of reciprocal rank fusion (Cormack et al. 2009); 60 is the usual choice.
RRF_K = 60
# Share of the dense score in the weighted fusion (benchmarks/fusion_variants.py).
HYBRID_WEIGHT = SearchConfig.hybrid_weight
# How far the query vector moves towards its top fused chunks; 0 turns feedback off.
FEEDBACK = SearchConfig.feedback
# Fused chunks the feedback averages: the usual 3 of pseudo-relevance feedback.
FEEDBACK_CHUNKS = 3
# Candidates taken from each retriever before hybrid fusion.
HYBRID_CANDIDATES = 100

# (chunk id, score) pairs, best first.
Ranking = list[tuple[int, float]]


class Mode(str, Enum):
    """How candidates are found: by meaning, by words, or both fused."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class Fusion(str, Enum):
    """How hybrid retrieval combines the dense and lexical scores."""

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


def z_scores(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """(value − mean) / standard deviation of ``reference`` (default: the values themselves);
    all-equal references carry no preference and every value becomes 0."""
    reference = values if reference is None else reference
    spread = float(reference.std()) if len(reference) else 0.0
    return np.zeros(len(values)) if spread == 0 else (values - reference.mean()) / spread


@dataclass(frozen=True)
class Candidates:
    """One query's hybrid candidates, each chunk with its cosine and its BM25 score (0: no query term)."""

    ids: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    # what fuse() derives at each depth, whatever the weight: kept, since tuning fuses one list many times
    _scaled: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))

    @classmethod
    def joined(cls, parts: Sequence[Candidates]) -> Candidates:
        """The candidates of several shards as one list (their ids already made collection-wide)."""
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("ids", "dense", "lexical")))

    def _top(self, scores: np.ndarray, depth: int) -> np.ndarray:
        """Positions of the ``depth`` best by ``scores`` (ties by chunk id), best first."""
        return np.lexsort((self.ids, -scores))[:depth]

    def dense_top(self, depth: int) -> np.ndarray:
        return self._top(self.dense, depth)

    def lexical_top(self, depth: int) -> np.ndarray:
        matching = np.flatnonzero(self.lexical > 0)
        return matching[np.lexsort((self.ids[matching], -self.lexical[matching]))[:depth]]

    def union(self, depth: int) -> np.ndarray:
        """Positions of the chunks in either top list of ``depth``."""
        return np.union1d(self.dense_top(depth), self.lexical_top(depth))

    def scaled(self, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, z-scored cosines, z-scored BM25) of the union of both ``depth``-long top lists.

        The means and spreads are those of the :data:`HYBRID_CANDIDATES`-long lists whatever
        ``depth``, so asking for more hits adds candidates without reordering the first ones.
        """
        if depth not in self._scaled:
            union = self.union(depth)
            reference = union if depth <= HYBRID_CANDIDATES else self.union(HYBRID_CANDIDATES)
            self._scaled[depth] = (self.ids[union], z_scores(self.dense[union], self.dense[reference]),
                                   z_scores(self.lexical[union], self.lexical[reference]))
        return self._scaled[depth]


def fuse(
    candidates: Candidates, fusion: Fusion, weight: float = HYBRID_WEIGHT, depth: int = HYBRID_CANDIDATES,
    limit: int | None = None,
) -> Ranking:
    """The fused ranking of the ``depth`` best of each retriever, best first (ties by chunk id), ``limit`` long at most.

    Weighted: ``weight`` × z(dense) + (1 − ``weight``) × z(lexical), each z-scored over
    the union of both top lists, every member with its true scores. RRF: reciprocal rank
    fusion of the two top lists.
    """
    if fusion is Fusion.RRF:
        ids = candidates.ids
        tops = [ids[candidates.dense_top(depth)].tolist(), ids[candidates.lexical_top(depth)].tolist()]
        return sorted(reciprocal_rank_fusion(tops).items(), key=lambda pair: (-pair[1], pair[0]))[:limit]
    ids, dense, lexical = candidates.scaled(depth)
    scores = weight * dense + (1 - weight) * lexical
    if limit is not None and limit < len(scores):  # only the best few: those at or above the limit-th score
        keep = np.flatnonzero(scores >= np.partition(scores, len(scores) - limit)[len(scores) - limit])
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:limit]
    return list(zip(ids[order].tolist(), scores[order].tolist()))


def expand_queries(vectors: np.ndarray, feedback: Sequence[np.ndarray], beta: float) -> np.ndarray:
    """Each query vector moved by ``beta`` × the mean of its feedback vectors, back to unit length (Rocchio)."""
    expanded = np.array(vectors, dtype=np.float32)
    for row, chosen in enumerate(feedback):
        if len(chosen):
            expanded[row] += beta * np.asarray(chosen, dtype=np.float32).mean(axis=0)
    return expanded / np.linalg.norm(expanded, axis=1, keepdims=True)


@dataclass(frozen=True)
class LexicalSide:
    """One query's BM25 side of a hybrid search: every matching chunk's score, and its best chunks
    with their stored vectors (read once, for both rounds of a search with feedback)."""

    ids: np.ndarray  # every chunk holding a query term, ascending
    scores: np.ndarray
    best: np.ndarray  # the best chunks that still have a stored vector, best first
    vectors: np.ndarray  # their stored vectors, row for row

    @classmethod
    def of(
        cls, scored: tuple[np.ndarray, np.ndarray], depth: int,
        embeddings: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    ) -> LexicalSide:
        """From every matching chunk's (ids ascending, BM25); ``embeddings`` gives stored (ids, vectors).

        A best chunk without a stored vector was deleted meanwhile and is left out.
        """
        ids, scores = scored
        best = ids[np.lexsort((ids, -scores))[:depth]]
        found, vectors = embeddings(best)
        if np.array_equal(found, best):  # the usual case: every one found, in order
            return cls(ids, scores, best, vectors)
        row = {int(chunk_id): n for n, chunk_id in enumerate(found.tolist())}
        kept = [row[i] for i in best.tolist() if i in row]
        return cls(ids, scores, found[kept], vectors[kept])

    def scores_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Each chunk's BM25, 0 for a chunk without a query term."""
        at = positions(self.ids, chunk_ids)
        out = np.zeros(len(chunk_ids))
        out[at >= 0] = self.scores[at[at >= 0]]
        return out


def candidates_of(vector: np.ndarray, dense: tuple[np.ndarray, np.ndarray], lexical: LexicalSide) -> Candidates:
    """One query's candidates: its dense top list (ids, cosines) and the lexical best chunks, each
    chunk given its score on the other side (a lexical one's cosine from its stored vector)."""
    dense_ids, dense_scores = dense
    only = ~np.isin(lexical.best, dense_ids)
    ids = np.concatenate([dense_ids, lexical.best[only]])
    cosines = np.concatenate([dense_scores, lexical.vectors[only].astype(np.float64) @ vector.astype(np.float64)])
    return Candidates(ids, cosines, lexical.scores_of(ids))


class CandidateSource(Protocol):
    """Where hybrid search gets its candidates: one index, the shards of a collection, or tuning's cache."""

    def candidates(self, vectors: np.ndarray, depth: int) -> list[Candidates]:
        """Each query's candidates for these query vectors (the lexical side depends on the text alone)."""
        ...

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The stored vectors of each query's chunks, as many rows as it found."""
        ...


def hybrid_rank(
    source: CandidateSource, vectors: np.ndarray, k: int, fusion: Fusion, weight: float, feedback: float,
) -> list[Ranking]:
    """Each query's ``k`` best chunks, fused; with ``feedback`` > 0 and weighted fusion, fused again
    after moving the query vector towards its top :data:`FEEDBACK_CHUNKS` fused chunks.

    RRF ranks by ranks alone and takes no feedback: with it, feedback lost nDCG@10 on two of
    the three sets measured (SciFact 0.7148 to 0.7099, NPL 0.5171 to 0.5072).
    """
    depth = max(k, HYBRID_CANDIDATES)
    if feedback > 0 and fusion is Fusion.WEIGHTED and len(vectors):
        tops = [fuse(c, fusion, weight, depth, FEEDBACK_CHUNKS) for c in source.candidates(vectors, depth)]
        chosen = source.embeddings([[chunk_id for chunk_id, _ in top] for top in tops])
        vectors = expand_queries(vectors, chosen, feedback)
    return [fuse(c, fusion, weight, depth, k) for c in source.candidates(vectors, depth)]


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
        feedback: float = FEEDBACK,
    ) -> list[Ranking]:
        if mode is Mode.DENSE:
            return self.dense(queries, k, compiled)
        if mode is Mode.LEXICAL:
            return self.lexical(queries, k, compiled, k1, b, statistics)
        source = self.source(queries, compiled, k1, b, statistics)
        return hybrid_rank(source, self.query_vectors(queries), k, fusion, hybrid_weight, feedback)

    def source(
        self, queries: Sequence[str], compiled: Filter | None, k1: float, b: float,
        statistics: Sequence[TermStatistics] | None = None,
    ) -> CandidateSource:
        """This index's hybrid candidates for ``queries``; BM25 is scored once, whatever the query vectors."""
        return _IndexCandidates(self, queries, compiled, k1, b, statistics)

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return encode_queries(self.embedder, queries)

    def dense(self, queries: Sequence[str], k: int, compiled: Filter | None) -> list[Ranking]:
        if len(self.backend()) == 0:
            return [[] for _ in queries]
        return self.nearest(self.query_vectors(queries), k, compiled)

    def nearest(self, queries: np.ndarray, k: int, compiled: Filter | None) -> list[Ranking]:
        """The ``k`` nearest chunks to each query vector among those matching ``compiled``."""
        return [list(zip(ids.tolist(), scores.tolist())) for ids, scores in self.nearest_arrays(queries, k, self.allowed(compiled))]

    def nearest_arrays(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's (ids, cosines) of its ``k`` nearest chunks among ``allowed`` (None: all)."""
        with self.lock:
            if len(self.backend()) == 0:
                return [(np.zeros(0, dtype=np.int64), np.zeros(0)) for _ in queries]
            scores, ids = self.backend().search(
                queries, k, allowed, fetch=lambda wanted: self.store.embeddings_for(wanted, self.dimension)
            )
        return [(row_ids[row_ids >= 0].astype(np.int64), row_scores[row_ids >= 0].astype(np.float64))
                for row_scores, row_ids in zip(scores, ids)]

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

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The stored vectors of each list of chunk ids (a deleted chunk has none)."""
        flat = np.unique(np.fromiter((i for row in ids for i in row), dtype=np.int64))
        found, vectors = self.stored(flat)
        where = {int(chunk_id): row for row, chunk_id in enumerate(found.tolist())}
        return [vectors[[where[i] for i in row if i in where]] for row in ids]

    def stored(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their vectors): from the vector backend's memory where it keeps them, else from the store.

        The backend's vectors are the stored embeddings (it is built from them); an id it
        does not hold (added by another process since it was loaded) is read from SQLite.
        """
        with self.lock:
            found, vectors = self.backend().vectors(ids)
        if len(found) == len(ids):
            return found, vectors
        more, extra = self.store.embeddings_for(np.setdiff1d(ids, found), self.dimension)
        return np.concatenate([found, more]), np.concatenate([vectors, extra])


class _IndexCandidates:
    """One index's :class:`CandidateSource` for a batch of queries: BM25 scored once, dense per call."""

    def __init__(
        self, retriever: Retriever, queries: Sequence[str], compiled: Filter | None, k1: float, b: float,
        statistics: Sequence[TermStatistics] | None,
    ) -> None:
        self.retriever = retriever
        self.allowed = retriever.allowed(compiled)
        collections = statistics if statistics is not None else [None] * len(queries)
        self.scored = [
            Bm25.scored(retriever.bm25.postings(query), k1, b, self.allowed, collection)
            for query, collection in zip(queries, collections)
        ]
        self.lexical: dict[int, list[LexicalSide]] = {}

    def candidates(self, vectors: np.ndarray, depth: int) -> list[Candidates]:
        if depth not in self.lexical:
            self.lexical[depth] = [LexicalSide.of(scored, depth, self.retriever.stored) for scored in self.scored]
        dense = self.retriever.nearest_arrays(vectors, depth, self.allowed)
        return [candidates_of(v, d, l) for v, d, l in zip(vectors, dense, self.lexical[depth])]

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return self.retriever.embeddings(ids)
