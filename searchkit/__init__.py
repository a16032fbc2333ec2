"""searchkit: local-first semantic search.

Index a folder of documents, search it by meaning, and measure how good the results
are. The public API is re-exported here; see the README for a tour. Importing it loads
no model and no torch: embedders load their model on first use.
"""

from importlib.metadata import PackageNotFoundError, version

from searchkit.cache import CachedEmbedder
from searchkit.client import Client, ServerError
from searchkit.config import ChunkingConfig, IndexConfig, ModelIdentity, SearchConfig, VectorConfig
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
    StoreWriteError,
    QueryError,
    ReaderError,
    SearchkitError,
)
from searchkit.evaluation import EvalResult, EvalSetting, evaluate_index, evaluate_open_domain, evaluate_settings
from searchkit.index import DeleteReport, DocumentPage, Hit, Index, IngestReport
from searchkit.metrics import Evaluation, evaluate_run
from searchkit.reader import Answer, Passage, Reader, SentenceReader, SpanReader, load_reader
from searchkit.retrieval import Fusion, Mode
from searchkit.sources import FieldMap, SourceOptions, Sources, read_sources
from searchkit.squad import SquadData, SquadError, load_squad
from searchkit.store import StoredDocument
from searchkit.training import TrainReport, train_reader

try:
    __version__ = version("searchkit")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Answer",
    "BeirDataset",
    "CachedEmbedder",
    "ChunkingConfig",
    "Client",
    "ConfigError",
    "DatasetError",
    "DatasetProblem",
    "DeleteReport",
    "DocumentPage",
    "Document",
    "Embedder",
    "EvalResult",
    "EvalSetting",
    "Evaluation",
    "FieldMap",
    "FilterError",
    "Fusion",
    "Hit",
    "Index",
    "IndexConfig",
    "IndexCorruptError",
    "IndexLockedError",
    "StoreWriteError",
    "IndexNotFoundError",
    "IngestReport",
    "Mode",
    "ModelIdentity",
    "ModelMismatchError",
    "Passage",
    "Problem",
    "QueryError",
    "Reader",
    "ReaderError",
    "SearchkitError",
    "SentenceReader",
    "SentenceTransformerEmbedder",
    "ServerError",
    "SourceOptions",
    "Sources",
    "SpanReader",
    "StoredDocument",
    "SquadData",
    "SquadError",
    "TrainReport",
    "SearchConfig",
    "VectorConfig",
    "evaluate_index",
    "evaluate_open_domain",
    "evaluate_run",
    "evaluate_settings",
    "load_beir",
    "load_embedder",
    "load_reader",
    "load_squad",
    "read_sources",
    "train_reader",
]
