"""Searching a sharded collection: fan a query out to every shard, merge, and fuse after the merge.

:class:`ShardedIndex` has the search side of the :class:`~searchkit.index.Index` facade
(``search``, ``search_batch``, ``search_vectors``, ``ask``, ``get``, ``documents``,
``info``, ``len``), so ``searchkit serve``'s app, its web page and
:class:`~searchkit.Client` work on it unchanged. How each mode stays what one unsharded
index would answer:

- dense: the query is embedded once, here; each shard returns its exact top k, and the
  top k of their union is the unsharded top k, with the same scores.
- lexical: BM25 needs collection-wide numbers (chunk count, average length, each term's
  document frequency). Each shard reports its own for the query's terms, they are summed
  here, and every shard scores with the sums, so a chunk's score is the one it has in the
  unsharded index.
- hybrid: each shard gives its candidates with both of their scores (lexical ones with the
  collection's BM25 numbers); the union over the shards holds the unsharded candidates, and
  :func:`~searchkit.retrieval.hybrid_rank` fuses it (and runs the feedback round) exactly as
  for one index. The text of the final hits is then read from their shards.
- filters are checked here against the collection's field types and applied in every
  shard, before ranking.

A shard that does not answer makes the whole search fail with
:class:`~searchkit.errors.ShardUnavailableError` naming it: never fewer results than asked.

Chunk ids of a shard are its own SQLite keys; a hit's ``chunk_id`` here is
``local id × shards + shard number``, unique over the collection.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from searchkit.config import IndexConfig
from searchkit.embedding import Embedder, encode_queries, load_embedder
from searchkit.errors import QueryError, SearchkitError
from searchkit.filters import Where, compile_filter, compile_where
from searchkit.index import QA_CANDIDATES, Answering, DocumentPage, Hit, Index, check_k, check_query, search_options
from searchkit.lexical import TermStatistics
from searchkit.retrieval import FEEDBACK_CHUNKS, HYBRID_WEIGHT, Candidates, Fusion, Mode, Ranking, fuse, hybrid_rank
from searchkit.state import read_manifest
from searchkit.store import StoredDocument

from searchkit.distributed.sharding import ShardLayout, shard_of

__all__ = ["ShardSearcher", "ShardClient", "Pending", "LocalShard", "ShardedIndex", "query_embedder"]


class _ShardIndex(Index):
    """One shard's index, whose filters compile against the field types of the whole collection.

    A shard may hold none of the documents with some field; the unsharded index knows the
    field, so a filter on it is valid and simply matches nothing in this shard.
    """

    collection_fields: dict[str, frozenset[str]] = {}

    def _condition(self, where: Where | None) -> Any:
        return compile_filter(where, self.collection_fields) if where else None


class ShardSearcher:
    """One shard, opened where it is served: plain data in, plain data out (so it can run in a Ray replica)."""

    def __init__(self, path: str, field_types: dict[str, list[str]], number: int = 0) -> None:
        self.path = path
        self.number = number
        self.index = _ShardIndex.open(path)
        self.index.collection_fields = {name: frozenset(kinds) for name, kinds in field_types.items()}

    def summary(self) -> dict[str, Any]:
        info = self.index.info()
        return {"path": self.path, "number": self.number, "counts": info["counts"], "config": info["config"],
                "vector_index": info["vector_index"], "notices": info["notices"], "size_bytes": info["size_bytes"]}

    def dense(self, vectors: np.ndarray, k: int, where: Where | None) -> list[list[Hit]]:
        return self.index.search_vectors(vectors, k, where=where)

    def term_statistics(self, queries: list[str]) -> list[TermStatistics]:
        return self.index.term_statistics(queries)

    def lexical(
        self, queries: list[str], k: int, where: Where | None, statistics: list[TermStatistics]
    ) -> list[list[Hit]]:
        return self.index.search_batch(queries, k, where=where, mode=Mode.LEXICAL, statistics=statistics)

    def candidates(
        self, vectors: np.ndarray, queries: list[str], depth: int, where: Where | None, statistics: list[TermStatistics],
        weight: float = HYBRID_WEIGHT, likely: int = 0,
    ) -> list[tuple[Candidates, np.ndarray, np.ndarray]]:
        """Each query's candidates here, with the ids and vectors of its ``likely`` best by this shard's own fusion.

        The router's feedback round needs the vectors of the collection's top fused chunks;
        they are nearly always among each shard's own top few, so sending those along saves
        a round trip (the router asks for any that are not).
        """
        found = self.index.hybrid_candidates(vectors, queries, depth, where=where, statistics=statistics)
        none = np.zeros(0, dtype=np.int64), np.zeros((0, self.index.config.model.dimension), dtype=np.float32)
        if not likely:
            return [(candidates, *none) for candidates in found]
        tops = [[chunk_id for chunk_id, _ in fuse(c, Fusion.WEIGHTED, weight, depth, likely)] for c in found]
        rows = self.index.embeddings(tops)
        return [(c, np.array(top, dtype=np.int64), row) if len(row) == len(top) else (c, *none)
                for c, top, row in zip(found, tops, rows)]

    def embeddings(self, ids: list[list[int]]) -> list[np.ndarray]:
        return self.index.embeddings(ids)

    def hits(self, rankings: list[Ranking]) -> list[list[Hit]]:
        return self.index.hits(rankings)

    def document(self, doc_id: str) -> StoredDocument | None:
        return self.index.get(doc_id)

    def documents(self, limit: int, where: Where | None) -> DocumentPage:
        return self.index.documents(0, limit, where=where)

    def count(self) -> int:
        return len(self.index)


class Pending(Protocol):
    """A call under way; ``result`` waits for it, raising :class:`ShardUnavailableError` if its shard did not answer."""

    def result(self) -> Any: ...


class ShardClient(Protocol):
    """How the router reaches one shard: ``submit`` starts a call of a :class:`ShardSearcher` method."""

    name: str

    def submit(self, method: str, *args: Any) -> Pending: ...


class _Done:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class LocalShard:
    """A shard searched in this process (no Ray): for one machine, tests and benchmarks."""

    def __init__(self, searcher: ShardSearcher) -> None:
        self.searcher = searcher
        self.name = f"shard {searcher.number} ({searcher.path})"

    def submit(self, method: str, *args: Any) -> Pending:
        return _Done(getattr(self.searcher, method)(*args))


class ShardedIndex(Answering):
    """A sharded collection searched as one index; see the module docstring.

    ``shards`` are the clients of the layout's shards, in order; ``embedder`` embeds
    queries (once, for every shard) and is what the question-answering reader uses.
    """

    lock_timeout = 0.0

    def __init__(self, path: str | Path, layout: ShardLayout, shards: Sequence[ShardClient], embedder: Embedder) -> None:
        if len(shards) != layout.shards:
            raise SearchkitError(f"{path} has {layout.shards} shards but {len(shards)} were given")
        self.path = Path(path)
        self.layout = layout
        self.shards = list(shards)
        self.embedder = embedder
        self.config: IndexConfig = read_manifest(layout.paths(self.path)[0])
        self.field_types = {name: frozenset(kinds) for name, kinds in layout.field_types.items()}

    @classmethod
    def open_local(cls, path: str | Path, *, model: str | Embedder | None = None, precision: str = "auto") -> ShardedIndex:
        """The shards in ``path`` (made by :func:`~searchkit.distributed.shard_index`), searched in this process."""
        layout = ShardLayout.read(path)
        searchers = [ShardSearcher(str(p), layout.field_types, n) for n, p in enumerate(layout.paths(Path(path)))]
        return cls(path, layout, [LocalShard(s) for s in searchers], query_embedder(searchers[0].index.config, model, precision))

    def close(self) -> None:
        for shard in self.shards:
            searcher = getattr(shard, "searcher", None)
            if searcher is not None:
                searcher.index.close()

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def notices(self) -> list[str]:
        return [notice for summary in self._summaries() for notice in summary["notices"]]

    # Fan-out

    def _submit(self, method: str, *args: Any) -> list[Pending]:
        """``method`` started on every shard at once."""
        return [shard.submit(method, *args) for shard in self.shards]

    def _all(self, method: str, *args: Any) -> list[Any]:
        """``method``'s answer from every shard; the first shard that fails fails the whole call, by name."""
        return [call.result() for call in self._submit(method, *args)]

    def _summaries(self) -> list[dict[str, Any]]:
        return self._all("summary")

    # Searching

    def search(self, query: str, k: int = 10, **options: Any) -> list[Hit]:
        return self.search_batch([query], k, **options)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        fusion: Fusion | str | None = None,
        hybrid_weight: float | None = None,
        feedback: float | None = None,
        rerank: str | None = None,
    ) -> list[list[Hit]]:
        """As :meth:`searchkit.Index.search_batch`, over every shard."""
        if rerank not in (None, "qa"):
            raise QueryError(f"unknown rerank {rerank!r}; use 'qa' or leave it out")
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries; use search() for one")
        queries = [check_query(query) for query in queries]
        check_k(k)
        mode, fusion, hybrid_weight, feedback = search_options(self.config.search, mode, fusion, hybrid_weight, feedback)
        compile_where(where, self.field_types)  # a bad filter is the user's error, said once, before any fan-out
        if not queries:
            return []
        if rerank == "qa":
            candidates = self.search_batch(queries, max(k, QA_CANDIDATES), where=where, mode=mode, fusion=fusion,
                                           hybrid_weight=hybrid_weight, feedback=feedback)
            return self._reranked(queries, candidates, k)
        if mode is Mode.DENSE:
            return self._dense(encode_queries(self.embedder, queries), k, where)
        if mode is Mode.LEXICAL:
            return self._lexical(queries, k, where)
        likely = 2 * FEEDBACK_CHUNKS if feedback > 0 and fusion is Fusion.WEIGHTED else 0
        source = _ShardedCandidates(self, queries, where, self._statistics(queries), hybrid_weight, likely)
        return self._hits(hybrid_rank(source, encode_queries(self.embedder, queries), k, fusion, hybrid_weight, feedback))

    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, where: Where | None = None) -> list[list[Hit]]:
        """Dense search with query vectors you embedded yourself, as :meth:`searchkit.Index.search_vectors`."""
        check_k(k)
        compile_where(where, self.field_types)
        return self._dense(np.asarray(vectors, dtype=np.float32), k, where)

    def _dense(self, vectors: np.ndarray, k: int, where: Where | None) -> list[list[Hit]]:
        return self._merged(self._all("dense", vectors, k, where), k)

    def _statistics(self, queries: list[str]) -> list[TermStatistics]:
        """Each query's BM25 numbers over the whole collection: every shard's, summed."""
        per_shard = self._all("term_statistics", queries)
        return [sum(column[1:], column[0]) for column in zip(*per_shard)]

    def _lexical(self, queries: list[str], k: int, where: Where | None) -> list[list[Hit]]:
        return self._merged(self._all("lexical", queries, k, where, self._statistics(queries)), k)

    def _hits(self, rankings: list[Ranking]) -> list[list[Hit]]:
        """Hits for rankings of collection-wide chunk ids, each read from its shard; scores and ranks are the rankings'."""
        count = len(self.shards)
        local = [[[(chunk_id // count, score) for chunk_id, score in ranking if chunk_id % count == number]
                  for ranking in rankings] for number in range(count)]
        calls = [shard.submit("hits", rows) for shard, rows in zip(self.shards, local)]
        found = {(row, hit.chunk_id * count + number): hit
                 for number, call in enumerate(calls) for row, hits in enumerate(call.result()) for hit in hits}
        for row, ranking in enumerate(rankings):
            for chunk_id, _ in ranking:
                if (row, chunk_id) not in found:  # fewer hits than ranked would be a silent wrong answer
                    raise SearchkitError(
                        f"{self.shards[chunk_id % count].name} changed while it was searched (a chunk it ranked is "
                        "gone); a sharded collection is read-only: shard the source index again, then search"
                    )
        return [[replace(found[row, chunk_id], chunk_id=chunk_id, rank=rank, score=score)
                 for rank, (chunk_id, score) in enumerate(ranking, start=1)]
                for row, ranking in enumerate(rankings)]

    def _merged(self, per_shard: list[list[list[Hit]]], k: int) -> list[list[Hit]]:
        """Each query's hits over all shards: the best k by score (ties by collection-wide chunk id), ranked anew."""
        count = len(self.shards)
        merged = []
        for shard_hits in zip(*per_shard):
            hits = [replace(hit, chunk_id=hit.chunk_id * count + number)
                    for number, hits in enumerate(shard_hits) for hit in hits]
            best = heapq.nsmallest(k, hits, key=lambda hit: (-hit.score, hit.chunk_id))
            merged.append([replace(hit, rank=rank) for rank, hit in enumerate(best, start=1)])
        return merged

    # Inspecting

    def get(self, doc_id: str) -> StoredDocument | None:
        """The document from the one shard its id hashes to."""
        shard = self.shards[shard_of(doc_id, len(self.shards))]
        return shard.submit("document", doc_id).result()

    def documents(self, offset: int = 0, limit: int = 100, *, where: Where | None = None) -> DocumentPage:
        """A page of the matching documents in id order, merged from every shard's first ``offset + limit``."""
        for name, value in (("offset", offset), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise QueryError(f"{name} must be a non-negative integer, got {value!r}")
        compile_where(where, self.field_types)
        pages = self._all("documents", offset + limit, where)
        merged = heapq.merge(*(page.documents for page in pages), key=lambda document: document.doc_id)
        listed = list(merged)[offset:offset + limit]
        return DocumentPage(sum(page.total for page in pages), offset, listed)

    def info(self) -> dict[str, Any]:
        """The collection's configuration and counts (summed over the shards), and each shard's own."""
        summaries = self._summaries()
        counts = {key: sum(s["counts"][key] for s in summaries) for key in ("documents", "chunks", "vectors")}
        return {
            "path": str(self.path),
            "config": self.config.to_dict(),
            "counts": counts,
            "vector_index": summaries[0]["vector_index"],
            "metadata_fields": {name: sorted(kinds) for name, kinds in sorted(self.field_types.items())},
            "generation": None,
            "notices": [notice for s in summaries for notice in s["notices"]],
            "size_bytes": {
                name: sum(s["size_bytes"].get(name, 0) for s in summaries)
                for name in sorted({name for s in summaries for name in s["size_bytes"]})
            },
            "shards": [{"name": shard.name, "counts": s["counts"]} for shard, s in zip(self.shards, summaries)],
        }

    def __len__(self) -> int:
        return sum(self._all("count"))

    # Writing goes to the shards' own indexes, not through the router

    def add(self, *_: Any, **__: Any) -> Any:
        raise SearchkitError("a sharded collection is searched here, not written; write the source index and shard it again")

    delete = add


class _ShardedCandidates:
    """The :class:`~searchkit.retrieval.CandidateSource` of a sharded collection: each shard's candidates, joined.

    The first round also brings each shard's ``likely`` feedback chunks with their vectors,
    so the feedback round usually needs no call of its own.
    """

    def __init__(
        self, index: ShardedIndex, queries: list[str], where: Where | None, statistics: list[TermStatistics],
        weight: float, likely: int,
    ) -> None:
        self.index = index
        self.queries = queries
        self.where = where
        self.statistics = statistics
        self.weight = weight
        self.likely = likely
        self.known: dict[tuple[int, int], np.ndarray] = {}  # (query, collection-wide chunk id): its vector

    def candidates(self, vectors: np.ndarray, depth: int) -> list[Candidates]:
        count = len(self.index.shards)
        per_shard = self.index._all(
            "candidates", vectors, self.queries, depth, self.where, self.statistics, self.weight, self.likely
        )
        self.likely = 0  # only the first round's top chunks feed back
        joined = []
        for row, parts in enumerate(zip(*per_shard)):
            for number, (_, ids, rows) in enumerate(parts):
                self.known.update(((row, int(i) * count + number), vector) for i, vector in zip(ids, rows))
            joined.append(Candidates.joined([replace(part, ids=part.ids * count + number)
                                             for number, (part, _, _) in enumerate(parts)]))
        return joined

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        count = len(self.index.shards)
        missing = [[i for i in chunk_ids if (row, i) not in self.known] for row, chunk_ids in enumerate(ids)]
        if any(missing):
            calls = [shard.submit("embeddings", [[i // count for i in row if i % count == number] for row in missing])
                     for number, shard in enumerate(self.index.shards)]
            for number, call in enumerate(calls):
                for row, vectors in enumerate(call.result()):
                    wanted = [i for i in missing[row] if i % count == number]
                    if len(vectors) == len(wanted):  # a chunk deleted meanwhile has none: it is left out below
                        self.known.update(((row, i), vector) for i, vector in zip(wanted, vectors))
        dimension = self.index.config.model.dimension
        return [np.array([self.known[row, i] for i in chunk_ids if (row, i) in self.known], dtype=np.float32).reshape(-1, dimension)
                for row, chunk_ids in enumerate(ids)]


def query_embedder(config: IndexConfig, model: str | Embedder | None, precision: str) -> Embedder:
    """The embedder of queries: the one given, else the collection's model, checked against it."""
    from searchkit.errors import ModelMismatchError

    if isinstance(model, Embedder):
        embedder = model
    else:
        embedder = load_embedder(model or config.model.name, precision=precision, passages=config.model.precision)
    if not embedder.identity.same_vectors_as(config.model):
        raise ModelMismatchError(
            f"the shards were built with {config.model.describe()}, but the model in use is {embedder.identity.describe()}"
        )
    return embedder
