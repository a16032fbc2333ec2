"""Exact search (``Flat``), and the id map that Flat and HNSW share."""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.vectors.base import Bitmap, Fetch, VectorBackend, _as_ids

__all__ = ["FlatBackend", "IDMapBackend"]

# A filter passing at most this share of the vectors is scored row by row at their positions; a wider
# one scans the whole storage with a bitmap (at a million vectors, 10% took 9.4 ms by position).
BY_POSITION_SHARE = 0.5


class IDMapBackend(VectorBackend):
    """A FAISS index behind ``IndexIDMap2``, which keys vectors by chunk id: removals never shift ids.

    The full vectors lie in a flat array by position, so a filter matching up to a
    quarter of them is answered exactly from there: at a million HNSW32 vectors, 10%
    took 23 ms through the graph with recall 0.957, and 16 ms exactly (recall 1).
    """

    exact_subset_share = 0.25

    @classmethod
    def empty(cls, dimension: int, description: str) -> IDMapBackend:
        inner = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
        return cls(dimension, description, faiss.IndexIDMap2(inner))

    def held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def _storage(self) -> faiss.IndexFlat:
        """The flat array of full vectors, by position (id_map gives each position's chunk id)."""
        return faiss.downcast_index(self.index.index)

    # (held ids sorted, their positions, the first id when the ids are positions plus it), made on first use
    # after a change.
    _by_id: tuple[np.ndarray, np.ndarray, int | None] | None = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        super().add(ids, vectors)
        self._by_id = None

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids held, their positions in the storage).

        Chunk ids are handed out in ascending order and Flat removals keep the order, so
        the ids held are often one run ``first, first + 1, ...``: a position is then a
        subtraction (a binary search of 10,000 ids among a million took 1.7 ms).
        """
        if self._by_id is None:
            held = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            order = np.argsort(held, kind="stable")
            run = len(held) > 0 and int(held[order[-1]] - held[order[0]]) == len(held) - 1 and bool(
                (order == np.arange(len(held))).all())
            self._by_id = (held[order], order, int(held[0]) if run else None)
        held, order, first = self._by_id
        if first is not None:
            where = ids - first
            found = (where >= 0) & (where < len(held))
            return ids[found], where[found]
        where = np.minimum(np.searchsorted(held, ids), max(len(held) - 1, 0))
        found = held[where] == ids if len(held) else np.zeros(len(ids), dtype=bool)
        return ids[found], order[where[found]]

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows copied from the flat storage: a hybrid search's hundred candidates in microseconds,
        where reading their embeddings from SQLite took about a millisecond."""
        found, positions = self._positions(_as_ids(ids))
        storage = self._storage()
        every = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * self.dimension)
        return found, every.reshape(int(storage.ntotal), self.dimension)[positions].copy()

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores over just the allowed ids, read where the vectors lie.

        Up to ``BY_POSITION_SHARE`` of the storage, the allowed rows are scored in place
        by position (``knn_inner_products_by_idx``: no copy; at a million vectors a 1%
        filter took 1.1 ms this way against 2.7 ms gathering the rows first); more are
        scanned with a bitmap of the allowed ids (translated to positions through the id
        map). Ids the index does not hold are never selected.
        """
        storage = self._storage()
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        top = min(k, len(allowed), int(storage.ntotal))
        if top == 0:
            return scores, ids
        id_map = faiss.rev_swig_ptr(self.index.id_map.data(), self.index.id_map.size())
        if len(allowed) <= BY_POSITION_SHARE * storage.ntotal:
            _, positions = self._positions(_as_ids(allowed))
            top = min(top, len(positions))
            if top == 0:
                return scores, ids
            found = np.empty((len(queries), top), dtype=np.float32)
            at = np.empty((len(queries), top), dtype=np.int64)
            faiss.knn_inner_products_by_idx(
                faiss.swig_ptr(queries), storage.get_xb(), faiss.swig_ptr(positions), self.dimension, len(queries),
                int(storage.ntotal), len(positions), top, faiss.swig_ptr(found), faiss.swig_ptr(at), 0,
            )
        else:
            bitmap = Bitmap(allowed)
            translated = faiss.IDSelectorTranslated(self.index.id_map, bitmap.selector)
            found, at = storage.search(queries, top, params=faiss.SearchParameters(sel=translated))
        held = at >= 0
        ids[:, :top] = np.where(held, id_map[np.where(held, at, 0)], -1)
        scores[:, :top] = np.where(held, found, -np.inf)
        return scores, ids


class FlatBackend(IDMapBackend):
    """Every vector compared with the query: exact, and removals are real."""

    exact = True
    exact_subset_share = BY_POSITION_SHARE  # exact either way; by position beats a scan of the whole storage

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_as_ids(ids))  # later vectors move up: positions change
            self._by_id = None
