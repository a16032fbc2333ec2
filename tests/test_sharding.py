"""Shards of an index searched as one (in this process, no Ray): the same hits, scores and pages as the unsharded index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from searchkit import Document, FilterError, Index, SearchkitError
from searchkit.cli import app
from searchkit.distributed.router import ShardedIndex
from searchkit.distributed.sharding import SHARDS_FILE, ShardLayout, shard_index, shard_of
from searchkit.server import BackgroundServer, create_app
from searchkit import Client

from conftest import SMALL_CORPUS

# One document holds a field no other has: after the split, only one shard holds it.
RARE = Document("comet", "Comets are icy bodies that grow glowing tails of gas and dust near the Sun.", "Comets",
                {"topic": "astronomy", "year": 2023, "rare": "yes"})
LONG = Document("tides", " ".join(f"On day {i} the tide rose {i % 7 + 1} metres as the Moon's gravity pulled at the sea."
                                  for i in range(60)), "Tides",
                {"topic": "geology", "year": 2017})
CORPUS = SMALL_CORPUS + [RARE, LONG]
QUERIES = ["animals that purr", "programming language memory safety", "coffee brewing", "gravity of black holes",
           "tides and the moon", "bread yeast starter", "icy comets with tails"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Index, ShardedIndex, Path]:
    root = tmp_path_factory.mktemp("sharding")
    source = Index.create(root / "source", model=embedder, chunking={"max_tokens": 48})
    source.add(CORPUS)
    shard_index(root / "source", 3, root / "shards", model=embedder)
    sharded = ShardedIndex.open_local(root / "shards", model=embedder)
    yield source, sharded, root
    sharded.close()
    source.close()


def test_shard_splits_by_id_hash_and_copies_every_stored_vector(collection) -> None:
    source, _, root = collection
    layout = ShardLayout.read(root / "shards")
    assert layout.shards == 3 and layout.field_types["rare"] == ["string"]
    vectors = dict(zip(*_stored(source)))
    seen = 0
    for number, folder in enumerate(layout.paths(root / "shards")):
        with Index.open(folder, model=source.embedder) as shard:
            ids = [d.doc_id for d in shard.documents(0, 100).documents]
            assert ids and all(shard_of(doc_id, 3) == number for doc_id in ids)
            assert shard.config.chunking == source.config.chunking and shard.config.model == source.config.model
            for chunk_id, vector in zip(*_stored(shard)):
                row = shard.store.chunk_rows([int(chunk_id)])[int(chunk_id)]
                original = [c for c, r in source.store.chunk_rows(list(vectors)).items()
                            if (r.doc_id, r.start, r.end) == (row.doc_id, row.start, row.end)]
                assert len(original) == 1 and np.array_equal(vectors[original[0]], vector)
                seen += 1
    assert seen == source.store.counts()[1] and seen > len(CORPUS)  # the long document has several chunks


def _stored(index: Index) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = zip(*index.store.embeddings(index.config.model.dimension))
    return np.concatenate(ids), np.concatenate(vectors)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_sharded_search_equals_unsharded(collection, mode: str) -> None:
    source, sharded, _ = collection
    expected = source.search_batch(QUERIES, 8, mode=mode)
    found = sharded.search_batch(QUERIES, 8, mode=mode)
    for want, got in zip(expected, found):
        assert [(h.doc_id, h.start, h.end) for h in got] == [(h.doc_id, h.start, h.end) for h in want]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
        assert [h.rank for h in got] == list(range(1, len(want) + 1))


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_sharded_qa_rerank_equals_unsharded_at_the_readers_weight(collection, weight: float) -> None:
    from searchkit.reader import DEFAULT_RERANK_WEIGHT

    source, sharded, _ = collection
    try:
        for index in (source, sharded):
            index.reader.rerank_weight = weight
        expected = source.search_batch(QUERIES, 5, rerank="qa")
        found = sharded.search_batch(QUERIES, 5, rerank="qa")
    finally:
        for index in (source, sharded):
            index.reader.rerank_weight = DEFAULT_RERANK_WEIGHT
    for want, got in zip(expected, found):
        assert [(h.doc_id, h.start, h.end) for h in got] == [(h.doc_id, h.start, h.end) for h in want]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
    if weight == 1.0:  # the reader's weight applies: all retrieval, the plain order
        plain = source.search_batch(QUERIES, 5)
        assert [[h.doc_id for h in hits] for hits in expected] == [[h.doc_id for h in hits] for hits in plain]


@pytest.mark.parametrize(("fusion", "feedback"), [("weighted", 0.0), ("weighted", 1.0), ("rrf", 0.5)])
def test_sharded_hybrid_equals_unsharded_whatever_the_fusion(collection, fusion: str, feedback: float) -> None:
    source, sharded, _ = collection
    where = {"year": {"$gte": 2018}}
    expected = source.search_batch(QUERIES, 6, mode="hybrid", fusion=fusion, feedback=feedback, where=where)
    found = sharded.search_batch(QUERIES, 6, mode="hybrid", fusion=fusion, feedback=feedback, where=where)
    for want, got in zip(expected, found):
        assert [(h.doc_id, h.start) for h in got] == [(h.doc_id, h.start) for h in want]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5)


def test_hybrid_with_feedback_calls_each_shard_four_times(collection, monkeypatch) -> None:
    """Statistics, candidates (with each shard's likely feedback vectors), candidates again, hits: the
    feedback round costs no call of its own when its chunks came with the first candidates."""
    _, sharded, _ = collection
    called: list[str] = []
    for shard in sharded.shards:
        original = shard.submit
        monkeypatch.setattr(shard, "submit", lambda method, *args, original=original: called.append(method) or original(method, *args))
    sharded.search_batch(QUERIES, 5, mode="hybrid", feedback=0.5)
    assert called == ["term_statistics"] * 3 + ["candidates"] * 3 + ["candidates"] * 3 + ["hits"] * 3


def test_feedback_chunks_missing_from_the_first_round_are_fetched(collection, monkeypatch) -> None:
    source, sharded, _ = collection
    for shard in sharded.shards:
        original = shard.searcher.candidates
        monkeypatch.setattr(shard.searcher, "candidates", lambda *args, original=original: [
            (c, ids[:0], rows[:0]) for c, ids, rows in original(*args)])  # no likely vectors sent along
    expected = source.search_batch(QUERIES, 6, mode="hybrid", feedback=0.5)
    found = sharded.search_batch(QUERIES, 6, mode="hybrid", feedback=0.5)
    assert [[h.doc_id for h in hits] for hits in found] == [[h.doc_id for h in hits] for hits in expected]
    assert np.allclose([h.score for hits in found for h in hits], [h.score for hits in expected for h in hits], atol=1e-5)


def test_a_shard_losing_a_ranked_chunk_fails_the_search_rather_than_return_fewer_hits(collection, monkeypatch) -> None:
    _, sharded, _ = collection
    searcher = sharded.shards[0].searcher
    original = searcher.hits
    monkeypatch.setattr(searcher, "hits", lambda rankings: [hits[1:] for hits in original(rankings)])
    with pytest.raises(SearchkitError, match=r"shard 0 .* changed while it was searched"):
        sharded.search_batch(QUERIES, 8, mode="hybrid")


def test_lexical_scores_use_the_whole_collections_statistics(collection) -> None:
    """Scored with one shard's own numbers, a chunk's BM25 differs; with the summed ones it is the unsharded score."""
    source, sharded, _ = collection
    query = "gravity"
    want = {h.doc_id: h.score for h in source.search(query, 10, mode="lexical")}
    shard = next(s.searcher.index for s in sharded.shards if s.searcher.index.get("tides") is not None)
    alone = {h.doc_id: h.score for h in shard.search(query, 10, mode="lexical")}
    assert abs(alone["tides"] - want["tides"]) > 1e-3
    got = {h.doc_id: h.score for h in sharded.search(query, 10, mode="lexical")}
    assert got == pytest.approx(want, abs=1e-9)


def test_filters_are_pushed_down_and_checked_against_the_collection(collection) -> None:
    source, sharded, _ = collection
    for where in ({"rare": "yes"}, {"year": {"$gte": 2020}}, ["topic in cooking,animals"], {"rare": {"$ne": "yes"}}):
        want = source.search("things", 20, where=where)
        got = sharded.search("things", 20, where=where)
        assert [h.doc_id for h in got] == [h.doc_id for h in want], where
    with pytest.raises(FilterError, match="yeer"):
        sharded.search("things", 5, where={"yeer": 2020})
    with pytest.raises(FilterError):
        sharded.search("things", 5, where={"year": {"$gte": "2020"}})


def test_documents_get_info_and_len_match_the_unsharded_index(collection) -> None:
    source, sharded, _ = collection
    assert len(sharded) == len(source) == len(CORPUS)
    for offset, limit in ((0, 100), (3, 4), (11, 5)):
        want, got = source.documents(offset, limit), sharded.documents(offset, limit)
        assert got.total == want.total and [d.doc_id for d in got.documents] == [d.doc_id for d in want.documents]
    assert sharded.documents(0, 50, where={"topic": "cooking"}).total == 2
    assert sharded.get("comet").text == RARE.text and sharded.get("nothing") is None
    info = sharded.info()
    assert info["counts"] == source.info()["counts"] and info["metadata_fields"] == source.info()["metadata_fields"]
    per_shard = [s["counts"]["documents"] for s in info["shards"]]
    assert len(per_shard) == 3 and sum(per_shard) == len(CORPUS) and min(per_shard) > 0
    with pytest.raises(SearchkitError, match="shard it again"):
        sharded.add(CORPUS)


def test_sharded_collection_serves_the_same_api_and_client(collection) -> None:
    source, sharded, _ = collection
    with BackgroundServer(create_app(sharded)) as server, Client(server.url) as client:
        hits = client.search("animals that purr", 3)
        assert [h.doc_id for h in hits] == [h.doc_id for h in source.search("animals that purr", 3)]
        assert client.info()["counts"]["documents"] == len(CORPUS) and len(client) == len(CORPUS)
        assert client.get("comet").title == "Comets"
        assert client.documents(0, 2).total == len(CORPUS)
        answers = client.ask("what do cats hunt?", 1)
        assert answers and answers[0].doc_id == "cat"


def test_shard_cli_and_serve_options(tmp_path: Path, collection) -> None:
    _, _, root = collection
    runner = CliRunner()
    result = runner.invoke(app, ["shard", str(root / "source"), "--shards", "2", "--out", str(tmp_path / "two"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert sum(report["documents"]) == len(CORPUS) and (tmp_path / "two" / SHARDS_FILE).is_file()
    again = runner.invoke(app, ["shard", str(root / "source"), "--shards", "2", "--out", str(tmp_path / "two")])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    both = runner.invoke(app, ["serve", "--index", str(root / "source"), "--shards", str(tmp_path / "two")])
    assert both.exit_code == 2 and "one of the two" in both.output
    writes = runner.invoke(app, ["serve", "--shards", str(tmp_path / "two"), "--allow-writes"])
    assert writes.exit_code == 2 and "read-only" in writes.output
    missing = runner.invoke(app, ["serve", "--shards", str(tmp_path)])
    assert missing.exit_code == 2 and "searchkit shard" in missing.output
