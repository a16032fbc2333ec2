from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import ANIMALS, SMALL_CORPUS
from searchkit import (
    ChunkingConfig,
    Document,
    FilterError,
    Index,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    QueryError,
    read_sources,
)
from searchkit.state import MANIFEST_FILE, read_manifest
from searchkit.state import VECTORS_STATE_FILE as STATE_FILE, VECTORS_FILE


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("feline pet that catches mice", "cat"),
        ("how do plants make sugar from light", "photosynthesis"),
        ("memory-safe language without garbage collection", "rust"),
        ("coffee made under pressure", "espresso"),
        ("gravity so strong light cannot escape", "black-hole"),
    ],
)
def test_clear_queries_rank_the_right_document_first(small_index: Index, query: str, expected: str) -> None:
    hits = small_index.search(query, k=3)
    assert hits[0].doc_id == expected
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score > hits[1].score >= hits[2].score
    assert 0.3 < hits[0].score <= 1.0


def test_hit_carries_text_offsets_title_and_metadata(small_index: Index) -> None:
    hit = small_index.search("sourdough starter yeast", k=1)[0]
    source = next(d for d in SMALL_CORPUS if d.id == "bread")
    assert hit.doc_id == "bread" and hit.title == "Sourdough"
    assert hit.text == source.text[hit.start:hit.end]
    assert hit.metadata == {"topic": "cooking", "year": 2020}
    assert set(hit.to_dict()) >= {"doc_id", "chunk_id", "score", "text", "title", "metadata"}


def test_search_batch_matches_single_searches(small_index: Index) -> None:
    queries = ["barking dog", "eruption of magma", "relational database query"]
    batch = small_index.search_batch(queries, k=2)
    assert [hits[0].doc_id for hits in batch] == ["dog", "volcano", "sql"]
    for query, hits in zip(queries, batch):
        single = small_index.search(query, k=2)
        assert [h.chunk_id for h in single] == [h.chunk_id for h in hits]
        assert [h.score for h in single] == pytest.approx([h.score for h in hits], abs=1e-5)


def test_k_larger_than_collection_returns_everything(small_index: Index) -> None:
    assert len(small_index.search("anything at all", k=100)) == len(SMALL_CORPUS)


def test_long_document_is_chunked_with_offsets_that_cover_it(make_index) -> None:
    paragraphs = [f"Paragraph {i} talks about topic number {i} in some detail. " * 6 for i in range(30)]
    text = "\n\n".join(paragraphs)
    index = make_index([Document("long", text, "Long")], chunking=ChunkingConfig(max_tokens=64, overlap_tokens=8))
    rows = index.store.chunk_rows(index.store.all_chunk_ids().tolist())
    spans = sorted((r.start, r.end) for r in rows.values())
    assert len(spans) > 10
    assert spans[0][0] == 0 and spans[-1][1] == len(text.rstrip())
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start < end, "consecutive chunks overlap"
    assert all(r.text == text[r.start:r.end] for r in rows.values())


def test_reingest_skips_unchanged_and_reembeds_changed(make_index, embedder) -> None:
    index = make_index(SMALL_CORPUS)
    old_chunk = index.search("wild yeast starter", k=1)[0].chunk_id
    before = embedder.texts_encoded
    report = index.add(SMALL_CORPUS)
    assert (report.added, report.updated, report.unchanged) == (0, 0, len(SMALL_CORPUS))
    assert embedder.texts_encoded == before, "unchanged documents must not be embedded again"

    changed = [replace(d, text="Baguettes are long thin loaves of French bread with a crisp crust.")
               if d.id == "bread" else d for d in SMALL_CORPUS]
    report = index.add(changed)
    assert (report.added, report.updated, report.unchanged) == (0, 1, len(SMALL_CORPUS) - 1)
    assert embedder.texts_encoded == before + 1
    assert report.chunks_removed == 1
    hit = index.search("long French loaf with crisp crust", k=1)[0]
    assert hit.doc_id == "bread" and "Baguettes" in hit.text and hit.chunk_id != old_chunk
    assert index.store.counts() == (len(SMALL_CORPUS), len(SMALL_CORPUS))
    assert len(index.vectors) == len(SMALL_CORPUS)


def test_metadata_only_change_updates_without_embedding(make_index, embedder) -> None:
    index = make_index(SMALL_CORPUS)
    before = embedder.texts_encoded
    edited = [replace(d, metadata={**d.metadata, "year": 1999}) if d.id == "sql" else d for d in SMALL_CORPUS]
    report = index.add(edited)
    assert report.updated == 1 and embedder.texts_encoded == before
    assert index.search("database query language", k=1, where={"year": 1999})[0].doc_id == "sql"


