"""searchkit: local-first semantic search.

Index a folder of documents, search it by meaning, and measure how good the results
are. The public API is re-exported here; see the README for a tour. Importing it loads
no model and no torch: embedders load their model on first use.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Where each public name lives; imported on first use, so `import searchkit` (and every command that
# needs only part of it, such as `searchkit info`) loads only the modules it touches.
_EXPORTS = {
    "Answer": "searchkit.reader",
    "BeirDataset": "searchkit.datasets",
    "CachedEmbedder": "searchkit.cache",
    "ChunkingConfig": "searchkit.config",
    "Client": "searchkit.client",
    "ConfigError": "searchkit.errors",
    "DatasetError": "searchkit.datasets",
    "DatasetProblem": "searchkit.datasets",
    "DeleteReport": "searchkit.index",
    "Document": "searchkit.document",
    "DocumentPage": "searchkit.index",
    "Embedder": "searchkit.embedding",
    "EvalResult": "searchkit.evaluation",
    "EvalSetting": "searchkit.evaluation",
    "Evaluation": "searchkit.metrics",
    "FieldMap": "searchkit.sources",
    "FilterError": "searchkit.errors",
    "Fusion": "searchkit.retrieval",
    "Hit": "searchkit.index",
    "Index": "searchkit.index",
    "IndexConfig": "searchkit.config",
    "IndexCorruptError": "searchkit.errors",
    "IndexLockedError": "searchkit.errors",
    "IndexNotFoundError": "searchkit.errors",
    "IngestReport": "searchkit.index",
    "Mode": "searchkit.retrieval",
    "ModelIdentity": "searchkit.config",
    "ModelMismatchError": "searchkit.errors",
    "Passage": "searchkit.reader",
    "Problem": "searchkit.document",
    "QueryError": "searchkit.errors",
    "Reader": "searchkit.reader",
    "ReaderError": "searchkit.errors",
    "RerankFit": "searchkit.rerank_fit",
    "SearchConfig": "searchkit.config",
    "SearchkitError": "searchkit.errors",
    "SentenceReader": "searchkit.reader",
    "SentenceTransformerEmbedder": "searchkit.embedding",
    "ShardUnavailableError": "searchkit.errors",
    "ShardedIndex": "searchkit.distributed.router",
    "ServerError": "searchkit.client",
    "SourceOptions": "searchkit.sources",
    "Sources": "searchkit.sources",
    "SpanReader": "searchkit.reader",
    "SquadData": "searchkit.squad",
    "SquadError": "searchkit.squad",
    "StoreWriteError": "searchkit.errors",
    "StoredDocument": "searchkit.store",
    "TrainReport": "searchkit.training",
    "TrainingInterrupted": "searchkit.training",
    "VectorConfig": "searchkit.config",
    "evaluate_index": "searchkit.evaluation",
    "evaluate_open_domain": "searchkit.evaluation",
    "evaluate_run": "searchkit.metrics",
    "evaluate_settings": "searchkit.evaluation",
    "fit_rerank_weight": "searchkit.rerank_fit",
    "load_beir": "searchkit.datasets",
    "load_embedder": "searchkit.embedding",
    "load_reader": "searchkit.reader",
    "load_squad": "searchkit.squad",
    "read_sources": "searchkit.sources",
    "shard_index": "searchkit.distributed.sharding",
    "train_reader": "searchkit.training",
}


if TYPE_CHECKING:
    from searchkit.reader import Answer
    from searchkit.datasets import BeirDataset
    from searchkit.cache import CachedEmbedder
    from searchkit.config import ChunkingConfig
    from searchkit.client import Client
    from searchkit.errors import ConfigError
    from searchkit.datasets import DatasetError
    from searchkit.datasets import DatasetProblem
    from searchkit.index import DeleteReport
    from searchkit.document import Document
    from searchkit.index import DocumentPage
    from searchkit.embedding import Embedder
    from searchkit.evaluation import EvalResult
    from searchkit.evaluation import EvalSetting
    from searchkit.metrics import Evaluation
    from searchkit.sources import FieldMap
    from searchkit.errors import FilterError
    from searchkit.retrieval import Fusion
    from searchkit.index import Hit
    from searchkit.index import Index
    from searchkit.config import IndexConfig
    from searchkit.errors import IndexCorruptError
    from searchkit.errors import IndexLockedError
    from searchkit.errors import IndexNotFoundError
    from searchkit.index import IngestReport
    from searchkit.retrieval import Mode
    from searchkit.config import ModelIdentity
    from searchkit.errors import ModelMismatchError
    from searchkit.reader import Passage
    from searchkit.document import Problem
    from searchkit.errors import QueryError
    from searchkit.reader import Reader
    from searchkit.errors import ReaderError
    from searchkit.rerank_fit import RerankFit, fit_rerank_weight
    from searchkit.config import SearchConfig
    from searchkit.errors import SearchkitError
    from searchkit.reader import SentenceReader
    from searchkit.embedding import SentenceTransformerEmbedder
    from searchkit.client import ServerError
    from searchkit.errors import ShardUnavailableError
    from searchkit.distributed.router import ShardedIndex
    from searchkit.sources import SourceOptions
    from searchkit.sources import Sources
    from searchkit.reader import SpanReader
    from searchkit.squad import SquadData
    from searchkit.squad import SquadError
    from searchkit.errors import StoreWriteError
    from searchkit.store import StoredDocument
    from searchkit.training import TrainingInterrupted, TrainReport
    from searchkit.config import VectorConfig
    from searchkit.evaluation import evaluate_index
    from searchkit.evaluation import evaluate_open_domain
    from searchkit.metrics import evaluate_run
    from searchkit.evaluation import evaluate_settings
    from searchkit.datasets import load_beir
    from searchkit.embedding import load_embedder
    from searchkit.reader import load_reader
    from searchkit.squad import load_squad
    from searchkit.sources import read_sources
    from searchkit.distributed.sharding import shard_index
    from searchkit.training import train_reader

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
    "RerankFit",
    "SearchkitError",
    "SentenceReader",
    "SentenceTransformerEmbedder",
    "ServerError",
    "ShardUnavailableError",
    "ShardedIndex",
    "SourceOptions",
    "Sources",
    "SpanReader",
    "StoredDocument",
    "SquadData",
    "SquadError",
    "TrainReport",
    "TrainingInterrupted",
    "SearchConfig",
    "VectorConfig",
    "evaluate_index",
    "evaluate_open_domain",
    "evaluate_run",
    "evaluate_settings",
    "fit_rerank_weight",
    "load_beir",
    "load_embedder",
    "load_reader",
    "load_squad",
    "read_sources",
    "shard_index",
    "train_reader",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata only when asked
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("searchkit")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            return "0+unknown"
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'searchkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
