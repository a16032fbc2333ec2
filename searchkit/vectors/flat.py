"""Exact search: every vector compared with the query (``Flat``)."""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.vectors.base import VectorBackend, _as_ids

__all__ = ["FlatBackend"]


class FlatBackend(VectorBackend):
    """Exact inner product behind an ``IndexIDMap2``, so removals never shift ids."""

    exact = True

    @classmethod
    def empty(cls, dimension: int, description: str = "Flat") -> FlatBackend:
        inner = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
        return cls(dimension, description, faiss.IndexIDMap2(inner))

    def held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_as_ids(ids))
