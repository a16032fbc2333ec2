from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL_CORPUS
from searchkit import Document, QueryError
from searchkit.lexical import QueryAnalyzer
from searchkit.retrieval import Candidates, Fusion, LexicalSide, candidates_of, expand_queries, fuse, hybrid_rank, reciprocal_rank_fusion

HOSTILE = [
    '"unbalanced quote',
    "bread*",
    "-yeast",
    "bread AND NOT yeast",
    "(sourdough OR",
    "NEAR(bread yeast)",
    "title:bread",
    "^bread",
    "'); DROP TABLE chunks; --",
    "bread \"\" ''",
    "{body} : bread",
    "***",
]


def _candidates(ids: list[int], dense: list[float], lexical: list[float]) -> Candidates:
    return Candidates(np.array(ids, dtype=np.int64), np.array(dense), np.array(lexical))


def test_rrf_with_hand_made_rankings() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62) and fused[4] == pytest.approx(1 / 63)
    candidates = _candidates([1, 2, 3, 4], [0.9, 0.8, 0.7, 0.1], [9.0, 0.0, 12.0, 1.0])
    assert [item for item, _ in fuse(candidates, Fusion.RRF, depth=3)] == [1, 3, 2, 4]


def test_weighted_fusion_mixes_z_scores_over_the_union() -> None:
    candidates = _candidates([1, 2, 3, 4], [0.9, 0.5, 0.1, 0.3], [0.0, 0.0, 30.0, 10.0])
    fused = dict(fuse(candidates, Fusion.WEIGHTED, weight=0.5))
    dense, lexical = np.array([0.9, 0.5, 0.1, 0.3]), np.array([0.0, 0.0, 30.0, 10.0])
    expected = 0.5 * (dense - dense.mean()) / dense.std() + 0.5 * (lexical - lexical.mean()) / lexical.std()
    assert [fused[i] for i in (1, 2, 3, 4)] == pytest.approx(expected.tolist())
    assert fuse(Candidates.empty(), Fusion.WEIGHTED) == []
    assert fuse(_candidates([7], [0.3], [0.0]), Fusion.WEIGHTED) == [(7, 0.0)]  # one candidate: nothing to prefer


def test_fusion_takes_the_top_of_each_list_and_breaks_ties_by_id() -> None:
    candidates = _candidates([5, 2, 9, 8], [1.0, 1.0, 0.2, 0.1], [0.0, 0.0, 0.0, 3.0])
    assert [item for item, _ in fuse(candidates, Fusion.WEIGHTED, weight=1.0, depth=2)] == [2, 5, 8]  # 9 is in neither top 2


def test_asking_for_more_hits_does_not_reorder_the_first_ones() -> None:
    """Deeper candidate lists (k above 100) are scaled with the statistics of the 100-long lists, so
    the chunks of those lists keep their order and scores: an evaluation at k=300 ranks its first 10
    as a search for 10 does."""
    rng = np.random.default_rng(7)
    lexical = np.where(rng.uniform(size=500) < 0.6, rng.gamma(2.0, 3.0, size=500), 0.0)
    candidates = _candidates(list(range(500)), rng.normal(0.3, 0.1, size=500).tolist(), lexical.tolist())
    shallow = fuse(candidates, Fusion.WEIGHTED, 0.6, depth=100)
    deep = dict(fuse(candidates, Fusion.WEIGHTED, 0.6, depth=300))
    assert [deep[i] for i, _ in shallow] == pytest.approx([score for _, score in shallow])


