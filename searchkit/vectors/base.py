"""The interface every vector backend implements, and the search logic they share.

A backend holds unit vectors keyed by the store's chunk ids and answers inner-product
(cosine) searches, optionally restricted to a set of allowed ids. Each backend owns its
delete semantics: Flat and IVF remove vectors for real, HNSW (which cannot) masks them
and persists the mask with its file. Ids are chunk ids, never positions, so a delete
never shifts another chunk's id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = ["VectorBackend", "Fetch"]

# A filter matching at most this share of the vectors (or this many) is answered by exact
# search over just the matching vectors; a wider one by the index with an id selector.
EXACT_SUBSET_SHARE = 0.05
EXACT_SUBSET_MIN = 20_000
# Query batches smaller than this search with one FAISS thread (see _threads_for).
SMALL_BATCH = 8
# How far an approximate search widens (nprobe, efSearch) to fill rows short of k hits.
MAX_WIDENING = 256
# The most a filter widens an approximate search from the start.
FILTER_WIDENING = 32

# Given chunk ids, their stored (ids, full vectors): for backends that keep only codes.
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One FAISS thread for a few queries, all of them for a batch.

    Right after the embedding model ran, its OpenMP threads still hold the cores; a
    multi-threaded FAISS call then waits on them and one query takes about 3 ms instead
    of 0.6 ms (measured on 2 cores). Batches keep every thread.
    """
    if queries >= SMALL_BATCH:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _as_ids(ids: Any) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


