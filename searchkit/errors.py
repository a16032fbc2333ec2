"""The exceptions searchkit raises on purpose.

Every error a user can cause derives from :class:`SearchkitError`, so the CLI can print
its one-line message and exit instead of showing a traceback. Messages say what is
wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "SearchkitError",
    "ConfigError",
    "IndexNotFoundError",
    "IndexCorruptError",
    "IndexLockedError",
    "ModelMismatchError",
    "StoreWriteError",
    "QueryError",
    "FilterError",
    "ReaderError",
    "ShardUnavailableError",
]


class SearchkitError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(SearchkitError, ValueError):
    """A setting is invalid (chunk size, model name, field mapping...)."""


class IndexNotFoundError(SearchkitError):
    """The index directory does not exist or holds no index."""


class IndexCorruptError(SearchkitError):
    """The index directory exists but its manifest or store cannot be read."""


class IndexLockedError(SearchkitError):
    """Another process holds the index's write lock."""


class ModelMismatchError(SearchkitError):
    """The embedding model in use differs from the one the index was built with."""


class QueryError(SearchkitError, ValueError):
    """A query is empty, too long, or otherwise unusable."""


class FilterError(SearchkitError, ValueError):
    """A metadata filter names an unknown field or operator, or is malformed."""


class ReaderError(SearchkitError):
    """A question-answering reader cannot be loaded or used (not a QA model, untrained head...)."""


class StoreWriteError(SearchkitError):
    """The index could not be written (disk full, file-size limit); what was committed before is intact."""


class ShardUnavailableError(SearchkitError):
    """A shard of a sharded collection did not answer: the results would be incomplete, so there are none."""
