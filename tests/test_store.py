"""The store's layout: text stored once, older layouts migrated with identical answers."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from searchkit import Document, Index, IndexCorruptError
from searchkit.store import Store

from conftest import SMALL_CORPUS

# Documents of several small chunks each, with and without titles, with characters of
# one, two and four UTF-8 bytes (SQLite counts characters, as Python does) and a NUL
# (where SQLite's text functions stop short).
LONG = [
    Document("tides", "The Moon pulls the oceans toward it. High tide follows the Moon around the Earth. "
             "Spring tides come when the Sun and Moon line up; neap tides when they stand at right angles. "
             "Tidal ranges reach fifteen metres in the Bay of Fundy.", "Tides", {"topic": "space", "year": 2023}),
    Document("café", "Le café crème est servi à Paris dès l'aube. Les cafés de Montréal torréfient leurs grains "
             "sur place, et l'espresso y est très corsé. Un café noir ☕ se boit sans sucre ni lait, 🙂 toujours.",
             "", {"topic": "cooking", "year": 2019}),
    Document("nul", "A record read from a damaged export\x00 still holds words after the NUL character, like "
             "zeppelin and quasar, which must be searchable and cut at the same offsets.", "Damaged export",
             {"topic": "data"}),
]
CORPUS = SMALL_CORPUS + LONG
CHUNKING = {"max_tokens": 24, "overlap_tokens": 4}
QUERIES = ["what makes the tides", "café à Paris", "zeppelin quasar", "lactic acid bacteria", "memory safety"]

# Layout 0, as searchkit wrote it before text was stored once: chunks hold their own text, the
# full-text index its own copy of every body, content hashes are 64 hex digits, and field values
# a table with a rowid and two indexes.
OLD_LAYOUT = [
    "PRAGMA page_size = 4096",
    "PRAGMA journal_mode = WAL",
    """CREATE TABLE documents (pk INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, doc_id VARCHAR NOT NULL,
        title TEXT NOT NULL, text TEXT NOT NULL, content_hash VARCHAR(64) NOT NULL, meta TEXT NOT NULL,
        origin TEXT NOT NULL, source TEXT NOT NULL, UNIQUE (doc_id))""",
    "CREATE INDEX ix_documents_source ON documents (source)",
    "CREATE TABLE fields (name VARCHAR NOT NULL, types TEXT DEFAULT '' NOT NULL, PRIMARY KEY (name))",
    'CREATE TABLE state ("key" VARCHAR NOT NULL, value INTEGER NOT NULL, PRIMARY KEY ("key"))',
    """CREATE TABLE chunks (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, document_pk INTEGER NOT NULL,
        ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
        embedding BLOB NOT NULL, FOREIGN KEY(document_pk) REFERENCES documents (pk) ON DELETE CASCADE)""",
    "CREATE INDEX ix_chunks_document_pk ON chunks (document_pk)",
    """CREATE TABLE field_values (document_pk INTEGER NOT NULL, name VARCHAR NOT NULL, value BLOB,
        FOREIGN KEY(document_pk) REFERENCES documents (pk) ON DELETE CASCADE)""",
    "CREATE INDEX field_values_lookup ON field_values (name, value, document_pk)",
    "CREATE INDEX ix_field_values_document_pk ON field_values (document_pk)",
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(body, tokenize = 'porter unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE chunks_fts_instances USING fts5vocab(chunks_fts, 'instance')",
]


def write_old_layout(source: Path, target: Path) -> None:
    """Copy the store at ``source`` into a new file at ``target`` in the old layout, row for row."""
    with closing(sqlite3.connect(target)) as old:
        for statement in OLD_LAYOUT:
            old.execute(statement)
        old.execute("ATTACH DATABASE ? AS new", (str(source),))
        for name in ("fields", "state", "field_values"):
            old.execute(f"INSERT INTO main.{name} SELECT * FROM new.{name}")
        old.executemany(
            "INSERT INTO main.documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(pk, doc_id, title, text, full_hash(title, text), meta, origin, source) for pk, doc_id, title, text, meta, origin, source
             in old.execute("SELECT pk, doc_id, title, text, meta, origin, source FROM new.documents")],
        )
        whole = dict(old.execute("SELECT pk, text FROM new.documents"))
        rows = old.execute('SELECT id, document_pk, ordinal, start, "end", embedding FROM new.chunks').fetchall()
        old.executemany(
            'INSERT INTO main.chunks (id, document_pk, ordinal, start, "end", text, embedding) VALUES (?, ?, ?, ?, ?, ?, ?)',
            [(i, pk, o, s, e, whole[pk][s:e], blob) for i, pk, o, s, e, blob in rows],
        )
        # how that version filled its full-text index on migration, and what its writes put there
        old.executemany(
            "INSERT INTO main.chunks_fts (rowid, body) VALUES (?, ?)",
            [(i, f"{title} {text}" if title else text) for i, title, text in old.execute(
                "SELECT c.id, d.title, c.text FROM main.chunks c JOIN main.documents d ON c.document_pk = d.pk")],
        )
        old.execute("UPDATE main.sqlite_sequence SET seq = (SELECT seq FROM new.sqlite_sequence s "
                    "WHERE s.name = main.sqlite_sequence.name)")
        old.commit()
        old.execute("DETACH DATABASE new")
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def full_hash(title: str, text: str) -> str:
    """The content hash layout 0 kept: all 64 hex digits of the SHA-256."""
    return hashlib.sha256(title.encode("utf-8", "surrogatepass") + b"\x00" + text.encode("utf-8", "surrogatepass")).hexdigest()


def answers(index: Index) -> dict[str, object]:
    """Everything a reader can get from the index: hits with scores, chunk texts and offsets, counts."""
    found: dict[str, object] = {"counts": index.store.counts(), "info": index.info()["counts"]}
    for query in QUERIES:
        for mode in ("dense", "lexical", "hybrid"):
            found[f"{mode} {query}"] = [
                (h.chunk_id, h.doc_id, round(h.score, 6), h.text, h.start, h.end, h.title, h.metadata)
                for h in index.search(query, k=8, mode=mode)
            ]
    found["filtered"] = [(h.chunk_id, h.doc_id) for h in index.search("food", k=5, where={"topic": "cooking"}, mode="lexical")]
    rows = index.store.chunk_rows(index.store.all_chunk_ids().tolist())
    found["chunks"] = sorted((r.chunk_id, r.doc_id, r.title, r.text, r.start, r.end) for r in rows.values())
    postings = index.store.term_postings(["tide", "caf", "zeppelin", "the"])
    found["postings"] = (postings.chunks, postings.tokens, {t: (a.tolist(), b.tolist()) for t, (a, b) in postings.terms.items()},
                         postings.lengths[0].tolist(), postings.lengths[1].tolist())
    return found


def layout(store: Path) -> tuple[set[str], set[str], str]:
    with closing(sqlite3.connect(store)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        chunk_columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
        fts = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'chunks_fts'").fetchone()[0]
    return tables, chunk_columns, fts


def compact(store: Path) -> bool:
    """Whether the store is in the current layout: text once, compact hashes, source index and field values."""
    tables, chunk_columns, fts = layout(store)
    with closing(sqlite3.connect(store)) as conn:
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE name IN ('field_values', 'ix_documents_source')"))
        hashes = {kind for (kind,) in conn.execute("SELECT DISTINCT typeof(content_hash) || length(content_hash) FROM documents")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return (
        "text" not in chunk_columns and "chunks_fts_content" not in tables and "content = ''" in fts
        and "WITHOUT ROWID" in sql["field_values"] and "WHERE source != ''" in sql["ix_documents_source"]
        and hashes <= {"blob16"} and version == 1
    )


@pytest.fixture
def built(make_index: Callable[..., Index]) -> Index:
    return make_index(CORPUS, chunking=CHUNKING)


def test_text_is_stored_once_and_chunks_are_spans_of_their_document(built: Index) -> None:
    assert compact(built.path / "store.sqlite")
    rows = built.store.chunk_rows(built.store.all_chunk_ids().tolist()).values()
    assert len(rows) > len(CORPUS)  # several chunks per long document
    texts = {d.id: d.text for d in CORPUS}
    assert all(r.text == texts[r.doc_id][r.start:r.end] and r.text for r in rows)
    nul = [r for r in rows if r.doc_id == "nul"]
    assert any("\x00" in r.text for r in nul) and any(r.start > texts["nul"].index("\x00") for r in nul)
    assert built.search("zeppelin quasar", k=1, mode="lexical")[0].doc_id == "nul"
    assert built.search("torréfient grains", k=1, mode="lexical")[0].doc_id == "café"


def test_deleting_and_replacing_keep_the_full_text_index_exact(built: Index, make_index: Callable[..., Index]) -> None:
    """A contentless index forgets a chunk only when given its exact body: after deletes and
    updates its statistics are those of an index built from the remaining documents alone."""
    changed = Document("tides", "Tides rise and fall twice a day as the Earth turns under the Moon's pull.", "Tides")
    built.delete(["nul", "café", "cat"])
    built.add([changed])
    remaining = [changed] + [d for d in CORPUS if d.id not in {"nul", "café", "cat", "tides"}]
    fresh = make_index(remaining, name="fresh", chunking=CHUNKING)
    terms = ["zeppelin", "caf", "cat", "tide", "moon", "the", "felin"]
    by_doc = []
    for index in (built, fresh):
        postings = index.store.term_postings(terms)
        chunk_docs = index.store.chunk_documents(index.store.all_chunk_ids().tolist())
        by_doc.append((postings.chunks, postings.tokens, sorted(
            (term, chunk_docs[int(i)], int(n)) for term, (ids, counts) in postings.terms.items() for i, n in zip(ids, counts)
        ), sorted(postings.lengths[1].tolist())))
        assert index.store.counts()[1] == postings.chunks
    assert by_doc[0] == by_doc[1]
    assert "zeppelin" not in built.store.term_postings(["zeppelin"]).terms
    assert [h.doc_id for h in built.search("moon pull", k=3, mode="lexical")][:1] == ["tides"]


def test_a_store_in_the_old_layout_is_migrated_with_identical_answers(built: Index, embedder, tmp_path: Path) -> None:
    before = answers(built)
    built.close()
    old = tmp_path / "old"
    shutil.copytree(built.path, old, ignore=shutil.ignore_patterns("store.sqlite*"))
    write_old_layout(built.path / "store.sqlite", old / "store.sqlite")
    tables, chunk_columns, _ = layout(old / "store.sqlite")
    assert "text" in chunk_columns and "chunks_fts_content" in tables and not compact(old / "store.sqlite")
    assert Store(old / "store.sqlite").needs_migration

    migrated = Index.open(old, model=embedder)
    assert compact(old / "store.sqlite") and not migrated.store.needs_migration
    assert answers(migrated) == before
    assert [h.doc_id for h in migrated.search("café", k=3, where={"year": {"$gte": 2019}}, mode="lexical")][:1] == ["café"]
    again = migrated.add(CORPUS)  # the hashes were carried over: nothing is re-embedded
    assert (again.unchanged, again.added, again.updated) == (len(CORPUS), 0, 0)

    # writes after the migration keep the two in step, deletes of migrated chunks included
    reopened = Index.open(built.path, model=embedder)
    for index in (migrated, reopened):
        index.delete(["tides", "nul"])
        index.add([Document("kite", "A kite rides the wind on a long string.", "Kites", {"topic": "toys"})])
    assert answers(migrated) == answers(reopened)
    migrated.close()
    reopened.close()


def test_a_chunk_that_is_not_its_span_stops_the_migration_unchanged(built: Index, embedder, tmp_path: Path) -> None:
    built.close()
    old = tmp_path / "old"
    shutil.copytree(built.path, old, ignore=shutil.ignore_patterns("store.sqlite*"))
    write_old_layout(built.path / "store.sqlite", old / "store.sqlite")
    with closing(sqlite3.connect(old / "store.sqlite")) as conn:
        conn.execute("UPDATE chunks SET text = 'edited' WHERE id = 3")
        conn.commit()
    with pytest.raises(IndexCorruptError, match="chunk 3 holds text that is not its span"):
        Index.open(old, model=embedder)
    tables, chunk_columns, _ = layout(old / "store.sqlite")
    assert "text" in chunk_columns and "chunks_fts_content" in tables