def test_delete_removes_documents_and_keeps_other_ids(make_index) -> None:
    index = make_index(SMALL_CORPUS)
    ids_before = {h.doc_id: h.chunk_id for h in index.search("anything", k=100)}
    report = index.delete(["cat", "missing-id"])
    assert report.deleted == ["cat"] and report.not_found == ["missing-id"] and report.chunks_removed == 1
    hits = index.search("feline pet that catches mice", k=100)
    assert "cat" not in {h.doc_id for h in hits}
    assert {h.doc_id: h.chunk_id for h in hits} == {d: c for d, c in ids_before.items() if d != "cat"}
    reopened = Index.open(index.path, model=index.embedder)
    assert "cat" not in {h.doc_id for h in reopened.search("feline", k=100)}
    assert len(reopened) == len(SMALL_CORPUS) - 1


def test_filters_apply_before_ranking(small_index: Index) -> None:
    hits = small_index.search("feline pet that catches mice", k=3, where={"topic": "cooking"})
    assert sorted(h.doc_id for h in hits) == ["bread", "espresso"]
    assert all(h.metadata["topic"] == "cooking" for h in hits)

    hits = small_index.search("animal", k=10, where={"year": {"$gte": 2020}, "topic": {"$in": ["animals", "astronomy"]}})
    assert {h.doc_id for h in hits} == {"dog", "parrot", "black-hole"}

    hits = small_index.search("animal", k=10, where={"$or": [{"legs": 2}, {"doc_id": "sql"}]})
    assert {h.doc_id for h in hits} == {"parrot", "sql"}

    hits = small_index.search("animal", k=10, where={"topic": {"$ne": "animals"}, "year": {"$lt": 2016}})
    assert {h.doc_id for h in hits} == {"photosynthesis", "rust", "sql"}
    assert small_index.search("animal", k=5, where={"topic": "nothing-has-this"}) == []


def test_selective_filter_returns_k_hits_when_k_exist(make_index) -> None:
    documents = [Document(f"d{i}", f"Common filler document number {i} about nothing special.",
                          metadata={"rare": i % 50 == 0}) for i in range(300)]
    index = make_index(documents)
    hits = index.search("filler document", k=5, where={"rare": True})
    assert len(hits) == 5 and all(int(h.doc_id[1:]) % 50 == 0 for h in hits)
    assert len(index.search("filler document", k=10, where={"rare": True})) == 6


def test_bad_filters_and_queries_are_clear_errors(small_index: Index) -> None:
    with pytest.raises(FilterError, match="unknown filter field 'colour'.*topic"):
        small_index.search("x", where={"colour": "red"})
    with pytest.raises(FilterError, match="unknown operator '\\$regex'"):
        small_index.search("x", where={"topic": {"$regex": "a.*"}})
    with pytest.raises(FilterError, match="non-empty list"):
        small_index.search("x", where={"topic": {"$in": "animals"}})
    with pytest.raises(QueryError, match="empty"):
        small_index.search("   ")
    with pytest.raises(QueryError, match="over the limit"):
        small_index.search("word " * 2000)
    with pytest.raises(QueryError, match="positive"):
        small_index.search("cats", k=0)


def test_reopen_gives_the_same_results(small_index: Index) -> None:
    before = small_index.search("volcanic eruption", k=3)
    reopened = Index.open(small_index.path, model=small_index.embedder)
    after = reopened.search("volcanic eruption", k=3)
    assert [(h.doc_id, h.chunk_id) for h in after] == [(h.doc_id, h.chunk_id) for h in before]
    assert reopened.config == small_index.config


def test_manifest_round_trips_the_config(small_index: Index) -> None:
    manifest = json.loads((small_index.path / MANIFEST_FILE).read_text())
    assert manifest["counts"] == {"documents": len(SMALL_CORPUS), "chunks": len(SMALL_CORPUS)}
    assert read_manifest(small_index.path) == small_index.config
    assert manifest["config"]["model"]["weights_sha256"].startswith("53aa5117")


class OtherModel:
    """The real model behind a different identity, as a differently trained model would have."""

    def __init__(self, real, dimension: int | None = None) -> None:
        self._real = real
        self.identity = replace(real.identity, name="someone/other-model", weights_sha256="0" * 64,
                                dimension=dimension or real.identity.dimension)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_opening_with_a_different_model_names_both(small_index: Index, embedder) -> None:
    with pytest.raises(ModelMismatchError) as error:
        Index.open(small_index.path, model=OtherModel(embedder))
    message = str(error.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in message and "someone/other-model" in message
    with pytest.raises(ModelMismatchError, match="dim 768"):
        Index.open(small_index.path, model=OtherModel(embedder, dimension=768))


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index at"):
        Index.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="not a searchkit index"):
        Index.open(tmp_path / "empty")


def test_lagging_or_missing_vector_file_is_caught_up_on_open(make_index, embedder) -> None:
    index = make_index(SMALL_CORPUS[:5])
    stale_vectors = (index.path / VECTORS_FILE).read_bytes()
    stale_state = (index.path / STATE_FILE).read_bytes()
    index.add(SMALL_CORPUS[5:])
    index.delete(["cat"])
    (index.path / VECTORS_FILE).write_bytes(stale_vectors)
    (index.path / STATE_FILE).write_bytes(stale_state)
    reopened = Index.open(index.path, model=embedder)
    assert len(reopened.vectors) == len(SMALL_CORPUS) - 1
    assert reopened.search("espresso coffee", k=1)[0].doc_id == "espresso"
    assert "cat" not in {h.doc_id for h in reopened.search("feline", k=20)}

    (index.path / VECTORS_FILE).write_bytes(b"garbage")
    again = Index.open(index.path, model=embedder)
    assert len(again.vectors) == len(SMALL_CORPUS) - 1