def test_a_chunk_missing_from_one_list_gets_its_true_score_there() -> None:
    """A lexical candidate the dense top list did not reach is scored by its own cosine, not as
    that list's worst: here it is nearly as close to the query as the dense top hit, and wins."""
    query = np.array([1.0, 0.0], dtype=np.float32)
    stored = {2: np.array([0.2, 0.98], dtype=np.float32), 3: np.array([0.8, 0.6], dtype=np.float32)}

    def embeddings(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = [i for i in ids.tolist() if i in stored]
        return np.array(found, dtype=np.int64), np.array([stored[i] for i in found]).reshape(-1, 2)

    lexical = LexicalSide.of((np.array([2, 3, 4], dtype=np.int64), np.array([1.0, 5.0, 2.0])), 3, embeddings)
    assert lexical.best.tolist() == [3, 2]  # chunk 4 has no stored vector (deleted meanwhile): left out
    candidates = candidates_of(query, (np.array([1, 2]), np.array([0.85, 0.2])), lexical)
    assert dict(zip(candidates.ids.tolist(), candidates.dense.tolist())) == pytest.approx({1: 0.85, 2: 0.2, 3: 0.8})
    assert dict(zip(candidates.ids.tolist(), candidates.lexical.tolist())) == {1: 0.0, 2: 1.0, 3: 5.0}
    assert fuse(candidates, Fusion.WEIGHTED, weight=0.5)[0][0] == 3
    assert fuse(candidates, Fusion.WEIGHTED, weight=0.5, limit=2) == fuse(candidates, Fusion.WEIGHTED, weight=0.5)[:2]


def test_expand_queries_moves_towards_the_feedback_and_stays_unit() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    expanded = expand_queries(vectors, [np.array([[0.0, 1.0], [0.0, 1.0]]), np.zeros((0, 2))], beta=1.0)
    assert expanded[0] == pytest.approx([2 ** -0.5, 2 ** -0.5])
    assert expanded[1] == pytest.approx([0.0, 1.0])  # no feedback chunks: the query stays


class _RecordingSource:
    """A candidate source over fixed vectors, recording the query vectors it is asked about."""

    def __init__(self, chunks: np.ndarray) -> None:
        self.chunks = chunks
        self.asked: list[np.ndarray] = []

    def candidates(self, vectors: np.ndarray, depth: int) -> list[Candidates]:
        self.asked.append(vectors)
        ids = np.arange(len(self.chunks), dtype=np.int64)
        return [Candidates(ids, self.chunks @ v, np.zeros(len(ids))) for v in vectors]

    def embeddings(self, ids):
        return [self.chunks[list(row)] for row in ids]


def test_hybrid_rank_searches_again_with_the_top_fused_chunks_as_feedback() -> None:
    chunks = np.eye(4, dtype=np.float32)
    chunks[1] = [0.9, 0.1, 0.4, 0.0]
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    query = np.array([[0.8, 0.6, 0.0, 0.0]], dtype=np.float32)
    once = _RecordingSource(chunks)
    assert [i for i, _ in hybrid_rank(once, query, 2, Fusion.WEIGHTED, 1.0, 0.0)[0]] == [0, 1] and len(once.asked) == 1
    twice = _RecordingSource(chunks)
    ranking = hybrid_rank(twice, query, 2, Fusion.WEIGHTED, 1.0, 1.0)[0]
    assert len(twice.asked) == 2
    assert twice.asked[1] == pytest.approx(expand_queries(query, [chunks[[0, 1, 2]]], 1.0))
    assert [i for i, _ in ranking] == [1, 0]  # the feedback pulled chunk 1 (near 0 and 2) ahead
    rrf = _RecordingSource(chunks)
    hybrid_rank(rrf, query, 2, Fusion.RRF, 1.0, 1.0)
    assert len(rrf.asked) == 1  # reciprocal rank fusion takes no feedback


@pytest.mark.parametrize("query", HOSTILE)
def test_fts_syntax_in_queries_is_plain_words(small_index, query: str) -> None:
    assert all(term.isalnum() for term in QueryAnalyzer().terms(query))
    for mode in ("lexical", "hybrid"):
        hits = small_index.search(query, k=3, mode=mode)
        if "bread" in query or "sourdough" in query:
            assert hits and hits[0].doc_id == "bread", (query, mode)


def test_lexical_search_finds_exact_rare_terms(small_index) -> None:
    hits = small_index.search("lactic acid bacteria", k=3, mode="lexical")
    assert hits[0].doc_id == "bread" and hits[0].score > 0
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert small_index.search("zzzunknownword", k=3, mode="lexical") == []


def test_lexical_uses_stemming(small_index) -> None:
    assert small_index.search("erupting volcano", k=1, mode="lexical")[0].doc_id == "volcano"


def test_hybrid_combines_both(small_index) -> None:
    for fusion in ("weighted", "rrf"):
        hits = small_index.search("feline pet that catches mice", k=3, mode="hybrid", fusion=fusion)
        assert hits[0].doc_id == "cat"
        assert len({h.chunk_id for h in hits}) == 3


def test_filters_apply_to_every_mode(small_index) -> None:
    for mode in ("dense", "lexical", "hybrid"):
        hits = small_index.search("bread coffee yeast", k=5, mode=mode, where={"topic": "cooking", "year": 2021})
        assert [h.doc_id for h in hits] == ["espresso"], mode


def test_full_text_index_follows_updates_and_deletes(make_index) -> None:
    index = make_index(SMALL_CORPUS)
    index.add([Document("bread", "Croissants are laminated pastries made with butter.", "Croissant", {"topic": "cooking"})]
              + [d for d in SMALL_CORPUS if d.id != "bread"])
    assert index.search("sourdough lactic", k=3, mode="lexical") == []
    assert index.search("laminated butter pastry", k=1, mode="lexical")[0].doc_id == "bread"
    index.delete(["bread"])
    assert index.search("laminated butter pastry", k=3, mode="lexical") == []
    with index.store.engine.connect() as conn:
        from sqlalchemy import text

        count = conn.execute(text("SELECT count(*) FROM chunks_fts")).scalar()
    assert count == index.store.counts()[1]


def test_unknown_mode_is_a_clear_error(small_index) -> None:
    with pytest.raises(QueryError, match="unknown mode 'fuzzy'; use one of dense, lexical, hybrid"):
        small_index.search("bread", mode="fuzzy")
    with pytest.raises(QueryError, match="unknown fusion"):
        small_index.search("bread", mode="hybrid", fusion="max")
    with pytest.raises(QueryError, match=r"feedback must be a number between 0 and 10, got -1"):
        small_index.search("bread", mode="hybrid", feedback=-1)
    with pytest.raises(QueryError, match=r"hybrid_weight must be a number between 0 and 1, got True"):
        small_index.search("bread", mode="hybrid", hybrid_weight=True)


def test_bm25_scores_follow_the_formula() -> None:
    import math

    import numpy as np

    from searchkit.lexical import Postings, bm25_scores

    postings = Postings(
        chunks=4, tokens=40,
        terms={"tide": (np.array([1, 3]), np.array([2, 1])), "moon": (np.array([3]), np.array([4]))},
        lengths=(np.array([1, 3]), np.array([5, 20])),
    )
    ids, scores = bm25_scores(postings, k1=0.9, b=0.4)
    idf = lambda df: math.log(1 + (4 - df + 0.5) / (df + 0.5))  # noqa: E731
    part = lambda tf, length: tf * 1.9 / (tf + 0.9 * (0.6 + 0.4 * length / 10))  # noqa: E731
    assert ids.tolist() == [1, 3]
    assert scores[0] == pytest.approx(idf(2) * part(2, 5))
    assert scores[1] == pytest.approx(idf(2) * part(1, 20) + idf(1) * part(4, 20))


def test_query_analysis_drops_stopwords_and_stems_like_the_index() -> None:
    analyzer = QueryAnalyzer()
    assert analyzer.terms("What are the effects of vaccines on the elderly?") == ["effect", "vaccin", "elderli"]
    assert analyzer.terms("to be or not to be") == ["to", "be", "or", "not"]  # nothing but stopwords: all kept
    assert analyzer.terms("Café NAÏVE") == ["cafe", "naiv"]
    assert analyzer.terms("!!! ...") == []


def test_stopwords_do_not_change_a_lexical_ranking(small_index) -> None:
    assert small_index.search("what is the sourdough starter", k=3, mode="lexical") == \
        small_index.search("sourdough starter", k=3, mode="lexical")


def test_bm25_statistics_stay_in_step_with_writes(make_index) -> None:
    from searchkit.lexical import QueryAnalyzer

    index = make_index(SMALL_CORPUS)
    terms = QueryAnalyzer().terms("sourdough yeast")

    def statistics():
        postings = index.store.term_postings(terms)
        with index.store.engine.connect() as conn:
            from sqlalchemy import text

            chunk_ids = [row[0] for row in conn.execute(text("SELECT id FROM chunks"))]
        return postings, chunk_ids

    postings, chunk_ids = statistics()
    assert postings.chunks == len(chunk_ids) == index.store.counts()[1]
    assert set(postings.terms) == {"sourdough", "yeast"}
    index.add([Document("bread", "Yeast yeast yeast.", "Yeast", {"topic": "cooking"})] + [d for d in SMALL_CORPUS if d.id != "bread"])
    postings, chunk_ids = statistics()
    assert "sourdough" not in postings.terms and postings.terms["yeast"][1].tolist() == [4]  # title and text
    assert postings.lengths[1].tolist() == [4]
    index.delete(["bread"])
    postings, chunk_ids = statistics()
    assert postings.terms == {} and postings.chunks == len(chunk_ids) == index.store.counts()[1]


@pytest.mark.parametrize("reread_at_once", [True, False], ids=["small collection", "large collection"])
def test_lexical_search_sees_another_writers_changes_despite_the_cached_postings(
    make_index, tmp_path, embedder, monkeypatch, reread_at_once: bool
) -> None:
    """Chunk lengths and postings are cached per store generation: a write by another Index is seen at once."""
    from searchkit import Index, store

    if not reread_at_once:  # a large collection answers from SQL until the store settles
        monkeypatch.setattr(store, "LENGTHS_AT_ONCE_BELOW", 0)
    reader = make_index(SMALL_CORPUS)
    before = [(h.doc_id, h.score) for h in reader.search("yeast starter", k=3, mode="lexical")]
    assert before[0][0] == "bread"
    with Index.open(tmp_path / "index", model=embedder) as writer:
        writer.add([Document("starter", "A starter of yeast: yeast, flour, water, and a starter jar.")])
        expected = [(h.doc_id, h.score) for h in writer.search("yeast starter", k=3, mode="lexical")]
    assert expected[0][0] == "starter"
    for _ in range(3):  # the first search after the write, and the ones after the store settled
        assert [(h.doc_id, h.score) for h in reader.search("yeast starter", k=3, mode="lexical")] == expected
    with Index.open(tmp_path / "index", model=embedder) as writer:
        writer.delete(["starter"])
    assert [(h.doc_id, h.score) for h in reader.search("yeast starter", k=3, mode="lexical")] == before


def test_k1_and_b_come_from_the_index_settings(make_index) -> None:
    from dataclasses import replace

    index = make_index([Document("short", "Tides tides tides."), Document("long", "Tides and many other words about the sea shore.")])
    before = index.search("tides", k=2, mode="lexical")
    index.configure_search(replace(index.config.search, k1=2.0, b=1.0))
    after = index.search("tides", k=2, mode="lexical")
    assert [h.doc_id for h in before] == [h.doc_id for h in after] == ["short", "long"]
    assert after[0].score > before[0].score and after[1].score < before[1].score  # more saturation room, more length penalty


def test_filtered_lexical_search_fills_k_when_enough_chunks_match(make_index) -> None:
    documents = [Document(f"d{i}", f"Common words everywhere, item {i}.", metadata={"even": i % 2 == 0}) for i in range(60)]
    index = make_index(documents)
    for mode in ("lexical", "hybrid"):
        hits = index.search("common words", k=25, mode=mode, where={"even": True})
        assert len(hits) == 25 and all(h.metadata["even"] for h in hits), mode
        assert len(index.search("common words", k=200, mode=mode)) == 60, mode
