"""Exact search (``Flat``), and the id map that Flat and HNSW share."""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.vectors.base import VectorBackend, _as_ids

__all__ = ["FlatBackend", "IDMapBackend"]


class IDMapBackend(VectorBackend):
    """A FAISS index behind ``IndexIDMap2``, which keys vectors by chunk id: removals never shift ids."""

    @classmethod
    def empty(cls, dimension: int, description: str) -> IDMapBackend:
        inner = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
        return cls(dimension, description, faiss.IndexIDMap2(inner))

    def held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)


class FlatBackend(IDMapBackend):
    """Every vector compared with the query: exact, and removals are real."""

    exact = True

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_as_ids(ids))
