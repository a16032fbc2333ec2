"""The Index: what people hold. It ties the store, the vectors and the embedder together.

An index is a directory::

    manifest.json   the configuration as data, and the counts
    store.sqlite    documents, chunks, metadata and embeddings (the source of truth)
    vectors.faiss   the FAISS index over chunk ids (derived; rebuilt from the store)
    vectors.json    the store generation the FAISS file reflects
    write.lock      held by the one process allowed to write

Writes go one batch of whole documents per SQLite transaction, so a killed ingest
leaves each document either fully indexed or absent; the vector file is brought back in
step with the store whenever it lags (on open, and before a search if another process
wrote in the meantime).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from enum import Enum
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import ColumnElement
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from searchkit.chunking import Span, chunk_spans, embedding_input, title_budget
from searchkit.config import DEFAULT_MODEL, ChunkingConfig, IndexConfig
from searchkit.document import Document, Problem, as_document
from searchkit.embedding import Embedder, load_embedder
from searchkit.errors import (
    ConfigError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    QueryError,
    SearchkitError,
)
from searchkit.filters import Where, compile_where
from searchkit.reader import Answer, Passage, Reader, SentenceReader, best_answers, rerank_hits
from searchkit.retrieval import HYBRID_WEIGHT, Fusion, Mode, fts_match_expression, fuse
from searchkit.store import Store, StoredChunk
from searchkit.vectors import VectorIndex, atomic_write, resolve_description

__all__ = ["Index", "Hit", "IngestReport", "DeleteReport"]

E = TypeVar("E", bound=Enum)

MANIFEST_FILE = "manifest.json"
STORE_FILE = "store.sqlite"
LOCK_FILE = "write.lock"
MAX_QUERY_CHARS = 4096
# Candidates taken from each retriever before hybrid fusion.
HYBRID_CANDIDATES = 100
# Chunks read by the question-answering reader for ask() and the QA rerank.
QA_CANDIDATES = 20
DEFAULT_MAX_DOCUMENT_CHARS = 2_000_000
# Text gathered per embedding call and store transaction (about 500 full chunks): large
# enough for efficiently padded batches, small enough that a killed ingest loses little.
BATCH_CHARS = 500_000


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


@dataclass
class IngestReport:
    """What an ingest did: counts, skipped inputs with their reasons, and the speed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    failed: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.embed_seconds if self.embed_seconds else 0.0

    @property
    def documents_per_second(self) -> float:
        return (self.added + self.updated) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [str(p) for p in self.failed]
        data["chunks_per_second"] = self.chunks_per_second
        data["documents_per_second"] = self.documents_per_second
        return data


@dataclass(frozen=True)
class DeleteReport:
    deleted: list[str]
    not_found: list[str]
    chunks_removed: int


