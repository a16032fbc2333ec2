"""Every index type: search, deletes, filters, switching types, bringing your own vectors."""

from __future__ import annotations

import numpy as np
import pytest

from searchkit import ConfigError, Document, Index, QueryError
from searchkit.vectors import build, resolve_description

DIMENSION = 384
TYPES = ["Flat", "HNSW16", "IVF,Flat", "IVF8,SQ8", "IVF8,PQ16"]


def clustered(count: int, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIMENSION))
    vectors = centres[rng.integers(0, clusters, count)] + 0.3 * rng.normal(size=(count, DIMENSION))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def byo_index(make_index):
    """600 documents with their own vectors, half of them tagged 'even'."""
    vectors = clustered(600)
    documents = [Document(f"v{i}", f"vector document {i}", metadata={"even": i % 2 == 0, "n": i}) for i in range(600)]
    index = make_index()
    report = index.add(documents, embeddings=vectors)
    assert report.added == 600 and report.chunks_added == 600
    return index, vectors


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, allowed: set[int] | None = None) -> list[str]:
    scores = vectors @ query
    order = [i for i in np.argsort(-scores) if allowed is None or i in allowed]
    return [f"v{i}" for i in order[:k]]


@pytest.mark.parametrize("index_type", TYPES)
def test_every_type_finds_neighbours_and_never_returns_deleted(byo_index, index_type: str) -> None:
    index, vectors = byo_index
    index.reindex(index_type, nprobe=8)
    assert index.vectors.description == resolve_description(index_type, 600, DIMENSION)
    query = vectors[7]
    hits = index.search_vectors(query[None, :], k=10)[0]
    assert hits[0].doc_id == "v7"
    expected = exact_top(vectors, query, 10)
    # PQ codes trained on 600 points are coarse: its overlap with the exact top 10 is the loosest.
    minimum = {"Flat": 10, "IVF8,PQ16": 5}.get(index_type, 7)
    assert len(set(h.doc_id for h in hits) & set(expected)) >= minimum

    index.delete([f"v{i}" for i in range(0, 40)] + ["v7"])
    hits = index.search_vectors(vectors[:50], k=20)
    returned = {h.doc_id for row in hits for h in row}
    assert not returned & {f"v{i}" for i in range(40)} and len(hits[10]) == 20
    reopened = Index.open(index.path, model=index.embedder)
    assert not {h.doc_id for row in reopened.search_vectors(vectors[:50], k=20) for h in row} & {f"v{i}" for i in range(40)}


@pytest.mark.parametrize("index_type", TYPES)
def test_filtered_search_returns_k_matching_hits_on_every_type(byo_index, index_type: str) -> None:
    index, vectors = byo_index
    index.reindex(index_type)
    for where, allowed in [({"n": {"$lt": 12}}, set(range(12))), ({"even": True}, set(range(0, 600, 2)))]:
        hits = index.search_vectors(vectors[100][None, :], k=10, where=where)[0]
        assert len(hits) == 10 and {int(h.doc_id[1:]) for h in hits} <= allowed
    exact = exact_top(vectors, vectors[3], 5, allowed=set(range(12)))
    assert [h.doc_id for h in index.search_vectors(vectors[3][None, :], k=5, where={"n": {"$lt": 12}})[0]] == exact


def test_switching_types_and_back_preserves_exact_results(byo_index) -> None:
    index, vectors = byo_index
    before = [[h.chunk_id for h in row] for row in index.search_vectors(vectors[:20], k=10)]
    index.reindex("HNSW32", ef_search=64)
    assert index.config.vectors.description == "HNSW32" and index.vectors.ef_search == 64
    index.reindex("Flat")
    after = [[h.chunk_id for h in row] for row in index.search_vectors(vectors[:20], k=10)]
    assert after == before
    reopened = Index.open(index.path, model=index.embedder)
    assert reopened.config.vectors.description == "Flat"


def test_hnsw_masks_deletes_and_rebuilds_when_many_accumulate(byo_index) -> None:
    index, vectors = byo_index
    index.reindex("HNSW16")
    index.delete(["v1", "v2"])
    assert index.vectors.masked and len(index.vectors) == 598
    index.delete([f"v{i}" for i in range(3, 100)])
    assert not index.vectors.masked, "over 10% deleted: the HNSW graph is rebuilt without them"
    assert len(index.vectors) == 501 and index.vectors.description == "HNSW16"


def test_auto_is_exact_for_small_collections(byo_index) -> None:
    index, _ = byo_index
    index.reindex("auto")
    assert index.vectors.description == "Flat" and index.config.vectors.description == "auto"
    assert resolve_description("auto", 1_000_000, DIMENSION) == "HNSW32"
    assert resolve_description("IVF,SQ8", 1_000_000, DIMENSION) == "IVF4000,SQ8"


