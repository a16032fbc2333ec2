"""Our metrics must agree with pytrec_eval (trec_eval) so figures compare with published ones."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import pytrec_eval

from searchkit.metrics import METRICS, Qrels, Run, evaluate_run, rank_documents

KS = (1, 3, 5, 10)
TOLERANCE = 1e-6
# pytrec_eval measure name for each of our metrics (MRR is handled by truncation, see below).
TREC_MEASURES = {"ndcg": "ndcg_cut", "recall": "recall", "map": "map_cut", "precision": "P"}


def _trec_order(scores: dict[str, float]) -> list[str]:
    """An independent statement of trec_eval's order: float32 score, then doc id, both descending."""
    return sorted(scores, key=lambda doc: (np.float32(scores[doc]), doc), reverse=True)


def _reference(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """pytrec_eval's values under our metric keys, for the queries it evaluates."""
    measures = {f"{name}.{','.join(map(str, KS))}" for name in TREC_MEASURES.values()}
    results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    reference = {
        query: {f"{ours}@{k}": values[f"{theirs}_{k}"] for ours, theirs in TREC_MEASURES.items() for k in KS}
        for query, values in results.items()
    }
    for k in KS:
        truncated = {query: {doc: docs[doc] for doc in _trec_order(docs)[:k]} for query, docs in run.items()}
        for query, values in pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated).items():
            reference[query][f"mrr@{k}"] = values["recip_rank"]
    return reference


def _assert_matches_reference(run: Run, qrels: Qrels) -> None:
    ours = evaluate_run(run, qrels, KS)
    reference = _reference(run, qrels)
    compared = [query for query in reference if query in ours.per_query]
    assert compared, "nothing to compare"
    for query in compared:
        assert set(ours.per_query[query]) == set(reference[query])
        for key, expected in reference[query].items():
            assert ours.per_query[query][key] == pytest.approx(expected, abs=TOLERANCE), (query, key)


def _random_case(seed: int, queries: int = 30, docs: int = 50) -> tuple[Run, Qrels]:
    rng = random.Random(seed)
    doc_ids = [f"d{i}" for i in range(docs)]
    run: Run = {}
    qrels: Qrels = {}
    for q in range(queries):
        query = f"q{q}"
        judged = rng.sample(doc_ids, rng.randint(1, 15))
        qrels[query] = {doc: rng.randint(0, 3) for doc in judged}
        qrels[query][judged[0]] = rng.randint(1, 3)  # at least one relevant
        retrieved = rng.sample(doc_ids, rng.randint(0, docs))
        run[query] = {doc: rng.random() for doc in retrieved}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graded_run_matches_pytrec_eval(seed: int) -> None:
    _assert_matches_reference(*_random_case(seed))


def test_tied_scores_match_pytrec_eval() -> None:
    run, qrels = _random_case(seed=7)
    rng = random.Random(7)
    tied = {query: {doc: float(rng.randint(0, 3)) for doc in docs} for query, docs in run.items()}
    _assert_matches_reference(tied, qrels)


def test_ties_break_by_descending_doc_id() -> None:
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0, "B": 1.0, "10": 1.0, "9": 1.0}) == [
        "c", "b", "a", "B", "9", "10",
    ]
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 0.5}, k=1) == ["b"]


def test_scores_equal_in_float32_tie_like_trec_eval() -> None:
    run = {"q": {"a": 1.0 + 1e-8, "b": 1.0, "c": 1000.0 + 1e-5, "d": 1000.0}}
    qrels = {"q": {"a": 1, "c": 1}}
    assert rank_documents(run["q"]) == ["d", "c", "b", "a"]
    _assert_matches_reference(run, qrels)


def test_unjudged_and_non_relevant_docs_match_pytrec_eval() -> None:
    run = {"q": {"x": 0.9, "a": 0.8, "n": 0.7, "y": 0.6, "b": 0.5, "neg": 0.95}}
    qrels = {"q": {"a": 2, "b": 1, "n": 0, "neg": -1, "never": 3}}
    _assert_matches_reference(run, qrels)


def test_query_without_relevant_docs_is_skipped() -> None:
    run, qrels = _random_case(seed=3, queries=5)
    run["none"] = {"d1": 1.0}
    qrels["none"] = {"d1": 0, "d2": -1}
    run["unjudged"] = {"d1": 1.0}
    result = evaluate_run(run, qrels, KS)
    assert result.skipped == ["none", "unjudged"]
    assert result.queries == 5
    assert set(result.per_query) == {f"q{i}" for i in range(5)}
    for key, value in result.mean.items():
        assert value == pytest.approx(sum(s[key] for s in result.per_query.values()) / 5)
    _assert_matches_reference(run, qrels)


def test_query_missing_from_run_scores_zero_and_counts() -> None:
    qrels = {"found": {"a": 1}, "lost": {"b": 2}}
    result = evaluate_run({"found": {"a": 1.0}}, qrels, KS)
    assert result.queries == 2
    assert set(result.per_query["lost"].values()) == {0.0}
    assert result.mean["ndcg@10"] == pytest.approx(0.5)
    # pytrec_eval ignores a missing query but agrees that an empty result scores 0.
    _assert_matches_reference({"found": {"a": 1.0}, "lost": {}}, qrels)


def test_keys_and_means_cover_every_metric_and_cutoff() -> None:
    result = evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, ks=(10, 1))
    expected = {f"{metric}@{k}" for metric in METRICS for k in (1, 10)}
    assert set(result.mean) == expected
    assert set(result.per_query["q"]) == expected


def test_one_relevant_doc_at_rank_two() -> None:
    result = evaluate_run({"q": {"x": 2.0, "rel": 1.0, "y": 0.5}}, {"q": {"rel": 1}}, ks=(1, 3, 10))
    scores = result.per_query["q"]
    assert scores["mrr@1"] == 0.0
    assert scores["mrr@3"] == pytest.approx(0.5)
    assert scores["ndcg@3"] == pytest.approx(1 / math.log2(3))
    assert scores["recall@1"] == 0.0
    assert scores["recall@3"] == pytest.approx(1.0)
    assert scores["precision@3"] == pytest.approx(1 / 3)
    assert scores["precision@10"] == pytest.approx(0.1)  # divides by k, not by documents retrieved
    assert scores["map@3"] == pytest.approx(0.5)


def test_graded_ndcg_uses_all_judged_relevant_docs_for_the_ideal() -> None:
    run = {"q": {"b": 2.0, "a": 1.0}}
    qrels = {"q": {"a": 3, "b": 1, "c": 2}}
    scores = evaluate_run(run, qrels, ks=(3,)).per_query["q"]
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert scores["ndcg@3"] == pytest.approx(dcg / ideal)
    assert scores["recall@3"] == pytest.approx(2 / 3)
    assert scores["map@3"] == pytest.approx((1 / 1 + 2 / 2) / 3)


def test_nothing_scorable_gives_empty_mean() -> None:
    result = evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 0}})
    assert result.queries == 0
    assert result.mean == {}
    assert result.skipped == ["q"]


@pytest.mark.parametrize("ks", [(), (0, 10), (-1,)])
def test_rejects_bad_cutoffs(ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        evaluate_run({}, {}, ks)


def test_nan_score_is_rejected() -> None:
    with pytest.raises(ValueError):
        rank_documents({"a": float("nan"), "b": 1.0})
