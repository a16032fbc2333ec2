"""The FAISS side: vectors keyed by chunk id, searched by inner product.

The FAISS index is built from a factory description (``Flat``, ``HNSW32``, ``IVF,Flat``,
``IVF1024,SQ8``, ``IVF,PQ48``...) and keyed by the store's chunk ids, so deleting a chunk
never shifts another's id. Flat and HNSW are wrapped in ``IndexIDMap2``; IVF indexes store
ids themselves and are used bare, because ``IndexIDMap`` renumbers on removal in a way only
flat indexes follow (an IVF behind it returns the wrong ids after a delete). On disk it is two files:
``vectors.faiss`` and ``vectors.json`` (the store generation it reflects and the resolved
description). Each is written to a temporary file, flushed and renamed; the JSON goes
last, so a crash between the two leaves a mismatch that is caught and repaired on open,
never a silent drift.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from searchkit.config import DESCRIPTION_PATTERN, check_description
from searchkit.errors import ConfigError

__all__ = [
    "VectorIndex",
    "VectorState",
    "atomic_write",
    "resolve_description",
    "AUTO_FLAT_LIMIT",
]

VECTORS_FILE = "vectors.faiss"
STATE_FILE = "vectors.json"
# `auto` keeps exact search up to this many vectors (about 60 ms a query at 2 cores), HNSW above.
AUTO_FLAT_LIMIT = 300_000
AUTO_APPROXIMATE = "HNSW32"
# A filter matching at most this share of the vectors (or this many) is answered by exact
# search over just the matching vectors; a wider one by the index with an id selector.
EXACT_SUBSET_SHARE = 0.05
EXACT_SUBSET_MIN = 20_000
# HNSW cannot delete: deleted ids are masked until they are this share of the index, then it is rebuilt.
REBUILD_SHARE = 0.1
# Query batches smaller than this search with one FAISS thread (see _threads_for).
SMALL_BATCH = 8
# How far an approximate search widens (nprobe, efSearch) to fill rows short of k hits.
MAX_WIDENING = 256

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


def _is_ivf(description: str) -> bool:
    return description.startswith("IVF")


def resolve_description(description: str, count: int, dimension: int) -> str:
    """The concrete FAISS description for ``count`` vectors.

    ``auto`` is exact search up to ``AUTO_FLAT_LIMIT`` vectors and HNSW32 above it;
    ``IVF`` without a list count gets about 4·√n lists (at least 39 training points each).
    """
    check_description(description)
    if description == "auto":
        return "Flat" if count <= AUTO_FLAT_LIMIT else AUTO_APPROXIMATE
    match = DESCRIPTION_PATTERN.match(description)
    if match and match.group(4) and not match.group(3):
        lists = max(1, min(int(4 * math.sqrt(max(count, 1))), count // 39 or 1, 65536))
        description = f"IVF{lists},{match.group(4)}"
    match = DESCRIPTION_PATTERN.match(description)
    if match and match.group(5) and dimension % int(match.group(5)):
        raise ConfigError(f"PQ{match.group(5)} needs a sub-quantizer count that divides the dimension {dimension}")
    return description


@dataclass(frozen=True)
class VectorState:
    """Which store state a saved vector file reflects."""

    generation: int
    count: int
    description: str


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so readers see the old file or the new one, never half of either."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class VectorIndex:
    """Cosine search over unit vectors, keyed by chunk id, exact or approximate."""

    def __init__(self, dimension: int, description: str = "Flat", index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self.description = description
        if index is None:
            index = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
            if not _is_ivf(description):
                index = faiss.IndexIDMap2(index)
        self.index = index
        self.masked: set[int] = set()  # deleted ids an HNSW index still holds
        self.ef_search = 128
        self.nprobe = 32

    @classmethod
    def build(cls, dimension: int, description: str, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """A new index of the given kind over ``vectors``, trained on them if it needs training."""
        built = cls(dimension, resolve_description(description, len(ids), dimension))
        if not built.index.is_trained:
            if len(ids) == 0:
                raise ConfigError(f"{built.description} must be trained on stored vectors; index documents first")
            sample = vectors
            if len(vectors) > 100_000:
                sample = vectors[np.random.default_rng(0).choice(len(vectors), 100_000, replace=False)]
            built.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        built.add(ids, vectors)
        return built

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.masked)

    @property
    def is_exact(self) -> bool:
        return self.description == "Flat"

    @property
    def _holds_full_vectors(self) -> bool:
        return self.description == "Flat" or self.description.startswith("HNSW")

    @property
    def _can_remove(self) -> bool:
        return not self.description.startswith("HNSW")

    @property
    def needs_rebuild(self) -> bool:
        return len(self.masked) > REBUILD_SHARE * max(int(self.index.ntotal), 1)

    def _held_ids(self) -> np.ndarray:
        if isinstance(self.index, faiss.IndexIDMap2):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
            for number in range(self.index.nlist)
            if lists.list_size(number)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def ids(self) -> np.ndarray:
        """The ids searchable now (masked ids excluded)."""
        held = self._held_ids()
        if self.masked:
            held = held[~np.isin(held, np.fromiter(self.masked, dtype=np.int64))]
        return held

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self._can_remove:
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        else:
            self.masked.update(int(i) for i in ids)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, fetch: Fetch | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest chunks per query; missing slots have id -1.

        ``allowed`` restricts the search to those chunk ids before ranking. A selective
        filter is answered exactly over the matching vectors (taken from the index, or
        from ``fetch`` when the index holds only compressed codes), so it returns k hits
        whenever k matching chunks exist; a wide one goes through the index with an id
        selector.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with _threads_for(len(queries)):
            return self._search(queries, k, allowed, fetch)

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            if self.masked:
                allowed = allowed[~np.isin(allowed, np.fromiter(self.masked, dtype=np.int64))]
            if len(allowed) <= max(EXACT_SUBSET_MIN, EXACT_SUBSET_SHARE * len(self)):
                return self._exact_subset(queries, k, allowed, fetch)
        return self._approximate(queries, k, allowed)

    def _approximate(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Search through the index; rows left short of k hits are searched again, wider.

        IVF probes only some lists and HNSW explores only part of its graph, so with
        deletes or a filter they can return fewer than k hits although k exist; widening
        nprobe or efSearch (up to ``MAX_WIDENING`` times) fills them.
        """
        width = max(1, min(k, int(self.index.ntotal)))
        expected = min(width, len(self) if allowed is None else len(allowed))
        scores, ids = self.index.search(queries, width, params=self._params(allowed, k))
        widening = 1
        while not self.is_exact and widening < MAX_WIDENING:
            short = np.flatnonzero((ids >= 0).sum(axis=1) < expected)
            if not len(short):
                break
            widening *= 4
            scores[short], ids[short] = self.index.search(queries[short], width, params=self._params(allowed, k, widening))
        return scores, ids

    def _params(self, allowed: np.ndarray | None, k: int, widening: int = 1) -> faiss.SearchParameters | None:
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if self.masked:
            excluded = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self.masked, dtype=np.int64)))
            selector = excluded if selector is None else faiss.IDSelectorAnd(selector, excluded)
            self._keep_alive = (selector, excluded)  # the SWIG wrappers do not own their parts
        if self.description.startswith("HNSW"):
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k) * widening, sel=selector)
        if _is_ivf(self.description):
            return faiss.SearchParametersIVF(nprobe=self.nprobe * widening, sel=selector)
        return None if selector is None else faiss.SearchParameters(sel=selector)

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: Fetch | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(allowed) == 0:
            return scores, ids
        if self._holds_full_vectors or fetch is None:
            allowed = allowed[np.isin(allowed, self._held_ids())]
            candidates, vectors = allowed, self.index.reconstruct_batch(allowed)
        else:
            candidates, vectors = fetch(allowed)
        similarity = queries @ vectors.T
        top = min(k, len(candidates))
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :top]
        scores[:, :top] = np.take_along_axis(similarity, order, axis=1)
        ids[:, :top] = candidates[order]
        return scores, ids

    def save(self, folder: Path, generation: int) -> None:
        atomic_write(folder / VECTORS_FILE, faiss.serialize_index(self.index).tobytes())
        state = {"generation": generation, "count": int(self.index.ntotal), "description": self.description}
        atomic_write(folder / STATE_FILE, json.dumps(state).encode())

    @classmethod
    def load(cls, folder: Path, dimension: int) -> tuple[VectorIndex, VectorState] | None:
        """The saved index and the state it claims, or None if missing or unreadable.

        The state file is read before the index: if a writer replaces both in between,
        the (newer) index is paired with an older generation and is caught up, which is
        safe; the reverse pairing cannot happen.
        """
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            index = faiss.read_index(str(folder / VECTORS_FILE))
            claimed = VectorState(int(state["generation"]), int(state["count"]), str(state.get("description", "Flat")))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None
        if index.d != dimension or claimed.count != index.ntotal or not isinstance(index, (faiss.IndexIDMap2, faiss.IndexIVF)):
            return None
        return cls(dimension, claimed.description, index), claimed
