"""The Index: what people hold, a thin facade over the parts that do the work.

:class:`~searchkit.state.IndexState` owns what the directory says about itself (manifest,
vector file, the write lock), :class:`~searchkit.ingest.Ingestor` turns documents into
committed chunks, the store keeps documents, chunks and embeddings, and a vector backend
answers nearest-neighbour queries. The Index ties them together for one directory:
lifecycle, add, delete, reindex, search, ask and info.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from searchkit.config import DEFAULT_MODEL, ChunkingConfig, IndexConfig, ModelIdentity, SearchConfig
from searchkit.document import Document, Problem
from searchkit.embedding import Embedder, load_embedder
from searchkit.errors import ConfigError, ModelMismatchError, QueryError, SearchkitError
from searchkit.filters import Filter, Where, compile_filter
from searchkit.ingest import BATCH_CHARS, DEFAULT_MAX_DOCUMENT_CHARS, Ingestor, IngestReport
from searchkit.lexical import TermStatistics
from searchkit.reader import Answer, Passage, Reader, SentenceReader, best_answers, rerank_hits, rerank_weight
from searchkit.retrieval import Candidates, Fusion, Mode, Ranking, Retriever
from searchkit.state import INDEX_FILES, MANIFEST_FILE, STORE_FILE, IndexDirectory, IndexState, read_manifest
from searchkit.store import Store, StoredDocument
from searchkit.vectors import VectorBackend

log = logging.getLogger("searchkit")

__all__ = ["Index", "Hit", "IngestReport", "DeleteReport", "DocumentPage", "MANIFEST_FILE", "read_manifest"]

E = TypeVar("E", bound=Enum)

MAX_QUERY_CHARS = 4096
# Chunks read by the question-answering reader for ask() and the QA rerank.
QA_CANDIDATES = 20

# How a caller may give chunking: a full config, or only the settings to change from the model's defaults.
ChunkingSpec = ChunkingConfig | Mapping[str, int] | None


@dataclass(frozen=True)
class Hit:
    """One ranked chunk: where it comes from, how well it matches, and its text."""

    rank: int
    score: float
    doc_id: str
    chunk_id: int
    title: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeleteReport:
    deleted: list[str]
    not_found: list[str]
    chunks_removed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DocumentPage:
    """One page of a document listing: how many documents match, and those from ``offset`` on (without text)."""

    total: int
    offset: int
    documents: list[StoredDocument]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chunking_for(model: ModelIdentity, chunking: ChunkingSpec) -> ChunkingConfig:
    """The chunking of a new index: the model's window (less its two special tokens, at most 254) unless set."""
    if isinstance(chunking, ChunkingConfig):
        return chunking
    default = ChunkingConfig(max_tokens=min(254, model.max_seq_length - 2))
    changes = dict(chunking or {})
    unknown = set(changes) - {f.name for f in fields(ChunkingConfig)}
    if unknown:
        raise ConfigError(f"unknown chunking settings {', '.join(sorted(unknown))}; use max_tokens, overlap_tokens, max_chunks")
    if "max_tokens" in changes and "overlap_tokens" not in changes:
        changes["overlap_tokens"] = min(default.overlap_tokens, max(changes["max_tokens"] // 8, 0))
    return replace(default, **changes)


def _check_chunking_matches(path: Path, config: IndexConfig, chunking: ChunkingSpec) -> None:
    """Chunking is fixed when an index is created: a different request is an error, never silently ignored."""
    if chunking is None:
        return
    wanted = asdict(chunking) if isinstance(chunking, ChunkingConfig) else dict(chunking)
    current = asdict(config.chunking)
    differing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if differing:
        asked = ", ".join(f"{k}={v}" for k, v in differing.items())
        has = ", ".join(f"{k}={current.get(k)}" for k in differing)
        raise ConfigError(
            f"the index at {path} was built with {has}, not {asked}; chunking is fixed when an index is created: "
            "leave the option out, or build a new index in another folder"
        )


class Answering:
    """Question answering over anything that searches: the reader, and :meth:`ask` through ``search``.

    Shared by :class:`Index` and the sharded collection (``searchkit.distributed``), which
    differ in how they search, not in how answers are read from the hits.
    """

    embedder: Embedder
    _reader: Reader | None = None
    search: Callable[..., list[Hit]]

    @property
    def reader(self) -> Reader:
        """The question-answering reader for :meth:`ask` and the QA rerank (default: the sentence reader)."""
        if self._reader is None:
            self._reader = SentenceReader(self.embedder)
        return self._reader

    @reader.setter
    def reader(self, reader: Reader) -> None:
        self._reader = reader

    def _reranked(self, queries: Sequence[str], candidates: list[list[Hit]], k: int) -> list[list[Hit]]:
        """The QA rerank: each query's candidates read by the reader, reordered with its weight, the best ``k`` kept."""
        read = self.reader.read_batch(list(queries), [[Passage.from_hit(hit) for hit in hits] for hits in candidates])
        weight = rerank_weight(self.reader)
        return [rerank_hits(hits, answers, weight)[:k] for hits, answers in zip(candidates, read)]

    def ask(
        self,
        question: str,
        k: int = 5,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        candidates: int = QA_CANDIDATES,
    ) -> list[Answer]:
        """The ``k`` best answers to ``question`` read from the best ``candidates`` chunks.

        Each chunk's best answer span is scored by combining its reader score with the
        chunk's retrieval score (both min-max scaled over the candidates, weighted as the
        QA rerank weights them), so an answer needs both a passage that matches and a span
        that answers; ``Answer.score`` is that combined score, in [0, 1].
        """
        check_k(k)
        hits = self.search(question, max(k, candidates), where=where, mode=mode)
        return best_answers(hits, self.reader.read(question, [Passage.from_hit(hit) for hit in hits]), k,
                            rerank_weight(self.reader))


class Index(Answering):
    """A searchable collection of documents on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, state: IndexState, embedder: Embedder, *, lock_timeout: float = 0) -> None:
        self.path = path
        self.embedder = embedder
        self.lock_timeout = lock_timeout
        self._state = state
        self._retriever = Retriever(
            state.store, embedder, lambda: state.backend, state.config.model.dimension, state.lock, lambda: state.generation
        )

    @property
    def config(self) -> IndexConfig:
        return self._state.config

    @property
    def store(self) -> Store:
        return self._state.store

    @property
    def vectors(self) -> VectorBackend:
        """The vector backend now in use (its kind is ``vectors.description``)."""
        return self._state.backend

    @property
    def notices(self) -> list[str]:
        """What was repaired when the index was opened (a lost or lagging vector file, say), in words."""
        return list(self._state.notices)

    # Lifecycle

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        model: str | Embedder = DEFAULT_MODEL,
        chunking: ChunkingSpec = None,
        lock_timeout: float = 0,
        precision: str = "auto",
    ) -> Index:
        """Create a new, empty index directory for documents embedded by ``model``.

        ``chunking`` is a :class:`ChunkingConfig`, or a dict of the settings to change
        from the defaults, which come from the model (its window, less its two special
        tokens, at most 254 word pieces). ``precision`` (``auto``, ``fp32``, ``bf16``) is
        the arithmetic of a model given by name; the one used is recorded in the manifest.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise SearchkitError(f"{path} is a file; give a directory for the index")
        if path.is_dir() and (path / MANIFEST_FILE).exists():
            raise SearchkitError(f"an index already exists at {path}; open it, or delete the directory first")
        strangers = sorted(p.name for p in path.iterdir() if p.name not in INDEX_FILES) if path.is_dir() else []
        if strangers:
            raise SearchkitError(
                f"{path} already holds other files ({', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); "
                "an index needs a folder of its own: give a new or empty folder"
            )
        embedder = load_embedder(model, precision=precision) if isinstance(model, str) else model
        config = IndexConfig(model=embedder.identity, chunking=chunking_for(embedder.identity, chunking))
        path.mkdir(parents=True, exist_ok=True)
        directory = IndexDirectory(path)
        with directory.write_lock(lock_timeout):
            if (path / MANIFEST_FILE).exists():  # another process created it while we waited
                raise SearchkitError(f"an index already exists at {path}; open it, or delete the directory first")
            store = Store(path / STORE_FILE, create=True)
            state = IndexState.create(directory, config, store)
        return cls(path, state, embedder, lock_timeout=lock_timeout)

    @classmethod
    def open(
        cls, path: str | Path, *, model: str | Embedder | None = None, lock_timeout: float = 0, precision: str = "auto"
    ) -> Index:
        """Open an existing index; ``model`` (default: the one it was built with) must match it.

        ``lock_timeout`` is how long writes wait for another writer to finish (0: fail at once).
        ``precision`` is how queries are encoded (``auto``: the fastest that agrees with
        float32); new documents are embedded in the precision the index was built with.
        """
        path = Path(path)
        config = read_manifest(path)
        if isinstance(model, Embedder):
            embedder = model
        else:
            embedder = load_embedder(model or config.model.name, precision=precision, passages=config.model.precision)
        if not embedder.identity.same_vectors_as(config.model):
            raise ModelMismatchError(
                f"the index at {path} was built with {config.model.describe()}, but the model in use is "
                f"{embedder.identity.describe()}; open it with --model {config.model.name!r} or build a new index"
            )
        directory = IndexDirectory(path)
        store = Store(path / STORE_FILE)
        if store.needs_migration:
            with directory.write_lock(lock_timeout):
                store.migrate()
        return cls(path, IndexState.load(directory, config, store), embedder, lock_timeout=lock_timeout)

    @classmethod
    def open_or_create(
        cls,
        path: str | Path,
        *,
        model: str | Embedder | None = None,
        chunking: ChunkingSpec = None,
        lock_timeout: float = 0,
        precision: str = "auto",
    ) -> Index:
        """Open the index at ``path``, or create it; ``chunking`` must match an existing index's."""
        if (Path(path) / MANIFEST_FILE).exists():
            index = cls.open(path, model=model, lock_timeout=lock_timeout, precision=precision)
            _check_chunking_matches(index.path, index.config, chunking)
            return index
        return cls.create(
            path, model=model or DEFAULT_MODEL, chunking=chunking, lock_timeout=lock_timeout, precision=precision
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writing

    def add(
        self,
        documents: Iterable[Document | Mapping[str, Any] | Problem],
        *,
        progress: bool = False,
        max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS,
        batch_chars: int = BATCH_CHARS,
        embeddings: np.ndarray | None = None,
        prune: bool = False,
        embedder: Embedder | None = None,
    ) -> IngestReport:
        """Index documents: new ones are added, changed ones re-embedded, unchanged ones skipped.

        ``documents`` is any iterable, read one batch at a time (about ``batch_chars``
        characters, embedded and committed in one transaction), so a stream of any
        length indexes in bounded memory. It may mix in :class:`Problem` records from a
        reader; they are reported with anything else that could not be indexed.

        With ``prune``, ``documents`` must be a :class:`~searchkit.sources.Sources`:
        documents read before from under its paths that are no longer there (file
        deleted, record removed) are deleted (``report.pruned``), except those of files
        that reported a problem this time.

        ``embeddings`` brings your own vectors: one row per document, in the index's
        dimension. Each document then becomes a single chunk with that vector (it is
        normalised to unit length, as cosine search needs) and nothing is embedded.

        ``embedder`` embeds this ingest's passages instead of the index's own (one with the
        same model, such as :class:`searchkit.distributed.RayEmbedder`, which embeds on a
        Ray cluster); everything else, the single writer included, stays here.
        """
        if embedder is not None and not embedder.identity.same_vectors_as(self.config.model):
            raise ModelMismatchError(
                f"the index at {self.path} was built with {self.config.model.describe()}, but the embedder given is "
                f"{embedder.identity.describe()}"
            )
        with self._writing():
            ingestor = Ingestor(
                self.store, embedder or self.embedder, self.config.chunking, self.config.model.dimension, self._state.apply
            )
            return ingestor.run(
                documents, progress=progress, max_document_chars=max_document_chars, batch_chars=batch_chars,
                embeddings=embeddings, prune=prune,
            )

    def delete(self, doc_ids: Sequence[str]) -> DeleteReport:
        """Remove documents by id; ids not in the index are reported, not errors."""
        with self._writing():
            removed, missing, generation = self.store.delete(list(doc_ids))
            self._state.apply(removed, np.zeros(0, np.int64), np.zeros((0, self.config.model.dimension), np.float32), generation)
        absent = set(missing)
        return DeleteReport(deleted=[d for d in doc_ids if d not in absent], not_found=missing, chunks_removed=len(removed))

    def reindex(
        self, index_type: str | None = None, *, ef_search: int | None = None, nprobe: int | None = None
    ) -> int:
        """Rebuild the FAISS file from the stored embeddings, without re-embedding; returns the vector count.

        ``index_type`` switches the kind of index (``Flat``, ``HNSW32``, ``IVF,Flat``,
        ``IVF,SQ8``, ``IVF,PQ48``, ``auto``...); ``ef_search`` and ``nprobe`` set the
        search-time knobs of approximate indexes. All are recorded in the manifest. If the
        new index cannot be built (too few vectors to train it, say), the error says why
        and the index is left exactly as it was.
        """
        current = self.config.vectors
        wanted = replace(
            current,
            description=index_type or current.description,
            ef_search=ef_search or current.ef_search,
            nprobe=nprobe or current.nprobe,
        )
        with self._writing(save=False):
            self._state.reconfigure(wanted)
        return len(self.vectors)

    def configure_search(self, settings: SearchConfig) -> None:
        """Make ``settings`` the defaults of every later search of this index, recorded in the manifest."""
        with self._writing():
            self._state.config = replace(self._state.config, search=settings)

    @contextmanager
    def _writing(self, save: bool = True) -> Iterator[None]:
        """Hold the write lock, start from the current store state, and save the state after.

        The state is saved even when the body fails part-way: what the store committed
        before the failure is then reflected on disk as well.
        """
        with self._state.directory.write_lock(self.lock_timeout):
            self._state.refresh()
            try:
                yield
            except BaseException:
                if save:
                    try:
                        self._state.save()
                    except Exception as exc:  # the first error is the one to report; the next open repairs and says so
                        log.debug("%s: could not save the vector state after an error (%s)", self.path, exc)
                raise
            if save:
                self._state.save()

    # Searching

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        fusion: Fusion | str | None = None,
        hybrid_weight: float | None = None,
        feedback: float | None = None,
        rerank: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first, among those matching ``where``.

        ``mode`` is ``dense`` (cosine similarity of embeddings), ``lexical`` (BM25 over the
        full-text index) or ``hybrid`` (both rankings fused by ``fusion``: ``weighted``
        normalised scores, dense weighted by ``hybrid_weight``, or ``rrf``, reciprocal rank
        fusion). A hybrid search then moves the query vector ``feedback`` of the way towards
        its top fused chunks and fuses once more (0: once only). Left out, each comes from the
        index's search settings (``config.search``: dense, weighted, 0.6, feedback 0.5 unless
        ``searchkit tune`` chose others; see :mod:`searchkit.retrieval`). Hit scores are the
        mode's own (for weighted hybrid, the mix of z-scores). ``rerank="qa"`` reads the candidates with
        the question-answering reader and reorders them by answer evidence combined with
        the retrieval score (both min-max scaled over the candidates, weighted by the
        reader's ``rerank_weight``: measured by train-reader for a reader it trained, 0.5
        otherwise); the hit scores are then the combined ones.
        """
        return self.search_batch(
            [query], k, where=where, mode=mode, fusion=fusion, hybrid_weight=hybrid_weight, feedback=feedback,
            rerank=rerank,
        )[0]

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
        statistics: Sequence[TermStatistics] | None = None,
    ) -> list[list[Hit]]:
        """Search many queries at once: one batched encode and one FAISS call.

        ``statistics`` (one per query, from :meth:`term_statistics` summed over the shards
        of a collection) make lexical scores those of the whole collection rather than of
        this index alone.
        """
        if statistics is not None and len(statistics) != len(queries):
            raise QueryError(f"statistics must give one entry per query: {len(statistics)} for {len(queries)} queries")
        if rerank not in (None, "qa"):
            raise QueryError(f"unknown rerank {rerank!r}; use 'qa' or leave it out")
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries; use search() for one")
        for query in queries:
            check_query(query)
        check_k(k)
        self._state.refresh()  # first: settings written by another process (searchkit tune) apply to this search
        settings = self.config.search
        mode, fusion, hybrid_weight, feedback = search_options(settings, mode, fusion, hybrid_weight, feedback)
        condition = self._condition(where)
        if not queries:
            return []
        if rerank == "qa":
            candidates = self.search_batch(queries, max(k, QA_CANDIDATES), where=where, mode=mode, fusion=fusion,
                                           hybrid_weight=hybrid_weight, feedback=feedback, statistics=statistics)
            return self._reranked(queries, candidates, k)
        return self._hits(
            lambda: self._retriever.rank(
                queries, k, condition, mode, fusion, hybrid_weight, settings.k1, settings.b, statistics, feedback
            )
        )

    def hybrid_candidates(
        self, vectors: np.ndarray, queries: Sequence[str], depth: int, *, where: Where | None = None,
        statistics: Sequence[TermStatistics] | None = None,
    ) -> list[Candidates]:
        """Each query's hybrid candidates here, each with its cosine and BM25: what a router fuses over shards.

        ``vectors`` are the queries' unit vectors; ``statistics`` as for :meth:`search_batch`.
        """
        self._state.refresh()
        settings = self.config.search
        source = self._retriever.source(queries, self._condition(where), settings.k1, settings.b, statistics)
        return source.candidates(np.asarray(vectors, dtype=np.float32), depth)

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The stored vectors of each list of chunk ids, as many rows as were found (for a router's feedback)."""
        return self._retriever.embeddings(ids)

    def stored_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids found, their stored vectors): from the vector index's memory where it keeps them."""
        return self._retriever.stored(np.asarray(ids, dtype=np.int64))

    def hits(self, rankings: Sequence[Ranking]) -> list[list[Hit]]:
        """Hits, with their text, for rankings of this index's chunks made elsewhere (a router's fusion)."""
        return self._hits(lambda: [list(ranking) for ranking in rankings], attempts=1)

    def term_statistics(self, queries: Sequence[str]) -> list[TermStatistics]:
        """BM25's numbers for each query's terms in this index (chunks, tokens, each term's frequency).

        Summed over the shards of a collection and given back to :meth:`search_batch`,
        they score every shard's chunks exactly as one unsharded index would.
        """
        for query in queries:
            check_query(query)
        self._state.refresh()
        return self._retriever.term_statistics(queries)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, where: Where | None = None) -> list[list[Hit]]:
        """Dense search with query vectors you embedded yourself (one row per query, the index's dimension).

        The vectors are normalised to unit length, as stored vectors are, so scores are
        cosine similarities whatever their scale.
        """
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.config.model.dimension:
            raise QueryError(f"query vectors have shape {queries.shape}; this index needs (n, {self.config.model.dimension})")
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        if not np.all(np.isfinite(queries)) or np.any(norms == 0):
            raise QueryError("query vectors contain NaN, infinite or all-zero rows")
        queries = queries / norms
        check_k(k)
        condition = self._condition(where)
        self._state.refresh()
        return self._hits(lambda: self._retriever.nearest(queries, k, condition))

    def _condition(self, where: Where | None) -> Filter | None:
        """The compiled filter; the store's field types are read only when there is one."""
        return compile_filter(where, self.store.field_types()) if where else None

    def _hits(self, rank: Callable[[], list[Ranking]], attempts: int = 3) -> list[list[Hit]]:
        """Hits with their text for the rankings ``rank`` makes.

        Another process may delete a chunk between ranking and reading its text; the
        ranking is then made again from the new state rather than returning fewer hits.
        """
        for _ in range(attempts):
            rankings = rank()
            rows = self.store.chunk_rows(sorted({chunk_id for ranking in rankings for chunk_id, _ in ranking}))
            if all(chunk_id in rows for ranking in rankings for chunk_id, _ in ranking):
                break
            self._state.refresh()
        return [
            [Hit(rank, score, row.doc_id, row.chunk_id, row.title, row.text, row.start, row.end, row.metadata)
             for rank, (chunk_id, score) in enumerate(((c, s) for c, s in ranking if c in rows), start=1)
             for row in [rows[chunk_id]]]
            for ranking in rankings
        ]

    # Inspecting

    def info(self) -> dict[str, Any]:
        """The whole configuration and the counts, as data (``searchkit info`` prints it)."""
        self._state.refresh()
        documents, chunks = self.store.counts()
        return {
            "path": str(self.path),
            "config": self.config.to_dict(),
            "counts": {"documents": documents, "chunks": chunks, "vectors": len(self.vectors)},
            "vector_index": self.vectors.description,
            "metadata_fields": {name: sorted(kinds) for name, kinds in sorted(self.store.field_types().items())},
            "generation": self._state.generation,
            "notices": self.notices,
            "size_bytes": {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()},
        }

    def get(self, doc_id: str) -> StoredDocument | None:
        """The stored document with this id (text, title, metadata, size), or None if there is none."""
        return self.store.document(doc_id)

    def documents(self, offset: int = 0, limit: int = 100, *, where: Where | None = None) -> DocumentPage:
        """A page of the documents matching ``where``, in id order, without their text."""
        for name, value in (("offset", offset), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise QueryError(f"{name} must be a non-negative integer, got {value!r}")
        compiled = self._condition(where)
        total, page = self.store.documents_page(offset, limit, None if compiled is None else compiled.condition)
        return DocumentPage(total, offset, page)

    def __len__(self) -> int:
        return self.store.counts()[0]


def _choice(kind: type[E], value: E | str, name: str) -> E:
    try:
        return kind(value)
    except ValueError:
        options = ", ".join(member.value for member in kind)
        raise QueryError(f"unknown {name} {value!r}; use one of {options}") from None


def search_options(
    settings: SearchConfig, mode: Mode | str | None, fusion: Fusion | str | None,
    hybrid_weight: float | None, feedback: float | None,
) -> tuple[Mode, Fusion, float, float]:
    """A search's mode, fusion, hybrid weight and feedback: those given, checked, else the index's settings."""
    hybrid_weight = settings.hybrid_weight if hybrid_weight is None else hybrid_weight
    feedback = settings.feedback if feedback is None else feedback
    for name, value, high in (("hybrid_weight", hybrid_weight, 1.0), ("feedback", feedback, 10.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= high:
            raise QueryError(f"{name} must be a number between 0 and {high:g}, got {value!r}")
    mode = _choice(Mode, settings.mode if mode is None else mode, "mode")
    fusion = _choice(Fusion, settings.fusion if fusion is None else fusion, "fusion")
    return mode, fusion, float(hybrid_weight), float(feedback)


def check_k(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return k


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise QueryError(f"a query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError("the query is empty; type some words to search for")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError(f"the query is not valid text ({exc.reason} at character {exc.start})") from None
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query is {len(query):,} characters, over the limit of {MAX_QUERY_CHARS:,}; "
            "shorten it (the model reads only its first few hundred words anyway)"
        )
    return query
