"""Exact search (``Flat``), and the id map that Flat and HNSW share."""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.vectors.base import Bitmap, Fetch, VectorBackend, _as_ids

__all__ = ["FlatBackend", "IDMapBackend"]


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

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores over just the allowed ids, computed where the vectors lie.

        The full vectors are scanned in place with a bitmap of the allowed ids (translated
        to positions through the id map), so nothing is copied: gathering them by id
        (``reconstruct_batch``) took 7 ms for 2,000 vectors here, the scan 0.8 ms at 200k.
        Ids the index does not hold are simply never selected.
        """
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        storage = self._storage()
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
            self.index.remove_ids(_as_ids(ids))
