"""Inverted lists (``IVF<lists>,Flat|SQ8|PQ<m>``): vectors clustered, a few lists probed per query.

IVF indexes store their ids themselves and are used bare: ``IndexIDMap`` renumbers on
removal in a way only flat indexes follow (an IVF behind it returns the wrong ids after
a delete). They must be trained, which needs enough vectors: at least one per list, and
256 per PQ codebook; too few is a clear error before anything is replaced.
"""

from __future__ import annotations

import faiss
import numpy as np

from searchkit.errors import ConfigError
from searchkit.vectors.base import VectorBackend, _as_ids

__all__ = ["IVFBackend", "training_problem"]

PQ_CENTROIDS = 256


def training_problem(index: faiss.Index, description: str, count: int) -> str | None:
    """Why ``count`` vectors cannot train ``index``, or None if they can."""
    ivf = faiss.extract_index_ivf(index)
    if count < ivf.nlist:
        return (
            f"{description} needs at least {ivf.nlist:,} stored vectors to train its {ivf.nlist:,} lists, "
            f"and the index holds {count:,}; use fewer lists (e.g. 'IVF,Flat', which sizes them to the "
            f"collection) or add documents first"
        )
    if "PQ" in description and count < PQ_CENTROIDS:
        return (
            f"{description} needs at least {PQ_CENTROIDS} stored vectors to train its product-quantiser "
            f"codebooks, and the index holds {count:,}; use IVF,Flat or IVF,SQ8 for a collection this small"
        )
    return None


class IVFBackend(VectorBackend):
    # Vectors are not reconstructible by id without a direct map: a filtered subset is
    # scored from the stored embeddings instead.
    holds_full_vectors = False

    @classmethod
    def empty(cls, dimension: int, description: str) -> IVFBackend:
        return cls(dimension, description, faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT))

    def train(self, vectors: np.ndarray, sample_limit: int = 100_000) -> None:
        problem = training_problem(self.index, self.description, len(vectors))
        if problem:
            raise ConfigError(problem)
        sample = vectors
        if len(vectors) > sample_limit:
            sample = vectors[np.random.default_rng(0).choice(len(vectors), sample_limit, replace=False)]
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def held_ids(self) -> np.ndarray:
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
            for number in range(self.index.nlist)
            if lists.list_size(number)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_as_ids(ids))

    def _params(self, selector: faiss.IDSelector | None, k: int, widening: int) -> faiss.SearchParameters:
        return faiss.SearchParametersIVF(nprobe=self.nprobe * widening, sel=selector)
