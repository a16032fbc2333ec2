"""The SQLite store: documents, chunks, metadata and embeddings, through SQLAlchemy.

The store is the source of truth; the FAISS file is derived from it. Text is stored once,
in ``documents``: a chunk is a character span of its document (its text is
``document.text[start:end]``, which is how chunking makes it), and the full-text index is
contentless, holding only its postings and statistics. Every write is one
transaction that also bumps a *generation* counter, so the vector file can record which
store state it reflects and a lagging file is caught on open. Chunk ids are
AUTOINCREMENT keys: SQLite never reuses them, so an id in a stale vector file can never
point at a different chunk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DatabaseError
from sqlalchemy.types import UserDefinedType

from searchkit.chunking import embedding_input
from searchkit.document import Document
from searchkit.errors import IndexCorruptError, StoreWriteError
from searchkit.lexical import FTS_TOKENIZER, Postings, sorted_unique

__all__ = ["Store", "StoredChunk", "StoredDocument", "ChunkRow", "DocumentState", "documents", "chunks", "field_values", "value_type"]

_schema = MetaData()

documents = Table(
    "documents",
    _schema,
    Column("pk", Integer, primary_key=True),
    Column("doc_id", String, nullable=False, unique=True),
    Column("title", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    # The first 16 bytes of the SHA-256 of title and text (Document.content_hash): enough to
    # tell a document's versions apart, in a quarter of the space of 64 hex characters.
    Column("content_hash", LargeBinary, nullable=False),
    Column("meta", Text, nullable=False, default="{}"),
    Column("origin", Text, nullable=False, default=""),
    # The stable key of the file a document was read from, so an ingest can prune
    # documents whose file or record is gone; "" for documents given in Python, which its
    # index leaves out (prunes look up only non-empty sources).
    Column("source", Text, nullable=False, default=""),
    Index("ix_documents_source", "source", sqlite_where=text("source != ''")),
    sqlite_autoincrement=True,
)

chunks = Table(
    "chunks",
    _schema,
    Column("id", Integer, primary_key=True),
    Column("document_pk", Integer, ForeignKey("documents.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("ordinal", Integer, nullable=False),
    Column("start", Integer, nullable=False),
    Column("end", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)

# The field registry: every metadata field ever written, and which kinds of value it has
# held ("bool", "number", "string", comma-separated). SQLite stores booleans as the
# integers 0 and 1, so only this record tells a field of flags from a field of counts, and
# it lets filters reject a comparison that could never match (``year >= "2020"`` on a field
# of numbers) instead of returning nothing. Kinds only accumulate: a field that once held a
# string keeps "string" after that document is deleted.
fields = Table(
    "fields",
    _schema,
    Column("name", String, primary_key=True),
    Column("types", Text, nullable=False, server_default=""),
)
_FIELD_TYPES_FILL = (
    "SELECT DISTINCT j.key, CASE j.type WHEN 'text' THEN 'string' WHEN 'true' THEN 'bool' "
    "WHEN 'false' THEN 'bool' ELSE 'number' END FROM documents AS d, json_each(d.meta) AS j "
    "WHERE j.type != 'null'"
)


def value_type(value: Any) -> str | None:
    """The kind of a metadata value as filters see it: "bool", "number", "string", or None for null.

    bool is tested before int because Python's True is an int; filters must not confuse
    the two even though SQLite stores both as integers.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"a metadata value is a string, number, bool or None, not {type(value).__name__}")


