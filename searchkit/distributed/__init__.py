"""searchkit on a Ray cluster: embedding spread over many workers, and sharded, replicated search.

Everything here reuses the library: a distributed ingest is an ordinary
:class:`~searchkit.ingest.Ingestor` run whose embedder sends its batches to Ray Data
(:class:`RayEmbedder`); a shard is an ordinary index (:func:`shard_index`); a sharded
collection is searched through :class:`ShardedIndex`, which has the search side of the
:class:`~searchkit.index.Index` facade, so ``searchkit serve``'s app, web page and
:class:`~searchkit.Client` work on it unchanged. Ray (``pip install searchkit[ray]``) is
imported only by the parts that need it: sharding and searching local shards do not.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RayEmbedder": "searchkit.distributed.embedding",
    "connect": "searchkit.distributed.runtime",
    "shard_index": "searchkit.distributed.sharding",
    "shard_of": "searchkit.distributed.sharding",
    "ShardLayout": "searchkit.distributed.sharding",
    "ShardReport": "searchkit.distributed.sharding",
    "ShardedIndex": "searchkit.distributed.router",
    "LocalShard": "searchkit.distributed.router",
    "ShardSearcher": "searchkit.distributed.router",
    "ShardUnavailableError": "searchkit.errors",
    "deploy_shards": "searchkit.distributed.serving",
    "RayShard": "searchkit.distributed.serving",
    "open_on_ray": "searchkit.distributed.serving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'searchkit.distributed' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