def test_reader_sees_writes_made_by_another_index_object(make_index, embedder) -> None:
    writer = make_index(SMALL_CORPUS[:3])
    reader = Index.open(writer.path, model=embedder)
    writer.add([Document("new", "Quantum computers use qubits in superposition.", "Quantum")])
    assert reader.search("qubits and superposition", k=1)[0].doc_id == "new"


def test_reindex_rebuilds_identical_results_without_embedding(small_index: Index, embedder) -> None:
    before = [(h.chunk_id, round(h.score, 5)) for h in small_index.search("bread and coffee", k=5)]
    encoded = embedder.texts_encoded
    (small_index.path / VECTORS_FILE).unlink()
    assert small_index.reindex() == len(SMALL_CORPUS)
    assert embedder.texts_encoded == encoded
    reopened = Index.open(small_index.path, model=embedder)
    assert [(h.chunk_id, round(h.score, 5)) for h in reopened.search("bread and coffee", k=5)] == before


def test_one_writer_at_a_time(small_index: Index, embedder) -> None:
    other = Index.open(small_index.path, model=embedder)
    with small_index._writing():
        with pytest.raises(IndexLockedError, match="another process is writing"):
            other.add([Document("x", "some text")])
    assert other.add([Document("x", "some text")]).added == 1


def test_bad_documents_are_reported_and_the_rest_indexed(make_index) -> None:
    index = make_index(SMALL_CORPUS[:2])
    report = index.add(
        [
            Document("ok", "A perfectly fine document about gardening and tomatoes."),
            Document("empty", "   "),
            Document("", "text without id"),
            Document("huge", "word " * 1000),
            Document("ok", "A duplicate id within the same ingest."),
            {"id": "bad-meta", "text": "fine text", "metadata": {"tags": ["a", "b"]}},
        ],
        max_document_chars=2000,
    )
    reasons = [p.reason for p in report.failed]
    assert report.added == 1 and len(report.failed) == 5
    assert any("text is empty" in r for r in reasons)
    assert any("id is empty" in r for r in reasons)
    assert any("5,000 characters, over the limit of 2,000" in r for r in reasons)
    assert any("duplicate document id 'ok'" in r for r in reasons)
    assert any("'tags' holds a list" in r for r in reasons)
    assert index.store.counts()[0] == 3
    assert {h.doc_id for h in index.search("anything", k=10)} == {"cat", "dog", "ok"}


def test_an_integer_beyond_64_bits_is_reported_and_the_rest_indexed(make_index, tmp_path) -> None:
    """Regression: SQLite's OverflowError used to abort the whole add with a traceback."""
    index = make_index(ANIMALS[:1])
    report = index.add([Document("huge-n", "A document with an enormous count.", metadata={"n": 2**70}),
                        Document("small-n", "A document with a small count.", metadata={"n": -(2**63)})])
    assert report.added == 1 and [p.where for p in report.failed] == ["document 'huge-n'"]
    assert "'n' is 1180591620717411303424, beyond the 64-bit integers" in report.failed[0].reason
    assert index.get("huge-n") is None and index.get("small-n").metadata == {"n": -(2**63)}
    corpus = tmp_path / "records.jsonl"
    corpus.write_text('{"id": "j1", "text": "first record", "n": 1}\n{"id": "j2", "text": "second record", "n": 99999999999999999999999}\n')
    report = index.add(read_sources([corpus]))
    assert report.added == 1 and report.failed[0].where.endswith("records.jsonl:2")
    assert "beyond the 64-bit integers" in report.failed[0].reason
    assert {h.doc_id for h in index.search("record", k=10, mode="lexical")} == {"j1"}


def test_vectors_match_the_store(small_index: Index) -> None:
    stored = dict(zip(*next(small_index.store.embeddings(384))))
    ids = small_index.vectors.ids()
    assert sorted(ids.tolist()) == sorted(stored)
    for chunk_id in ids[:3]:
        assert np.allclose(small_index.vectors.index.reconstruct(int(chunk_id)), stored[chunk_id])


def test_stores_without_derived_tables_are_migrated_on_open(small_index: Index, embedder) -> None:
    from sqlalchemy import text

    with small_index.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE field_values"))
        conn.execute(text("DROP TABLE chunks_fts"))
    small_index.close()
    reopened = Index.open(small_index.path, model=embedder)
    assert [h.doc_id for h in reopened.search("pet", k=5, where={"legs": 2})] == ["parrot"]
    assert reopened.search("lactic acid bacteria", k=1, mode="lexical")[0].doc_id == "bread"
