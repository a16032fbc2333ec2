from __future__ import annotations

import pytest

from conftest import SMALL_CORPUS
from searchkit import Document, QueryError
from searchkit.lexical import QueryAnalyzer
from searchkit.retrieval import Fusion, fuse, reciprocal_rank_fusion, weighted_fusion

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


def test_rrf_with_hand_made_rankings() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62) and fused[4] == pytest.approx(1 / 63)
    assert [item for item, _ in fuse({1: 0.9, 2: 0.8, 3: 0.7}, {3: 12.0, 1: 9.0, 4: 1.0}, Fusion.RRF)] == [1, 3, 2, 4]


def test_weighted_fusion_normalises_each_list() -> None:
    fused = weighted_fusion({1: 0.9, 2: 0.5, 3: 0.1}, {3: 30.0, 4: 10.0}, weight=0.5)
    assert fused[1] == pytest.approx(0.5)  # best dense, absent from lexical
    assert fused[3] == pytest.approx(0.5)  # worst dense, best lexical
    assert fused[2] == pytest.approx(0.25) and fused[4] == pytest.approx(0.0)
    assert weighted_fusion({1: 0.3}, {}, 0.7) == {1: pytest.approx(0.7)}  # a single candidate counts as the best
    assert fuse({}, {}, Fusion.WEIGHTED) == []


def test_fusion_ties_break_by_id() -> None:
    assert [item for item, _ in fuse({5: 1.0, 2: 1.0}, {}, Fusion.WEIGHTED)] == [2, 5]


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
