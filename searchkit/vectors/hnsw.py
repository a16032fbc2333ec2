"""Graph search (``HNSW<M>``): fast approximate search that cannot delete.

FAISS's HNSW cannot remove a vector from its graph, so deleted ids are *masked*:
excluded from every search through an id selector, counted, and saved with the index
(a mask that lived only in memory would let deleted chunks come back in the next
process). Once masked ids pass ``REBUILD_SHARE`` of the graph, the index asks to be
rebuilt from the stored embeddings.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from searchkit.vectors.flat import IDMapBackend

__all__ = ["HNSWBackend", "REBUILD_SHARE"]

REBUILD_SHARE = 0.1


class HNSWBackend(IDMapBackend):
    def __init__(self, dimension: int, description: str, index: faiss.Index) -> None:
        super().__init__(dimension, description, index)
        self.masked: set[int] = set()
        self._masked_array: np.ndarray | None = None

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            held = self.held_ids()
            self.masked.update(int(i) for i in np.asarray(ids)[np.isin(ids, held)])
            self._masked_array = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        # Chunk ids are never reused, but a lagging file caught up from the store could
        # re-add one that is masked here: unmask it rather than hold it twice.
        if len(ids) and self.masked:
            self.masked.difference_update(int(i) for i in ids)
            self._masked_array = None
        super().add(ids, vectors)

    def _excluded(self) -> np.ndarray:
        if self._masked_array is None:
            self._masked_array = np.fromiter(sorted(self.masked), dtype=np.int64, count=len(self.masked))
        return self._masked_array

    def _storage(self) -> faiss.IndexFlat:
        return faiss.downcast_index(faiss.downcast_index(self.index.index).storage)

    def _params(self, selector: faiss.IDSelector | None, k: int, widening: int) -> faiss.SearchParameters:
        return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k) * widening, sel=selector)

    @property
    def needs_rebuild(self) -> bool:
        return len(self.masked) > REBUILD_SHARE * max(int(self.index.ntotal), 1)

    def state(self) -> dict[str, Any]:
        return {"masked": sorted(self.masked)}

    def restore(self, state: dict[str, Any]) -> None:
        self.masked = {int(i) for i in state.get("masked", [])}
        self._masked_array = None