def _top_k(queries: np.ndarray, k: int, candidates: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k best ``candidates`` (rows of ``vectors``) per query, exactly; missing slots have id -1.

    Scored by FAISS rather than numpy: ``queries @ vectors.T`` hands a few thousand rows to
    a multi-threaded BLAS, which on a busy machine took 12 ms for 2,000 vectors that
    FAISS's own loop scores in a fraction of a millisecond.
    """
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    top = min(k, len(candidates))
    if top == 0:
        return scores, ids
    found, positions = faiss.knn(
        np.ascontiguousarray(queries, dtype=np.float32), np.ascontiguousarray(vectors, dtype=np.float32), top,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    scores[:, :top] = found
    ids[:, :top] = candidates[positions]
    return scores, ids


class Bitmap:
    """A FAISS selector of chunk ids as a bitmap: one bit per id up to the largest.

    Membership is one bit test, where ``IDSelectorBatch`` hashes every id into a set
    (a bloom filter, then an unordered_set) when it is built and looks each candidate up:
    measured here at 200k vectors, a 1% filter through Flat took 0.78 ms with a bitmap
    against 1.75 ms with a batch. The packed bits must outlive the selector, so both
    are held here.
    """

    def __init__(self, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        bits = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=bool)
        bits[ids] = True
        self.packed = np.packbits(bits, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(self.packed)


class VectorBackend(ABC):
    """Cosine search over unit vectors keyed by chunk id.

    Subclasses say how vectors are held (``index``), removed, and searched through the
    index (``_params``); selective filters, widening and serialisation are shared.
    """

    #: Whether results are exact (no widening needed, no recall loss).
    exact = False
    #: Whether the index keeps full vectors (so a filtered subset can be scored exactly from it).
    holds_full_vectors = True
    #: A filter matching at most this share of the vectors is answered exactly over them (see search).
    exact_subset_share = EXACT_SUBSET_SHARE

    def __init__(self, dimension: int, description: str, index: faiss.Index) -> None:
        self.dimension = dimension
        self.description = description
        self.index = index
        self.ef_search = 128
        self.nprobe = 32

    # What subclasses provide

    @abstractmethod
    def held_ids(self) -> np.ndarray:
        """Every id the FAISS index holds, masked ones included."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Make ``ids`` unsearchable from now on."""

    def _params(self, selector: faiss.IDSelector | None, k: int, widening: int) -> faiss.SearchParameters | None:
        return None if selector is None else faiss.SearchParameters(sel=selector)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids among ``ids`` whose full vectors lie in memory here, those vectors); none by default."""
        return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)

    def _excluded(self) -> np.ndarray:
        """Ids held but not searchable (masked deletes)."""
        return np.zeros(0, np.int64)

    def state(self) -> dict[str, Any]:
        """What must be saved beside the FAISS file for the backend to load as it was."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` returned."""

    @property
    def needs_rebuild(self) -> bool:
        """True when the backend would be better rebuilt from the stored embeddings."""
        return False

    # Shared behaviour

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self._excluded())

    def ids(self) -> np.ndarray:
        """The ids searchable now."""
        held = self.held_ids()
        excluded = self._excluded()
        return held[~np.isin(held, excluded)] if len(excluded) else held

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _as_ids(ids))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, fetch: Fetch | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest chunks per query; missing slots have id -1.

        ``allowed`` restricts the search to those chunk ids before ranking. A selective
        filter is answered exactly over the matching vectors (taken from the index, or
        from ``fetch`` when the index holds only compressed codes), so it returns k hits
        whenever k matching chunks exist; a wide one goes through the index with an id
        selector, widened until rows are full.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with _threads_for(len(queries)):
            if allowed is not None:
                excluded = self._excluded()
                if len(excluded):
                    allowed = allowed[~np.isin(allowed, excluded)]
                if len(allowed) <= max(EXACT_SUBSET_MIN, self.exact_subset_share * len(self)):
                    return self._exact_subset(queries, k, allowed, fetch)
            return self._through_index(queries, k, allowed, fetch)

    def _selector(self, allowed: np.ndarray | None) -> tuple[faiss.IDSelector | None, tuple[Any, ...]]:
        """The ids a search may return: ``allowed`` (from which :meth:`search` took masked ids), or all but masked.

        The second item holds what the selector points into (the SWIG wrappers do not own
        their parts): the caller keeps it until the search is done.
        """
        if allowed is not None:
            bitmap = Bitmap(allowed)
            return bitmap.selector, (bitmap,)
        excluded = self._excluded()
        if not len(excluded):
            return None, ()
        bitmap = Bitmap(excluded)
        selector = faiss.IDSelectorNot(bitmap.selector)
        return selector, (bitmap, selector)

    def _through_index(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search through the index; rows left short of k hits are searched again, wider.

        IVF probes only some lists and HNSW explores only part of its graph, so with
        deletes or a filter they can return fewer than k hits although k exist; widening
        nprobe or efSearch (up to ``MAX_WIDENING`` times) fills them, and a row still
        short after that is answered by exact search: never fewer hits than exist.
        """
        width = max(1, min(k, int(self.index.ntotal)))
        expected = min(width, len(self) if allowed is None else len(allowed))
        selector, _parts = self._selector(allowed)
        widening = 1
        if allowed is not None and not self.exact and len(allowed):
            # A filter passing one vector in n leaves about 1/n of what nprobe or efSearch
            # reaches: start twice that much wider (measured at 200k, HNSW32 with a 10%
            # filter: recall 0.955 at efSearch 128, 0.980 at 1280).
            widening = min(FILTER_WIDENING, max(1, round(2 * len(self) / len(allowed))))
        scores, ids = self.index.search(queries, width, params=self._params(selector, k, widening))
        while not self.exact:
            short = np.flatnonzero((ids >= 0).sum(axis=1) < expected)
            if not len(short):
                break
            if widening >= MAX_WIDENING:
                candidates = self.ids() if allowed is None else allowed
                scores[short], ids[short] = self._exact_subset(queries[short], width, candidates, fetch)
                break
            widening *= 4
            scores[short], ids[short] = self.index.search(queries[short], width, params=self._params(selector, k, widening))
        if k > width:  # fewer vectors than k: pad to the shape asked for
            scores = np.pad(scores, ((0, 0), (0, k - width)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, k - width)), constant_values=-1)
        return scores, ids

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(allowed) == 0:
            return scores, ids
        if self.holds_full_vectors or fetch is None:
            allowed = allowed[np.isin(allowed, self.held_ids())]
            candidates, vectors = allowed, self.index.reconstruct_batch(_as_ids(allowed))
        else:
            candidates, vectors = fetch(allowed)
        return _top_k(queries, k, candidates, vectors)

    def write(self, path: Path) -> None:
        """Write the FAISS index to ``path`` directly (no in-memory copy of a possibly large index)."""
        faiss.write_index(self.index, str(path))
