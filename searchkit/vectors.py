"""The FAISS side: vectors keyed by chunk id, searched by inner product.

The index is an ``IndexIDMap2`` over an exact inner-product index, so FAISS speaks in
the store's chunk ids and deleting a chunk never shifts another's id. On disk it is two
files: ``vectors.faiss`` and ``vectors.json`` (the store generation it reflects). Each is
written to a temporary file, flushed and renamed; the JSON goes last, so a crash between
the two leaves a mismatch that is caught and repaired on open, never a silent drift.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

__all__ = ["VectorIndex", "VectorState", "atomic_write"]

VECTORS_FILE = "vectors.faiss"
STATE_FILE = "vectors.json"


@dataclass(frozen=True)
class VectorState:
    """Which store state a saved vector file reflects."""

    generation: int
    count: int


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so readers see the old file or the new one, never half of either."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class VectorIndex:
    """Exact cosine search over unit vectors, keyed by chunk id."""

    def __init__(self, dimension: int, index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest chunks per query; missing slots have id -1.

        ``allowed`` restricts the search to those chunk ids before ranking (an id
        selector over an exact index), so a filtered query still returns k hits when k
        matching chunks exist.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else 1
        if allowed is None:
            return self.index.search(queries, k)
        if len(allowed) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))

    def save(self, folder: Path, generation: int) -> None:
        atomic_write(folder / VECTORS_FILE, faiss.serialize_index(self.index).tobytes())
        state = {"generation": generation, "count": len(self)}
        atomic_write(folder / STATE_FILE, json.dumps(state).encode())

    @classmethod
    def load(cls, folder: Path, dimension: int) -> tuple[VectorIndex, VectorState] | None:
        """The saved index and the state it claims, or None if missing or unreadable.

        The state file is read before the index: if a writer replaces both in between,
        the (newer) index is paired with an older generation and is rebuilt, which is
        safe; the reverse pairing cannot happen.
        """
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            index = faiss.read_index(str(folder / VECTORS_FILE))
            loaded = cls(dimension, index)
            claimed = VectorState(int(state["generation"]), int(state["count"]))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None
        if index.d != dimension or claimed.count != len(loaded):
            return None
        return loaded, claimed
