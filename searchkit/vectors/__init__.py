"""The FAISS side: vector backends keyed by chunk id, one module per kind.

``base`` defines the interface (add, remove, search with an id set, serialise), ``flat``,
``hnsw`` and ``ivf`` implement it with their own delete semantics, and ``factory`` builds
one from a description such as ``Flat``, ``HNSW32`` or ``IVF,SQ8``.
"""

from searchkit.vectors.base import Fetch, VectorBackend
from searchkit.vectors.factory import AUTO_FLAT_LIMIT, build, build_problem, empty, kind_of, load, resolve_description
from searchkit.vectors.flat import FlatBackend
from searchkit.vectors.hnsw import HNSWBackend
from searchkit.vectors.ivf import IVFBackend

__all__ = [
    "AUTO_FLAT_LIMIT",
    "Fetch",
    "FlatBackend",
    "HNSWBackend",
    "IVFBackend",
    "VectorBackend",
    "build",
    "build_problem",
    "empty",
    "kind_of",
    "load",
    "resolve_description",
]