class Index:
    """A searchable collection of documents on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, config: IndexConfig, embedder: Embedder, store: Store) -> None:
        self.path = path
        self.config = config
        self.embedder = embedder
        self.store = store
        self.vectors = VectorIndex(config.model.dimension)
        self._generation = -1
        self._lock = FileLock(path / LOCK_FILE)
        self._reader: Reader | None = None

    # Lifecycle

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        model: str | Embedder = DEFAULT_MODEL,
        chunking: ChunkingConfig | None = None,
    ) -> Index:
        """Create a new, empty index directory for documents embedded by ``model``."""
        path = Path(path)
        if (path / MANIFEST_FILE).exists():
            raise SearchkitError(f"an index already exists at {path}; open it, or delete the directory first")
        if path.exists() and not path.is_dir():
            raise SearchkitError(f"{path} is a file; give a directory for the index")
        embedder = load_embedder(model) if isinstance(model, str) else model
        identity = embedder.identity
        chunking = chunking or ChunkingConfig(max_tokens=min(254, identity.max_seq_length - 2))
        config = IndexConfig(model=identity, chunking=chunking)
        path.mkdir(parents=True, exist_ok=True)
        store = Store(path / STORE_FILE, create=True)
        index = cls(path, config, embedder, store)
        index._write_manifest()
        index._generation = store.generation()
        return index

    @classmethod
    def open(cls, path: str | Path, *, model: str | Embedder | None = None) -> Index:
        """Open an existing index; ``model`` (default: the one it was built with) must match it."""
        path = Path(path)
        config = read_manifest(path)
        if model is None:
            model = config.model.name
        embedder = load_embedder(model) if isinstance(model, str) else model
        if not embedder.identity.same_vectors_as(config.model):
            raise ModelMismatchError(
                f"the index at {path} was built with {config.model.describe()}, but the model in use is "
                f"{embedder.identity.describe()}; open it with --model {config.model.name!r} or build a new index"
            )
        index = cls(path, config, embedder, Store(path / STORE_FILE))
        index._load_vectors()
        return index

    @classmethod
    def open_or_create(
        cls, path: str | Path, *, model: str | None = None, chunking: ChunkingConfig | None = None
    ) -> Index:
        if (Path(path) / MANIFEST_FILE).exists():
            return cls.open(path, model=model)
        return cls.create(path, model=model or DEFAULT_MODEL, chunking=chunking)

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
    ) -> IngestReport:
        """Index documents: new ones are added, changed ones re-embedded, unchanged ones skipped.

        ``documents`` may mix in :class:`Problem` records from a reader; they are
        reported in the result with anything else that could not be indexed. Each
        batch of about ``batch_chars`` characters of text is embedded and committed
        in one transaction.

        ``embeddings`` brings your own vectors: one row per document, in the index's
        dimension. Each document then becomes a single chunk with that vector (it is
        normalised to unit length, as cosine search needs) and nothing is embedded.
        """
        precomputed = None
        if embeddings is not None:
            precomputed = self._check_embeddings(documents, embeddings)
        report = IngestReport()
        started = time.perf_counter()
        total = len(documents) if isinstance(documents, Sequence) else None
        with self._writing(), tqdm(total=total, unit="doc", desc="indexing", disable=not progress) as bar:
            seen: dict[str, str] = {}
            pending: list[Document] = []
            pending_chars = 0
            for item in documents:
                document = self._accept(item, seen, max_document_chars, report)
                if document is None:
                    bar.update(1)
                    continue
                pending.append(document)
                pending_chars += len(document.text)
                if pending_chars >= batch_chars:
                    self._ingest_batch(pending, report, precomputed)
                    bar.update(len(pending))
                    pending, pending_chars = [], 0
            if pending:
                self._ingest_batch(pending, report, precomputed)
                bar.update(len(pending))
        report.seconds = time.perf_counter() - started
        return report

    def _accept(
        self, item: Document | Mapping[str, Any] | Problem, seen: dict[str, str], max_chars: int, report: IngestReport
    ) -> Document | None:
        if isinstance(item, Problem):
            report.failed.append(item)
            return None
        try:
            document = as_document(item)
        except TypeError as exc:
            report.failed.append(Problem("input", str(exc)))
            return None
        where = document.origin or f"document {document.id!r}"
        reason = document.validate(max_chars)
        if reason is None and document.id in seen:
            reason = f"duplicate document id {document.id!r} (first seen at {seen[document.id]}); kept the first"
        if reason:
            report.failed.append(Problem(where, reason))
            return None
        seen[document.id] = where
        return document

    def _check_embeddings(self, documents: object, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        if not isinstance(documents, Sequence):
            raise ConfigError("with embeddings=, documents must be a list (one embedding row per document)")
        vectors = np.asarray(embeddings, dtype=np.float32)
        dimension = self.config.model.dimension
        if vectors.ndim != 2 or vectors.shape != (len(documents), dimension):
            raise ConfigError(
                f"embeddings have shape {vectors.shape}; this index needs ({len(documents)}, {dimension}): "
                f"one row per document in the dimension of {self.config.model.name}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise ConfigError("embeddings contain NaN, infinite or all-zero rows")
        by_id: dict[str, np.ndarray] = {}
        for item, vector in zip(documents, vectors / norms):
            if isinstance(item, (Document, Mapping)):
                by_id.setdefault(as_document(item).id, vector)
        return by_id

    def _ingest_batch(
        self, batch: list[Document], report: IngestReport, precomputed: dict[str, np.ndarray] | None = None
    ) -> None:
        states = self.store.document_states([d.id for d in batch])
        to_embed: list[tuple[Document, int | None]] = []
        metadata_only: list[tuple[int, Document]] = []
        for document in batch:
            state = states.get(document.id)
            if state is None:
                to_embed.append((document, None))
            elif state.content_hash != document.content_hash:
                to_embed.append((document, state.pk))
            elif state.meta != document.metadata_json():
                metadata_only.append((state.pk, document))
            else:
                report.unchanged += 1
        if not to_embed and not metadata_only:
            return
        if precomputed is None:
            chunked = self._chunk([d for d, _ in to_embed])
            inputs = [embedding_input(d.title, c.text) for (d, _), cs in zip(to_embed, chunked) for c in cs]
            embed_started = time.perf_counter()
            vectors = self.embedder.encode(inputs)
            report.embed_seconds += time.perf_counter() - embed_started
        else:
            chunked = [[StoredChunk(0, 0, len(d.text), d.text)] for d, _ in to_embed]
            vectors = np.stack([precomputed[d.id] for d, _ in to_embed]) if to_embed else np.zeros((0, 1), np.float32)
        rows, offset = [], 0
        for (document, _), doc_chunks in zip(to_embed, chunked):
            rows.append((document, doc_chunks, vectors[offset:offset + len(doc_chunks)]))
            offset += len(doc_chunks)
        replaced = [pk for _, pk in to_embed if pk is not None]
        removed, new_ids, generation = self.store.write(rows, replaced, metadata_only)
        self.vectors.remove(removed)
        self.vectors.add(new_ids, vectors)
        self._generation = generation
        if self.vectors.needs_rebuild:
            self._rebuild()
        report.added += sum(1 for _, pk in to_embed if pk is None)
        report.updated += len(replaced) + len(metadata_only)
        report.chunks_added += len(new_ids)
        report.chunks_removed += len(removed)

    def _chunk(self, batch: list[Document]) -> list[list[StoredChunk]]:
        """Token-aware chunks of each document, as spans of its text."""
        if not batch:
            return []
        text_offsets = self.embedder.token_offsets([d.text for d in batch])
        title_offsets = self.embedder.token_offsets([d.title for d in batch])
        result = []
        for document, offsets, title in zip(batch, text_offsets, title_offsets):
            budget = title_budget(self.config.chunking, len(title))
            chunking = self.config.chunking
            spans = chunk_spans(document.text, offsets, budget, min(chunking.overlap_tokens, budget - 1), chunking.max_chunks)
            if not spans:  # only characters the tokenizer drops: keep the text whole
                spans = [Span(0, len(document.text))]
            result.append([StoredChunk(i, s.start, s.end, document.text[s.start:s.end]) for i, s in enumerate(spans)])
        return result

    def delete(self, doc_ids: Sequence[str]) -> DeleteReport:
        """Remove documents by id; ids not in the index are reported, not errors."""
        with self._writing():
            removed, missing, generation = self.store.delete(list(doc_ids))
            self.vectors.remove(removed)
            self._generation = generation
            if self.vectors.needs_rebuild:
                self._rebuild()
        found = [d for d in doc_ids if d not in set(missing)]
        return DeleteReport(deleted=found, not_found=missing, chunks_removed=len(removed))

    def reindex(
        self, index_type: str | None = None, *, ef_search: int | None = None, nprobe: int | None = None
    ) -> int:
        """Rebuild the FAISS file from the stored embeddings, without re-embedding; returns the vector count.

        ``index_type`` switches the kind of index (``Flat``, ``HNSW32``, ``IVF,Flat``,
        ``IVF,SQ8``, ``IVF,PQ48``, ``auto``...); ``ef_search`` and ``nprobe`` set the
        search-time knobs of approximate indexes. All are recorded in the manifest.
        """
        current = self.config.vectors
        vectors = replace(
            current,
            description=index_type or current.description,
            ef_search=ef_search or current.ef_search,
            nprobe=nprobe or current.nprobe,
        )
        with self._writing():
            self.config = replace(self.config, vectors=vectors)
            self._rebuild()
        return len(self.vectors)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the write lock, start from the current store state, and save the vectors after."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise IndexLockedError(
                f"another process is writing to the index at {self.path}; wait for it to finish and try again"
            ) from None
        try:
            self._sync()
            try:
                yield
            finally:
                self._save()
        finally:
            self._lock.release()

    def _save(self) -> None:
        self.vectors.save(self.path, self._generation)
        self._write_manifest()

    def _write_manifest(self) -> None:
        documents, chunks = self.store.counts()
        manifest = {
            "format": "searchkit-index",
            "config": self.config.to_dict(),
            "counts": {"documents": documents, "chunks": chunks},
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write(self.path / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())

    # Keeping the vectors in step with the store

    def _load_vectors(self) -> None:
        loaded = VectorIndex.load(self.path, self.config.model.dimension)
        if loaded is None:  # missing or unreadable: rebuild from the store, in memory
            self._rebuild()
            return
        self.vectors, state = loaded
        self._generation = state.generation
        self._apply_knobs()
        self._sync()

    def _apply_knobs(self) -> None:
        self.vectors.ef_search = self.config.vectors.ef_search
        self.vectors.nprobe = self.config.vectors.nprobe

    def _sync(self) -> None:
        """Catch the in-memory vectors up with the store if another writer (or a crash) left them behind.

        Chunk ids are never reused and a chunk's embedding never changes, so the
        difference between the id sets is exactly what to add and remove.
        """
        generation = self.store.generation()
        if generation == self._generation:
            return
        stored_ids = self.store.all_chunk_ids()
        held_ids = self.vectors.ids()
        self.vectors.remove(np.setdiff1d(held_ids, stored_ids, assume_unique=True))
        missing = np.setdiff1d(stored_ids, held_ids, assume_unique=True)
        if len(missing):
            ids, vectors = self.store.embeddings_for(missing, self.config.model.dimension)
            self.vectors.add(ids, vectors)
        self._generation = generation

    def _rebuild(self) -> None:
        """Build the vector index afresh from every stored embedding, of the configured kind."""
        generation = self.store.generation()
        dimension = self.config.model.dimension
        pages = list(self.store.embeddings(dimension))
        ids = np.concatenate([p[0] for p in pages]) if pages else np.zeros(0, np.int64)
        vectors = np.concatenate([p[1] for p in pages]) if pages else np.zeros((0, dimension), np.float32)
        description = self.config.vectors.description
        if len(ids) == 0 and resolve_description(description, 0, dimension) != "Flat":
            description = "Flat"  # nothing to train on yet; the next reindex builds the configured kind
        self.vectors = VectorIndex.build(dimension, description, ids, vectors)
        self._apply_knobs()
        self._generation = generation

    # Searching

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str = Mode.DENSE,
        fusion: Fusion | str = Fusion.WEIGHTED,
        hybrid_weight: float = HYBRID_WEIGHT,
        rerank: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first, among those matching ``where``.

        ``mode`` is ``dense`` (cosine similarity of embeddings), ``lexical`` (BM25 over the
        full-text index) or ``hybrid`` (both rankings fused by ``fusion``: ``weighted``
        normalised scores, dense weighted by ``hybrid_weight``, or ``rrf``, reciprocal rank
        fusion). Hit scores are the mode's own. ``rerank="qa"`` reads the candidates with
        the question-answering reader and reorders them by answer evidence combined with
        the retrieval score (both min-max scaled over the candidates, equal weights); the
        hit scores are then the combined ones.
        """
        return self.search_batch(
            [query], k, where=where, mode=mode, fusion=fusion, hybrid_weight=hybrid_weight, rerank=rerank
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str = Mode.DENSE,
        fusion: Fusion | str = Fusion.WEIGHTED,
        hybrid_weight: float = HYBRID_WEIGHT,
        rerank: str | None = None,
    ) -> list[list[Hit]]:
        """Search many queries at once: one batched encode and one FAISS call."""
        if rerank not in (None, "qa"):
            raise QueryError(f"unknown rerank {rerank!r}; use 'qa' or leave it out")
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries; use search() for one")
        for query in queries:
            check_query(query)
        check_k(k)
        if not 0.0 <= hybrid_weight <= 1.0:
            raise QueryError(f"hybrid_weight must be between 0 and 1, got {hybrid_weight!r}")
        mode, fusion = _choice(Mode, mode, "mode"), _choice(Fusion, fusion, "fusion")
        condition = self._condition(where)
        self._sync()
        if not queries:
            return []
        if rerank == "qa":
            candidates = self.search_batch(queries, max(k, QA_CANDIDATES), where=where, mode=mode, fusion=fusion,
                                           hybrid_weight=hybrid_weight)
            passages = [[Passage.from_hit(hit) for hit in hits] for hits in candidates]
            read = self.reader.read_batch(list(queries), passages)
            return [rerank_hits(hits, answers)[:k] for hits, answers in zip(candidates, read)]
        depth = k if mode is not Mode.HYBRID else max(k, HYBRID_CANDIDATES)
        dense = self._dense(queries, depth, condition) if mode is not Mode.LEXICAL else None
        lexical = self._lexical(queries, depth, condition) if mode is not Mode.DENSE else None
        if mode is Mode.DENSE:
            rankings = dense
        elif mode is Mode.LEXICAL:
            rankings = lexical
        else:
            rankings = [fuse(dict(d), dict(l), fusion, hybrid_weight)[:k] for d, l in zip(dense, lexical)]
        return self._hits(rankings)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, where: Where | None = None) -> list[list[Hit]]:
        """Dense search with query vectors you embedded yourself (one row per query, the index's dimension)."""
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.config.model.dimension:
            raise QueryError(f"query vectors have shape {queries.shape}; this index needs (n, {self.config.model.dimension})")
        check_k(k)
        condition = self._condition(where)
        self._sync()
        return self._hits(self._nearest(queries, k, condition))

    def _condition(self, where: Where | None) -> ColumnElement[bool] | None:
        """The compiled filter; the store's field names are read only when there is one."""
        return compile_where(where, self.store.field_names()) if where else compile_where(where, ())

    def _dense(self, queries: Sequence[str], k: int, condition: ColumnElement[bool] | None) -> list[list[tuple[int, float]]]:
        if len(self.vectors) == 0:
            return [[] for _ in queries]
        return self._nearest(self.embedder.encode(list(queries)), k, condition)

    def _nearest(self, queries: np.ndarray, k: int, condition: ColumnElement[bool] | None) -> list[list[tuple[int, float]]]:
        allowed = None if condition is None else self.store.chunk_ids_where(condition)
        dimension = self.config.model.dimension
        scores, ids = self.vectors.search(
            queries, k, allowed, fetch=lambda wanted: self.store.embeddings_for(wanted, dimension)
        )
        return [[(int(i), float(s)) for s, i in zip(row_scores, row_ids) if i >= 0] for row_scores, row_ids in zip(scores, ids)]

    def _lexical(self, queries: Sequence[str], k: int, condition: ColumnElement[bool] | None) -> list[list[tuple[int, float]]]:
        rankings = []
        for query in queries:
            match = fts_match_expression(query)
            rankings.append(self.store.full_text_search(match, k, condition) if match else [])
        return rankings

    def _hits(self, rankings: Sequence[Sequence[tuple[int, float]]]) -> list[list[Hit]]:
        rows = self.store.chunk_rows(sorted({chunk_id for ranking in rankings for chunk_id, _ in ranking}))
        results = []
        for ranking in rankings:
            hits: list[Hit] = []
            for chunk_id, score in ranking:
                row = rows.get(chunk_id)
                if row is not None:  # deleted by another writer since the vectors were loaded
                    hits.append(Hit(len(hits) + 1, score, row.doc_id, row.chunk_id, row.title,
                                    row.text, row.start, row.end, row.metadata))
            results.append(hits)
        return results

    # Answering

    @property
    def reader(self) -> Reader:
        """The question-answering reader for :meth:`ask` and the QA rerank (default: the sentence reader)."""
        if self._reader is None:
            self._reader = SentenceReader(self.embedder)
        return self._reader

    @reader.setter
    def reader(self, reader: Reader) -> None:
        self._reader = reader

    def ask(
        self,
        question: str,
        k: int = 5,
        *,
        where: Where | None = None,
        mode: Mode | str = Mode.DENSE,
        candidates: int = QA_CANDIDATES,
    ) -> list[Answer]:
        """The ``k`` best answers to ``question`` read from the best ``candidates`` chunks.

        Each chunk's best answer span is scored by combining its reader score with the
        chunk's retrieval score (both min-max scaled over the candidates), so an answer
        needs both a passage that matches and a span that answers; ``Answer.score`` is
        that combined score, in [0, 1].
        """
        check_k(k)
        hits = self.search(question, max(k, candidates), where=where, mode=mode)
        return best_answers(hits, self.reader.read(question, [Passage.from_hit(hit) for hit in hits]), k)

    # Inspecting

    def info(self) -> dict[str, Any]:
        """The whole configuration and the counts, as data (``searchkit info`` prints it)."""
        documents, chunks = self.store.counts()
        self._sync()
        return {
            "path": str(self.path),
            "config": self.config.to_dict(),
            "counts": {"documents": documents, "chunks": chunks, "vectors": len(self.vectors)},
            "vector_index": self.vectors.description,
            "metadata_fields": sorted(self.store.field_names()),
            "generation": self._generation,
            "size_bytes": {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()},
        }

    def __len__(self) -> int:
        return self.store.counts()[0]


def _choice(kind: type[E], value: E | str, name: str) -> E:
    try:
        return kind(value)
    except ValueError:
        options = ", ".join(member.value for member in kind)
        raise QueryError(f"unknown {name} {value!r}; use one of {options}") from None


def check_k(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return k


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise QueryError(f"a query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError("the query is empty; type some words to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query is {len(query):,} characters, over the limit of {MAX_QUERY_CHARS:,}; "
            "shorten it (the model reads only its first few hundred words anyway)"
        )
    return query


def read_manifest(path: Path) -> IndexConfig:
    """The configuration of the index at ``path``, with an error that says what to do if there is none."""
    manifest_path = path / MANIFEST_FILE
    if not path.exists():
        raise IndexNotFoundError(f"no index at {path}; create one with 'searchkit index FILES... --index {path}'")
    if not manifest_path.exists():
        raise IndexNotFoundError(
            f"{path} is not a searchkit index (no {MANIFEST_FILE}); "
            f"create one with 'searchkit index FILES... --index {path}'"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        return IndexConfig.from_dict(data["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"{manifest_path} is unreadable ({exc}); rebuild the index") from exc
