"""searchkit: local-first semantic search.

Index a folder of documents, search it by meaning, and measure how good the results
are. The public API is re-exported here; see the README for a tour.
"""

from searchkit.config import ChunkingConfig, IndexConfig, ModelIdentity, VectorConfig
from searchkit.datasets import BeirDataset, DatasetError, DatasetProblem, load_beir
from searchkit.document import Document, Problem
from searchkit.embedding import Embedder, SentenceTransformerEmbedder, load_embedder
from searchkit.errors import (
    ConfigError,
    FilterError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    QueryError,
    SearchkitError,
)
from searchkit.index import DeleteReport, Hit, Index, IngestReport
from searchkit.metrics import Evaluation, evaluate_run
from searchkit.sources import FieldMap, SourceOptions, read_sources

__version__ = "0.1.0"

__all__ = [
    "BeirDataset",
    "ChunkingConfig",
    "ConfigError",
    "DatasetError",
    "DatasetProblem",
    "DeleteReport",
    "Document",
    "Embedder",
    "Evaluation",
    "FieldMap",
    "FilterError",
    "Hit",
    "Index",
    "IndexConfig",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IngestReport",
    "ModelIdentity",
    "ModelMismatchError",
    "Problem",
    "QueryError",
    "SearchkitError",
    "SentenceTransformerEmbedder",
    "SourceOptions",
    "VectorConfig",
    "evaluate_run",
    "load_beir",
    "load_embedder",
    "read_sources",
]