def test_bad_index_types_and_embeddings_are_clear_errors(byo_index) -> None:
    index, vectors = byo_index
    with pytest.raises(ConfigError, match="unsupported index type 'LSH'"):
        index.reindex("LSH")
    with pytest.raises(ConfigError, match="divides the dimension"):
        index.reindex("IVF,PQ7")
    with pytest.raises(ConfigError, match=r"shape \(2, 10\); this index needs \(2, 384\)"):
        index.add([Document("a", "x"), Document("b", "y")], embeddings=np.ones((2, 10)))
    with pytest.raises(ConfigError, match="NaN"):
        index.add([Document("a", "x")], embeddings=np.full((1, DIMENSION), np.nan))
    with pytest.raises(QueryError, match="query vectors have shape"):
        index.search_vectors(np.ones(DIMENSION), k=3)


def test_text_search_works_on_an_approximate_index(small_index) -> None:
    small_index.reindex("HNSW8")
    assert small_index.search("feline pet that catches mice", k=1)[0].doc_id == "cat"


def test_vector_index_build_trains_on_the_data() -> None:
    vectors = clustered(2000, seed=1)
    built = build(DIMENSION, "IVF,Flat", np.arange(2000, dtype=np.int64), vectors)
    assert built.index.is_trained and len(built) == 2000
    built.nprobe = built.index.nlist  # probe every list: exact
    scores, ids = built.search(vectors[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_a_row_still_short_after_the_widest_search_is_answered_exactly(byo_index, monkeypatch) -> None:
    import searchkit.vectors.base as base

    index, vectors = byo_index
    index.reindex("HNSW16", ef_search=1)
    index.delete([f"v{i}" for i in range(0, 50)])  # masked, below the rebuild threshold
    monkeypatch.setattr(base, "MAX_WIDENING", 1)  # no widening: only the exact fallback can fill a row
    hits = index.search_vectors(vectors[:20], k=40, where={"even": False})
    assert all(len(row) == 40 for row in hits)
    assert all(int(h.doc_id[1:]) % 2 == 1 and int(h.doc_id[1:]) >= 50 for row in hits for h in row)


def test_a_chunk_deleted_between_ranking_and_reading_is_ranked_again(byo_index, monkeypatch) -> None:
    index, vectors = byo_index
    real_nearest = index._retriever.nearest
    calls = []

    def stale_once(queries, k, condition):
        calls.append(k)
        ranking = real_nearest(queries, k, condition)
        return [[(10**9, 1.0)] + row[:-1] for row in ranking] if len(calls) == 1 else ranking

    monkeypatch.setattr(index._retriever, "nearest", stale_once)
    hits = index.search_vectors(vectors[:1], k=5)[0]
    assert len(calls) == 2 and len(hits) == 5 and hits[0].doc_id == "v0"


@pytest.mark.parametrize("step", [1, 2], ids=["ids in one run", "ids with gaps"])
@pytest.mark.parametrize("description", ["Flat", "HNSW16"])
def test_a_selective_filter_is_scored_exactly_by_position_or_scanning(description: str, step: int) -> None:
    """Up to half the vectors are scored by position, more are scanned in place; both exact, also after removals."""
    vectors = clustered(1000, seed=3)
    ids = np.arange(10, 10 + 1000 * step, step, dtype=np.int64)
    backend = build(DIMENSION, description, ids, vectors)
    backend.remove(ids[:100])  # Flat moves later vectors up: positions must follow
    live = {int(i): vectors[n] for n, i in enumerate(ids) if n >= 100}
    queries = clustered(4, seed=4)
    for allowed in (ids[100:110], ids[100::3], np.concatenate([ids[:5], ids[500:505], [10**6]]), ids[50:],
                    np.asarray([ids[-1] + 1, 3])):
        scores, found = backend.search(queries, 5, np.asarray(allowed, dtype=np.int64))
        candidates = [int(i) for i in allowed if int(i) in live]
        for row, query in enumerate(queries):
            expected = sorted(candidates, key=lambda i: -float(live[i] @ query))[:5]
            assert found[row].tolist() == expected + [-1] * (5 - len(expected))
            assert np.allclose(scores[row][:len(expected)], [live[i] @ query for i in expected], atol=1e-5)
            assert np.isneginf(scores[row][len(expected):]).all()


@pytest.mark.parametrize("index_type", TYPES)
def test_hybrid_reads_each_candidates_stored_vector_whatever_the_type(byo_index, index_type: str) -> None:
    """Flat and HNSW hand over the vectors they keep; the others, and ids the backend lacks, come from the store."""
    index, vectors = byo_index
    index.reindex(index_type=index_type)
    ids = np.array(sorted(index.vectors.ids().tolist())[:50] + [10**9], dtype=np.int64)  # the last one exists nowhere
    found, got = index._retriever.stored(ids)
    want_ids, want = index.store.embeddings_for(ids, DIMENSION)
    order = np.argsort(found)
    assert found[order].tolist() == want_ids.tolist() and len(found) == 50
    assert np.array_equal(got[order], want)
    in_memory, _ = index.vectors.vectors(ids)
    assert len(in_memory) == (50 if index_type in ("Flat", "HNSW16") else 0)