class _AnyValue(UserDefinedType):
    """A column without type affinity: SQLite keeps each value's own type, so numbers
    compare as numbers and strings as strings, exactly as in the metadata JSON."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "BLOB"


# Metadata again, one row per (document, field), indexed by (field, value): a filter is an
# index range scan here instead of a JSON scan of every document (0.1% of a million
# documents is found in milliseconds). Keyed by (document, field) without a rowid, the
# table is itself the index a document's rows are found (and deleted) by.
field_values = Table(
    "field_values",
    _schema,
    Column("document_pk", Integer, ForeignKey("documents.pk", ondelete="CASCADE"), primary_key=True),
    Column("name", String, primary_key=True),
    Column("value", _AnyValue()),
    Index("field_values_lookup", "name", "value"),
    sqlite_with_rowid=False,
)
_FIELD_VALUES_FILL = (
    "INSERT INTO field_values (document_pk, name, value) "
    "SELECT d.pk, j.key, j.value FROM documents AS d, json_each(d.meta) AS j"
)

# The full-text index over chunks: FTS5 (a virtual table, so declared in SQL), with Porter
# stemming, over the same text the model embeds (title and chunk), written in the same
# transactions as the chunks it mirrors. It is contentless (content=''): it keeps postings
# and lengths, not a third copy of the text. So a chunk leaves it through FTS5's 'delete'
# command, given exactly the body it was indexed with; that body is derived again from the
# document's title and text and the chunk's offsets, none of which is ever updated in place.
_FTS_CREATE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, content = '', "
    f"tokenize = '{FTS_TOKENIZER}')"
)
_FTS_INSERT = "INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)"
_FTS_DELETE = "INSERT INTO chunks_fts (chunks_fts, rowid, body) VALUES ('delete', ?, ?)"
# Read-only views of the full-text index for BM25 (searchkit.lexical): every occurrence of a
# term by chunk. They hold no data of their own, so they can never lag the index.
_FTS_INSTANCES_CREATE = "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts_instances USING fts5vocab(chunks_fts, 'instance')"
# FTS5's own records: each chunk's length in tokens (one varint per column), and at id 1 of
# its data table the totals (varints: rows, then tokens per column).
_FTS_POSTINGS = "SELECT doc, count(*) FROM chunks_fts_instances WHERE term = ? GROUP BY doc ORDER BY doc"
_FTS_LENGTHS = "SELECT id, sz FROM chunks_fts_docsize WHERE id IN ({})"
_FTS_TOTALS = "SELECT block FROM chunks_fts_data WHERE id = 1"
_FTS_ALL_LENGTHS = "SELECT id, sz FROM chunks_fts_docsize ORDER BY id"
_GENERATION = "SELECT value FROM state WHERE key = 'generation'"
# Chunks up to which every chunk's length is read again at once when a write moved the store on.
LENGTHS_AT_ONCE_BELOW = 200_000
# Postings (chunk, count) kept in memory for the terms queries used last, at one generation.
CACHED_POSTINGS = 2_000_000
_DOCUMENT_INSERT = (
    "INSERT INTO documents (pk, doc_id, title, text, content_hash, meta, origin, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_DOCUMENT_STATES = "SELECT doc_id, pk, content_hash, meta, source FROM documents WHERE doc_id IN ({})"
_CHUNK_INSERT = 'INSERT INTO chunks (id, document_pk, ordinal, start, "end", embedding) VALUES (?, ?, ?, ?, ?, ?)'
_FIELD_VALUE_INSERT = "INSERT INTO field_values (document_pk, name, value) VALUES (?, ?, ?)"
# A chunk's text read in SQL, so only the span leaves SQLite. SQLite's text functions stop at
# a NUL character; a span that comes back short is cut from the whole text in Python instead.
_CHUNK_TEXT = func.substr(documents.c.text, chunks.c.start + 1, chunks.c.end - chunks.c.start)
# Chunks read at a time by the migration to the text-once layout.
_MIGRATION_PAGE = 2_000
_CHUNK_ROWS = (
    'SELECT c.id, d.doc_id, d.title, substr(d.text, c.start + 1, c."end" - c.start), c.start, c."end", d.meta, d.pk '
    "FROM chunks AS c JOIN documents AS d ON c.document_pk = d.pk WHERE c.id IN ({})"
)
_WHOLE_TEXTS = "SELECT pk, text FROM documents WHERE pk IN ({})"
state = Table("state", _schema, Column("key", String, primary_key=True), Column("value", Integer, nullable=False))


@dataclass(frozen=True)
class StoredChunk:
    """A chunk ready to be written: its span of the document and its vector."""

    ordinal: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ChunkRow:
    """A chunk read back for a hit, joined with its document."""

    chunk_id: int
    doc_id: str
    title: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredDocument:
    """A document as the index holds it; ``text`` is None in listings, which leave the text out."""

    doc_id: str
    title: str
    metadata: dict[str, Any]
    chars: int
    chunks: int
    source: str
    text: str | None = None


@dataclass(frozen=True)
class DocumentState:
    """What the store knows of a document already indexed."""

    pk: int
    content_hash: str
    meta: str
    source: str = ""


# The layout this searchkit writes, kept in SQLite's user_version: 0 for every store before
# text was stored once (and content hashes, the source index and field values compacted).
LAYOUT_VERSION = 1

# Pages of 32 KiB: a chunk row is mostly its 1.5 KiB embedding (384 float32s), and 4 KiB pages
# hold only two such rows (a quarter of the page unused) where 32 KiB pages hold 21 (1.6% unused).
# Only a new file takes it; an existing store keeps the page size it was made with.
PAGE_SIZE = 32768
# The page cache of each connection, at most: SQLite's default of 2 MiB holds 500 pages of 4 KiB
# but only 62 of 32 KiB, and hits read at random then miss it (10 chunk rows took 0.108 ms
# against 0.082 with 4 KiB pages; 0.070 with this cache). 16 MiB holds about as many pages
# as the default did, and is filled only as pages are read.
CACHE_KIB = 16384


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _store_errors(path: Path) -> Any:
    """A ``handle_error`` listener: SQLite failures a user must act on become clear SearchkitErrors.

    A damaged file ("malformed", "not a database") cannot be repaired from anything else;
    a full disk (or a file-size limit) loses nothing committed, since SQLite rolls the
    transaction back. Both say so instead of surfacing as a driver traceback.
    """

    def translate(context: Any) -> None:
        _translate_error(path, context.original_exception)

    return translate


def _translate_error(path: Path, original: BaseException) -> None:
    """Raise the SearchkitError a SQLite failure means for the user, if it is one they must act on."""
    if not isinstance(original, sqlite3.DatabaseError):
        return
    message = str(original)
    if "disk is full" in message or "disk I/O error" in message:
        raise StoreWriteError(
            f"cannot write to {path} ({message}): the disk is full or a file-size limit was reached; "
            "everything committed before is kept: free some space and run the command again"
        ) from original
    if "malformed" in message or "not a database" in message or "file is not a database" in message:
        raise IndexCorruptError(
            f"{path} is damaged ({message}); it is the index's source of truth and cannot be derived: "
            "restore it from a backup, or build a new index from your documents"
        ) from original


class Store:
    """Documents and chunks in one SQLite file."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not create and not path.exists():
            raise IndexCorruptError(f"{path} is missing; the index is incomplete. Rebuild it with 'searchkit index'")
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        self._shared: Any = None  # the connection of shared cursor() reads, checked out on first use
        self._shared_lock = threading.RLock()
        # Every chunk's length and recent terms' postings as of one generation, for BM25 (see term_postings).
        self._lexical: _LexicalSnapshot | None = None
        event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "handle_error", _store_errors(path))
        try:
            if create:
                _schema.create_all(self.engine)
                with self.engine.begin() as conn:
                    if conn.execute(select(state.c.value).where(state.c.key == "generation")).first() is None:
                        conn.execute(insert(state).values(key="generation", value=0))
            self.generation()
            self._layout = self._read_layout()
            if create:  # the full-text index and derived tables are made by the migration
                self.migrate()
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            _translate_error(path, getattr(exc, "orig", None) or exc)  # a damaged file or a full disk, said as such
            raise IndexCorruptError(
                f"{path} is not a readable searchkit store ({getattr(exc, 'orig', exc)}); it is the index's source of truth and "
                "cannot be derived: restore it from a backup, or build a new index from your documents"
            ) from exc

    def _read_layout(self) -> tuple[set[str], set[str], set[str], set[str], int]:
        """(tables, columns of fields, columns of documents, columns of chunks, layout version):
        what :meth:`migrate` looks at."""
        with self.engine.connect() as conn:
            existing = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
            columns = {
                name: {row[1] for row in conn.execute(text(f"PRAGMA table_info({name})"))}
                for name in ("fields", "documents", "chunks")
            }
            version = int(conn.execute(text("PRAGMA user_version")).scalar_one())
        return existing, columns["fields"], columns["documents"], columns["chunks"], version

    @property
    def needs_migration(self) -> bool:
        """True when the store was written by an older searchkit (an older layout version) or lacks
        tables or columns."""
        existing, field_columns, document_columns, chunk_columns, version = self._layout
        return not (
            version >= LAYOUT_VERSION and {"chunks_fts", "chunks_fts_instances", "field_values"} <= existing
            and "types" in field_columns and "source" in document_columns and "text" not in chunk_columns
        )

    def migrate(self) -> None:
        """Bring an older store to the current layout, in one transaction: create and fill the derived
        tables (full-text index, field values) and columns (field types, document sources) it lacks,
        store text once (see :meth:`_store_text_once`), and compact what layout 0 kept wide (content
        hashes, the source index, field values). The caller holds the index's write lock."""
        if not self.needs_migration:
            return
        existing, field_columns, document_columns, chunk_columns, version = self._layout
        with self.engine.begin() as conn:
            raw = _begin_writing(conn)  # the schema changes too: a reader sees the old layout or the new, never a mix
            if "source" not in document_columns:
                conn.execute(text("ALTER TABLE documents ADD COLUMN source TEXT NOT NULL DEFAULT ''"))
            if version < 1:
                conn.execute(text("DROP INDEX IF EXISTS ix_documents_source"))
                _index(documents, "ix_documents_source").create(conn)
                raw.executemany(
                    "UPDATE documents SET content_hash = ? WHERE pk = ?",
                    ((bytes.fromhex(digest[:32]), pk) for pk, digest in raw.execute(
                        "SELECT pk, content_hash FROM documents WHERE typeof(content_hash) = 'text'").fetchall()),
                )
            if "chunks_fts" not in existing or "text" in chunk_columns:
                self._store_text_once(conn, "text" in chunk_columns)
            elif "chunks_fts_instances" not in existing:
                conn.execute(text(_FTS_INSTANCES_CREATE))
            if "field_values" not in existing or version < 1:
                conn.execute(text("DROP TABLE IF EXISTS field_values"))  # derived from documents.meta
                field_values.create(conn)
                conn.execute(text(_FIELD_VALUES_FILL))
            if "types" not in field_columns:
                conn.execute(text("ALTER TABLE fields ADD COLUMN types TEXT NOT NULL DEFAULT ''"))
                found: dict[str, set[str]] = {}
                for name, kind in conn.execute(text(_FIELD_TYPES_FILL)):
                    found.setdefault(name, set()).add(kind)
                self._merge_field_types(conn, found)
            raw.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
        self._layout = self._read_layout()

    def _store_text_once(self, conn: Any, chunks_hold_text: bool) -> None:
        """(Re)build the contentless full-text index from the documents, and drop the chunks' own text.

        Every chunk's stored text is first checked to be exactly its span of the document:
        a chunk that is not cannot be derived, so the migration stops, changing nothing, rather
        than answer with other text. The index is then filled with the very bodies the old one
        held, so its postings, lengths and totals, and every BM25 score, are the same.
        """
        raw = conn.connection.dbapi_connection
        conn.execute(text("DROP TABLE IF EXISTS chunks_fts_instances"))
        conn.execute(text("DROP TABLE IF EXISTS chunks_fts"))
        conn.execute(text(_FTS_CREATE))
        own_text = [literal_column("chunks.text").label("own_text")] if chunks_hold_text else []
        result = conn.execute(
            select(chunks.c.id, documents.c.title, _CHUNK_TEXT.label("text"), chunks.c.start, chunks.c.end,
                   documents.c.pk, *own_text)
            .join(documents, chunks.c.document_pk == documents.c.pk).order_by(chunks.c.id)
        )
        while rows := result.fetchmany(_MIGRATION_PAGE):
            derived = _exact_texts(conn, rows)
            for row, chunk_text in zip(rows, derived):
                if chunks_hold_text and row.own_text != chunk_text:
                    raise IndexCorruptError(
                        f"{self.path}: chunk {row.id} holds text that is not its span [{row.start}, {row.end}) of its "
                        "document, so this store cannot be brought to the current layout; build a new index "
                        "from your documents"
                    )
            raw.executemany(_FTS_INSERT, ((row.id, embedding_input(row.title, t)) for row, t in zip(rows, derived)))
        conn.execute(text(_FTS_INSTANCES_CREATE))
        if chunks_hold_text:
            conn.execute(text("ALTER TABLE chunks DROP COLUMN text"))

    def close(self) -> None:
        with self._shared_lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        self.engine.dispose()

    # Reading

    @contextmanager
    def cursor(self, shared: bool = True) -> Iterator[sqlite3.Cursor]:
        """A driver cursor, for the reads every search makes.

        SQLAlchemy's statement machinery costs about ten times a small indexed query
        itself (measured: the generation read took 320 us through it, 40 us here), and a
        search makes a few such reads. ``shared`` reads go through one connection the
        store keeps, one at a time (a pool checkout and its reset cost as much as such a
        read); a long read (``shared=False``) takes a pooled connection of its own. No
        transaction outlives the block, and failures are translated as the engine's are.
        """
        with self._shared_lock if shared else nullcontext():
            try:  # opening runs the connection's pragmas, the first reads of the file
                if shared:
                    if self._shared is None:
                        self._shared = self.engine.raw_connection()
                    connection = self._shared
                else:
                    connection = self.engine.raw_connection()
            except (sqlite3.DatabaseError, DatabaseError) as exc:
                _translate_error(self.path, getattr(exc, "orig", None) or exc)
                raise
            cursor = connection.cursor()
            try:
                yield cursor
            except sqlite3.DatabaseError as exc:
                _translate_error(self.path, exc)
                raise
            finally:
                cursor.close()
                if connection.in_transaction:
                    connection.rollback()
                if not shared:
                    connection.close()

    def generation(self) -> int:
        with self.cursor() as cursor:
            row = cursor.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        value = None if row is None else row[0]
        if value is None:
            raise IndexCorruptError(f"{self.path} has no generation record; rebuild the index")
        return int(value)

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self.engine.connect() as conn:
            docs = conn.execute(select(func.count()).select_from(documents)).scalar_one()
            chunk_count = conn.execute(select(func.count()).select_from(chunks)).scalar_one()
        return int(docs), int(chunk_count)

    def field_names(self) -> set[str]:
        return set(self.field_types())

    def field_types(self) -> dict[str, frozenset[str]]:
        """Each metadata field and the kinds of value it has held ("bool", "number", "string").

        A field that has only ever held null maps to an empty set.
        """
        with self.cursor() as cursor:
            return {name: _split_types(types) for name, types in cursor.execute("SELECT name, types FROM fields")}

    def document_states(self, doc_ids: Sequence[str]) -> dict[str, DocumentState]:
        found: dict[str, DocumentState] = {}
        with self.cursor() as cursor:  # this runs before every batch written
            for batch in _batches(list(doc_ids), 500):
                rows = cursor.execute(_DOCUMENT_STATES.format(",".join("?" * len(batch))), batch)
                for doc_id, pk, content_hash, meta, source in rows:
                    found[doc_id] = DocumentState(pk, content_hash.hex(), meta, source)
        return found

    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks with these ids joined with their documents: one query per 500, through the driver
        (this is every search's text look-up), in one read transaction."""
        rows: dict[int, ChunkRow] = {}
        ids = [int(i) for i in chunk_ids]
        with self.cursor() as cursor:
            if len(ids) > 500:
                cursor.execute("BEGIN")  # ended by cursor()
            for batch in _batches(ids, 500):
                found = cursor.execute(_CHUNK_ROWS.format(",".join("?" * len(batch))), batch).fetchall()
                short = list({pk for _, _, _, span, start, end, _, pk in found if len(span) != end - start})
                whole = dict(cursor.execute(_WHOLE_TEXTS.format(",".join("?" * len(short))), short)) if short else {}
                for chunk_id, doc_id, title, span, start, end, meta, pk in found:
                    chunk_text = whole[pk][start:end] if pk in whole else span
                    rows[chunk_id] = ChunkRow(chunk_id, doc_id, title, chunk_text, start, end, dict(_parsed_metadata(meta)))
        return rows

    def document(self, doc_id: str) -> StoredDocument | None:
        """The whole stored document with this id, text included, or None."""
        query = _document_listing(documents.c.text).where(documents.c.doc_id == doc_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored_document(row, row.text)

    def documents_page(
        self, offset: int, limit: int, condition: ColumnElement[bool] | None = None
    ) -> tuple[int, list[StoredDocument]]:
        """(how many documents match ``condition``, the page of them from ``offset``), in id order, without text."""
        count = select(func.count()).select_from(documents)
        page = _document_listing().order_by(documents.c.doc_id).offset(offset).limit(limit)
        if condition is not None:
            count, page = count.where(condition), page.where(condition)
        with self.engine.connect() as conn:  # one read transaction: the count and the page agree
            total = int(conn.execute(count).scalar_one())
            rows = conn.execute(page).all()
        return total, [_stored_document(row) for row in rows]

    def chunk_documents(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        """{chunk id: its document's id}, without the texts (evaluating rankings needs only this)."""
        query = select(chunks.c.id, documents.c.doc_id).join(documents, chunks.c.document_pk == documents.c.pk)
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for batch in _batches([int(i) for i in chunk_ids], 500):
                found.update((chunk_id, doc_id) for chunk_id, doc_id in conn.execute(query.where(chunks.c.id.in_(batch))))
        return found

    def chunk_ids_where(self, condition: ColumnElement[bool]) -> np.ndarray:
        with self.engine.connect() as conn:
            ids = conn.execute(_chunks_where(condition)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def term_postings(self, terms: Sequence[str]) -> Postings:
        """The full-text statistics BM25 needs for these (already stemmed) terms, in one read transaction.

        Terms are bound as parameters of a vocabulary lookup, never parsed as FTS5 query
        syntax, so no query text can be misread as an operator. Rows are read through the
        driver's cursor: a query can touch thousands of postings, and this is its hot path.

        Chunk lengths come from memory: every chunk's length, read once per store
        generation (the generation is read in the same transaction, so a write in between
        is seen). Reading the lengths of the matching chunks for each query took as long
        as reading the postings (4.2 of 8.8 ms on SciFact). The postings of the terms used
        last (up to ``CACHED_POSTINGS`` in all) are kept with them: a term's postings cost
        about 1 ms of SQLite per thousand, and queries share terms (a third of the terms of
        100 SciFact queries had been in an earlier one). A collection of
        ``LENGTHS_AT_ONCE_BELOW`` chunks or more that a writer moved on reads just the
        matching chunks' lengths, as before, until the store stays at one generation
        between two queries, so a steady writer does not make every query read them all.
        """
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            cursor.execute("BEGIN")  # one snapshot: postings, lengths and totals agree
            try:
                generation = int(cursor.execute(_GENERATION).fetchone()[0])
                totals = cursor.execute(_FTS_TOTALS).fetchone()
                rows, tokens = _varints(totals[0], 2) if totals else (0, 0)
                lengths = self._lexical_snapshot(cursor, generation, rows)
                for term in dict.fromkeys(terms):
                    pairs = lengths.postings(term) if lengths is not None else None
                    if pairs is None:
                        pairs = np.array(cursor.execute(_FTS_POSTINGS, (term,)).fetchall(), dtype=np.int64).reshape(-1, 2)
                        if lengths is not None:
                            lengths.keep(term, pairs)
                    if len(pairs):
                        found[term] = (pairs[:, 0], pairs[:, 1])
                ids = sorted_unique(np.concatenate([c for c, _ in found.values()])) if found else np.zeros(0, np.int64)
                if lengths is None:
                    known, sizes = _read_lengths(cursor, ids)
                else:
                    known, sizes = lengths.of(ids)
            finally:
                cursor.execute("ROLLBACK")
                cursor.close()
        return Postings(rows, tokens, found, (known, sizes))

    def _lexical_snapshot(self, cursor: sqlite3.Cursor, generation: int, chunks: int) -> _LexicalSnapshot | None:
        """Every chunk's length at ``generation`` (read now if needed), or None: read the few that are needed."""
        cached = self._lexical
        if cached is not None and cached.generation == generation:
            return cached
        if cached is not None and chunks >= LENGTHS_AT_ONCE_BELOW and cached.settling != generation:
            cached.settling = generation
            return None
        rows = cursor.execute(_FTS_ALL_LENGTHS).fetchall()
        known = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        self._lexical = _LexicalSnapshot(generation, known, _single_varints([row[1] for row in rows]))
        return self._lexical

    def documents_from(self, sources: Sequence[str]) -> dict[str, str]:
        """{doc_id: source} of the documents read from these files, or from files under these folders."""
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for key in sources:
                prefix = key.rstrip("/") + "/"
                if key == ".":  # the working directory: every relative key
                    under = (documents.c.source != "") & ~documents.c.source.startswith("/")
                else:
                    under = documents.c.source.startswith(prefix, autoescape=True)
                # "source != ''" lets SQLite use the index, which leaves out documents without a source
                query = select(documents.c.doc_id, documents.c.source).where(
                    (documents.c.source != "") & ((documents.c.source == key) | under))
                found.update({doc_id: source for doc_id, source in conn.execute(query)})
        return found

    def all_chunk_ids(self) -> np.ndarray:
        with self.engine.connect() as conn:
            return np.asarray(conn.execute(select(chunks.c.id)).scalars().all(), dtype=np.int64)

    def embeddings(self, dimension: int, page: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All stored (ids, vectors) in pages, in one read transaction (a consistent snapshot)."""
        with self.engine.connect() as conn:
            result = conn.execute(select(chunks.c.id, chunks.c.embedding).order_by(chunks.c.id))
            while rows := result.fetchmany(page):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
                yield ids, vectors

    def embeddings_for(self, chunk_ids: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        found_ids: list[int] = []
        blobs: list[bytes] = []
        with self.engine.connect() as conn:
            for batch in _batches(chunk_ids.tolist(), 500):
                for chunk_id, blob in conn.execute(select(chunks.c.id, chunks.c.embedding).where(chunks.c.id.in_(batch))):
                    found_ids.append(chunk_id)
                    blobs.append(blob)
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(found_ids), dimension)
        return np.asarray(found_ids, dtype=np.int64), vectors

    # Writing

    def write(
        self,
        new: Sequence[tuple[Document, Sequence[StoredChunk], np.ndarray]],
        replaced: Sequence[int] = (),
        metadata_only: Sequence[tuple[int, Document]] = (),
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Write one batch atomically: (removed chunk ids, new chunk ids, new generation).

        ``replaced`` are document keys whose old rows (and chunks) go away because a new
        version is in ``new``; ``metadata_only`` updates metadata in place.
        """
        with self.engine.begin() as conn:
            raw = _begin_writing(conn)
            removed = self._delete_documents(conn, replaced)
            new_ids = np.zeros(0, dtype=np.int64)
            if new:
                # Keys are given, not returned: under the write lock (BEGIN IMMEDIATE) the next
                # AUTOINCREMENT keys are known, and plain executemany is several times faster
                # than inserts that return their keys row by row.
                first_pk = _next_key(raw, "documents")
                pks = range(first_pk, first_pk + len(new))
                raw.executemany(
                    _DOCUMENT_INSERT,
                    [(pk, d.id, d.title, d.text, bytes.fromhex(d.content_hash), d.metadata_json(), d.origin, d.source)
                     for pk, (d, _, _) in zip(pks, new)],
                )
                first_id = _next_key(raw, "chunks")
                new_ids = np.arange(first_id, first_id + sum(len(doc_chunks) for _, doc_chunks, _ in new), dtype=np.int64)
                spans = ((pk, c, vectors[i]) for pk, (_, doc_chunks, vectors) in zip(pks, new) for i, c in enumerate(doc_chunks))
                raw.executemany(
                    _CHUNK_INSERT,
                    [(chunk_id, pk, c.ordinal, c.start, c.end, vector.tobytes())
                     for chunk_id, (pk, c, vector) in zip(new_ids.tolist(), spans)],
                )
                bodies = (embedding_input(d.title, c.text) for d, doc_chunks, _ in new for c in doc_chunks)
                raw.executemany(_FTS_INSERT, zip(new_ids.tolist(), bodies))
                self._write_fields(conn, zip(pks, (d for d, _, _ in new)))
            for pk, document in metadata_only:
                conn.execute(update(documents).where(documents.c.pk == pk).values(
                    meta=document.metadata_json(), origin=document.origin, source=document.source))
                conn.execute(delete(field_values).where(field_values.c.document_pk == pk))
            self._write_fields(conn, metadata_only)
            self._register_fields(conn, [d for d, _, _ in new] + [d for _, d in metadata_only])
            generation = self._bump(conn)
        return removed, new_ids, generation

    def delete(self, doc_ids: Sequence[str]) -> tuple[np.ndarray, list[str], int]:
        """Delete documents by id: (removed chunk ids, ids not found, new generation)."""
        states = self.document_states(doc_ids)
        with self.engine.begin() as conn:
            _begin_writing(conn)
            removed = self._delete_documents(conn, [s.pk for s in states.values()])
            generation = self._bump(conn)
        return removed, [d for d in doc_ids if d not in states], generation

    @staticmethod
    def _delete_documents(conn: Any, pks: Sequence[int]) -> np.ndarray:
        removed: list[int] = []
        bodies = (
            select(chunks.c.id, documents.c.title, _CHUNK_TEXT.label("text"), chunks.c.start, chunks.c.end, documents.c.pk)
            .join(documents, chunks.c.document_pk == documents.c.pk)
        )
        for batch in _batches(list(pks), 500):
            chunk_ids = conn.execute(select(chunks.c.id).where(chunks.c.document_pk.in_(batch))).scalars().all()
            for ids in _batches(list(chunk_ids), 500):  # a few hundred chunk texts in memory at a time
                found = conn.execute(bodies.where(chunks.c.id.in_(ids))).all()
                conn.connection.dbapi_connection.executemany(
                    _FTS_DELETE, ((row.id, embedding_input(row.title, chunk_text)) for row, chunk_text in zip(found, _exact_texts(conn, found)))
                )
            removed.extend(chunk_ids)
            conn.execute(delete(chunks).where(chunks.c.document_pk.in_(batch)))
            conn.execute(delete(documents).where(documents.c.pk.in_(batch)))
        return np.asarray(removed, dtype=np.int64)

    @staticmethod
    def _write_fields(conn: Any, documents_by_pk: Iterable[tuple[int, Document]]) -> None:
        conn.connection.dbapi_connection.executemany(
            _FIELD_VALUE_INSERT,
            ((pk, name, value) for pk, document in documents_by_pk for name, value in document.metadata.items()),
        )

    @classmethod
    def _register_fields(cls, conn: Any, written: Iterable[Document]) -> None:
        """Record the fields of the documents written and the kinds of value they hold."""
        found: dict[str, set[str]] = {}
        for document in written:
            for name, value in document.metadata.items():
                kinds = found.setdefault(name, set())
                if (kind := value_type(value)) is not None:
                    kinds.add(kind)
        cls._merge_field_types(conn, found)

    @staticmethod
    def _merge_field_types(conn: Any, found: dict[str, set[str]]) -> None:
        """Add ``found`` to the registry, writing only the fields that are new or gained a kind."""
        recorded = {name: _split_types(types) for name, types in conn.execute(select(fields.c.name, fields.c.types))}
        rows = [
            {"name": name, "types": ",".join(sorted(kinds | recorded.get(name, frozenset())))}
            for name, kinds in sorted(found.items())
            if name not in recorded or not kinds <= recorded[name]
        ]
        if rows:
            upsert = sqlite_insert(fields)
            conn.execute(upsert.on_conflict_do_update(index_elements=[fields.c.name], set_={"types": upsert.excluded.types}), rows)

    @staticmethod
    def _bump(conn: Any) -> int:
        conn.execute(update(state).where(state.c.key == "generation").values(value=state.c.value + 1))
        return int(conn.execute(select(state.c.value).where(state.c.key == "generation")).scalar_one())


def _begin_writing(conn: Any) -> sqlite3.Connection:
    """Start the connection's transaction as a writer at once (BEGIN IMMEDIATE), and return the driver's
    connection. Python's sqlite3 would begin only at the first change, after reads that a second
    writer could make stale; and statements run on the driver's connection belong to this transaction."""
    raw = conn.connection.dbapi_connection
    raw.execute("BEGIN IMMEDIATE")
    return raw


def _next_key(raw: sqlite3.Connection, name: str) -> int:
    """The key AUTOINCREMENT would give the next row of table ``name``: above every key it ever gave."""
    query = (
        f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{name}'), 0), "
        f"coalesce((SELECT max(rowid) FROM {name}), 0))"
    )
    return int(raw.execute(query).fetchone()[0]) + 1


@lru_cache(maxsize=4096)
def _parsed_metadata(meta: str) -> dict[str, Any]:
    """A document's metadata JSON, parsed once per distinct text (callers get a copy: the values are scalars)."""
    return json.loads(meta)


def _index(table_: Table, name: str) -> Index:
    return next(index for index in table_.indexes if index.name == name)


def _exact_texts(conn: Any, rows: Sequence[Any]) -> list[str]:
    """The chunk texts of ``rows`` (with ``text`` from :data:`_CHUNK_TEXT`, ``start``, ``end``, ``pk``).

    SQLite's substr stops at a NUL character, so a span that came back short is cut again
    in Python from its document's whole text, read only for those documents.
    """
    short = {row.pk for row in rows if len(row.text) != row.end - row.start}
    whole = dict(conn.execute(select(documents.c.pk, documents.c.text).where(documents.c.pk.in_(short))).all()) if short else {}
    return [whole[row.pk][row.start:row.end] if row.pk in whole else row.text for row in rows]


def _chunks_where(condition: ColumnElement[bool]) -> Select[tuple[int]]:
    return select(chunks.c.id).join(documents, chunks.c.document_pk == documents.c.pk).where(condition)


def _document_listing(*extra: Any) -> Select[Any]:
    chunk_count = select(func.count()).where(chunks.c.document_pk == documents.c.pk).scalar_subquery()
    return select(
        documents.c.doc_id, documents.c.title, documents.c.meta, func.length(documents.c.text).label("chars"),
        chunk_count.label("chunk_count"), documents.c.source, *extra,
    )


def _stored_document(row: Any, text_: str | None = None) -> StoredDocument:
    return StoredDocument(row.doc_id, row.title, json.loads(row.meta), int(row.chars), int(row.chunk_count), row.source, text_)


def _varints(blob: bytes, count: int) -> list[int]:
    """The first ``count`` SQLite varints of ``blob`` (big-endian 7-bit groups; a 9th byte carries 8 bits)."""
    values, pos = [], 0
    for _ in range(count):
        value = 0
        for i in range(9):
            byte = blob[pos]
            pos += 1
            if i == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        values.append(value)
    return values


def _single_varints(blobs: Sequence[bytes]) -> np.ndarray:
    """The varint each blob holds (a one-column FTS5 docsize record), decoded for all blobs at once."""
    sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    if not len(blobs):
        return sizes
    if sizes.max() > 3:  # over two million tokens in one chunk: never from searchkit's chunking
        return np.array([_varints(blob, 1)[0] for blob in blobs], dtype=np.int64)
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    values = np.zeros(len(blobs), dtype=np.int64)
    for byte in range(3):  # big-endian groups of 7 bits
        has = sizes > byte
        values[has] = (values[has] << 7) | (data[starts[has] + byte] & 0x7F)
    return values


@dataclass
class _LexicalSnapshot:
    """Every chunk's length in tokens (ids ascending) as of one store generation, and recent terms' postings."""

    generation: int
    ids: np.ndarray
    lengths: np.ndarray
    settling: int | None = None  # a later generation seen once, in a large collection
    terms: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict)  # term: (chunk, count) rows
    held: int = 0  # postings in ``terms``
    lock: threading.Lock = field(default_factory=threading.Lock)

    def postings(self, term: str) -> np.ndarray | None:
        with self.lock:
            pairs = self.terms.get(term)
            if pairs is not None:
                self.terms.move_to_end(term)
            return pairs

    def keep(self, term: str, pairs: np.ndarray) -> None:
        if len(pairs) > CACHED_POSTINGS // 4:
            return
        with self.lock:
            if term in self.terms:
                return
            pairs.setflags(write=False)  # shared by every query that uses the term
            self.terms[term] = pairs
            self.held += len(pairs)
            while self.held > CACHED_POSTINGS:
                _, dropped = self.terms.popitem(last=False)
                self.held -= len(dropped)

    def of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ``ids`` known, ascending; their lengths)."""
        where = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        known = self.ids[where] == ids if len(self.ids) else np.zeros(len(ids), dtype=bool)
        return ids[known], self.lengths[where[known]]


def _read_lengths(cursor: sqlite3.Cursor, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the chunks of ``ids`` the full-text index holds, ascending; their lengths), read from it."""
    sized = [
        row for batch in _batches(ids.tolist(), 5000)
        for row in cursor.execute(_FTS_LENGTHS.format(",".join(map(str, batch))))
    ]
    known = np.fromiter((row[0] for row in sized), dtype=np.int64, count=len(sized))
    lengths = _single_varints([row[1] for row in sized])
    order = np.argsort(known)
    return known[order], lengths[order]


def _split_types(types: str) -> frozenset[str]:
    return frozenset(types.split(",")) if types else frozenset()


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

