"""Building, saving and loading vector backends from a factory description.

``Flat``, ``HNSW<M>``, ``IVF[<lists>],Flat|SQ8|PQ<m>`` and ``auto`` are the descriptions a
user can ask for; :func:`resolve_description` turns one into the concrete FAISS string
for a collection of a given size, and :func:`build` makes the backend that owns it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from searchkit.config import DESCRIPTION_PATTERN, check_description
from searchkit.errors import ConfigError
from searchkit.vectors.base import VectorBackend
from searchkit.vectors.flat import FlatBackend
from searchkit.vectors.hnsw import HNSWBackend
from searchkit.vectors.ivf import IVFBackend, training_problem

__all__ = ["AUTO_FLAT_LIMIT", "resolve_description", "kind_of", "empty", "build", "build_problem", "load"]

# `auto` keeps exact search up to this many vectors (about 60 ms a query at 2 cores), HNSW above.
AUTO_FLAT_LIMIT = 300_000
AUTO_APPROXIMATE = "HNSW32"
# IVF lists are sized so that each holds at least this many training points.
POINTS_PER_LIST = 39


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
        lists = max(1, min(int(4 * math.sqrt(max(count, 1))), count // POINTS_PER_LIST or 1, 65536))
        description = f"IVF{lists},{match.group(4)}"
    match = DESCRIPTION_PATTERN.match(description)
    if match and match.group(5) and dimension % int(match.group(5)):
        raise ConfigError(f"PQ{match.group(5)} needs a sub-quantizer count that divides the dimension {dimension}")
    return description


def kind_of(description: str) -> str:
    """The family of a description, ignoring sizes chosen for the collection (``IVF,SQ8`` for ``IVF512,SQ8``)."""
    match = DESCRIPTION_PATTERN.match(description)
    if match and match.group(4):
        return f"IVF,{match.group(4)}"
    return description


def _backend_class(description: str) -> type[FlatBackend] | type[HNSWBackend] | type[IVFBackend]:
    if description.startswith("HNSW"):
        return HNSWBackend
    if description.startswith("IVF"):
        return IVFBackend
    return FlatBackend


def empty(dimension: int, description: str = "Flat") -> VectorBackend:
    """A new, untrained backend of a concrete description."""
    return _backend_class(description).empty(dimension, description)


def build(dimension: int, description: str, ids: np.ndarray, vectors: np.ndarray) -> VectorBackend:
    """A backend of the kind ``description`` asks for over ``vectors``, trained on them if it needs it.

    Raises ConfigError (and builds nothing) when the vectors cannot train that kind.
    """
    backend = empty(dimension, resolve_description(description, len(ids), dimension))
    if isinstance(backend, IVFBackend):
        backend.train(vectors)
    backend.add(ids, vectors)
    return backend


def load(dimension: int, description: str, path: Path, state: dict[str, Any]) -> VectorBackend:
    """A backend read back from what :meth:`VectorBackend.write` and :meth:`VectorBackend.state` saved.

    Raises ValueError when the file is not a FAISS index of the expected kind and shape.
    """
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ValueError(f"not a readable FAISS index ({str(exc).strip().splitlines()[-1]})") from exc
    cls = _backend_class(description)
    expected = faiss.IndexIVF if cls is IVFBackend else faiss.IndexIDMap2
    if index.d != dimension or not isinstance(index, expected):
        raise ValueError(f"a {type(index).__name__} of dimension {index.d}, not {description} of dimension {dimension}")
    backend = cls(dimension, description, index)
    backend.restore(state)
    return backend


def build_problem(description: str, count: int, dimension: int) -> str | None:
    """Why ``count`` vectors cannot build ``description`` (too few to train it), or None; cheap."""
    concrete = resolve_description(description, count, dimension)
    if not concrete.startswith("IVF"):
        return None
    return training_problem(empty(dimension, concrete).index, concrete, count)
