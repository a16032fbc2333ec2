"""Exact search (``Flat``), and the id map that Flat and HNSW share."""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.vectors.base import Bitmap, Fetch, VectorBackend, _as_ids, _top_k

__all__ = ["FlatBackend", "IDMapBackend"]

# A filter passing at most this share of the vectors gathers them by position; a wider one scans in place.
GATHER_SHARE = 0.02


class IDMapBackend(VectorBackend):
    """A FAISS index behind ``IndexIDMap2``, which keys vectors by chunk id: removals never shift ids."""

    @classmethod
    def empty(cls, dimension: int, description: str) -> IDMapBackend:
        inner = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
        return cls(dimension, description, faiss.IndexIDMap2(inner))

    def held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def _storage(self) -> faiss.IndexFlat:
        """The flat array of full vectors, by position (id_map gives each position's chunk id)."""
        return faiss.downcast_index(self.index.index)

    # (held ids sorted, their positions), made on first use after a change.
    _by_id: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        super().add(ids, vectors)
        self._by_id = None

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids held, their positions in the storage)."""
        if self._by_id is None:
            held = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            order = np.argsort(held, kind="stable")
            self._by_id = (held[order], order)
        held, order = self._by_id
        where = np.minimum(np.searchsorted(held, ids), max(len(held) - 1, 0))
        found = held[where] == ids if len(held) else np.zeros(len(ids), dtype=bool)
        return ids[found], order[where[found]]

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores over just the allowed ids, read where the vectors lie.

        A few are gathered by position from the flat storage and scored in one product;
        more are scanned in place with a bitmap of the allowed ids (translated to
        positions through the id map), which touches only their rows. Gathering them by id
        with ``reconstruct_batch`` took 7 ms for 2,000 vectors here; the scan of 200k
        with a bitmap, 0.8 ms. Ids the index does not hold are never selected.
        """
        storage = self._storage()
        if len(allowed) <= GATHER_SHARE * storage.ntotal:
            candidates, positions = self._positions(_as_ids(allowed))
            stored = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dimension).reshape(-1, self.dimension)
            return _top_k(queries, k, candidates, stored[positions])
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        top = min(k, len(allowed), int(storage.ntotal))
        if top == 0:
            return scores, ids
        bitmap = Bitmap(allowed)
        translated = faiss.IDSelectorTranslated(self.index.id_map, bitmap.selector)
        found, positions = storage.search(queries, top, params=faiss.SearchParameters(sel=translated))
        id_map = faiss.rev_swig_ptr(self.index.id_map.data(), self.index.id_map.size())
        held = positions >= 0
        ids[:, :top] = np.where(held, id_map[np.where(held, positions, 0)], -1)
        scores[:, :top] = np.where(held, found, -np.inf)
        return scores, ids


class FlatBackend(IDMapBackend):
    """Every vector compared with the query: exact, and removals are real."""

    exact = True

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_as_ids(ids))  # later vectors move up: positions change
            self._by_id = None
