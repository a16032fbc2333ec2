"""Retrieval metrics that reproduce trec_eval, so our figures compare with published ones.

Published BEIR/MTEB numbers come from pytrec_eval (trec_eval underneath) with the measures
``ndcg_cut.k``, ``recall.k``, ``P.k``, ``map_cut.k`` and ``recip_rank``.  Every detail below
that could move a score is chosen to match that tool to 1e-6:

* A document is relevant when its grade is >= 1 (trec_eval's default relevance level);
  grades 0 and below are judged non-relevant and add no gain to nDCG.
* The ranking is by score descending with ties broken by document id *descending*
  (plain string comparison).  trec_eval keeps scores as C ``float``, so scores equal after
  rounding to 32 bits tie too.
* nDCG@k uses the grade itself as gain with a log2(rank + 1) discount; the ideal ranking is
  built from all judged relevant documents of the query, not just the retrieved ones.
* P@k divides by k even when fewer than k documents were retrieved; MAP@k divides by the
  total number of relevant documents.  MRR@k is reciprocal rank cut at k (pytrec_eval's
  ``recip_rank`` on the run truncated to k).

Two deliberate departures, both about which queries are averaged:

* A query whose judgements contain no relevant document cannot be scored by any of these
  measures; it is reported in ``Evaluation.skipped`` and left out of the means (pytrec_eval
  would return zeros for it, dragging the mean down for reasons unrelated to the system).
* A query with relevant documents but no entry in the run scores 0 on everything and *is*
  counted.  pytrec_eval silently ignores such queries, which flatters a search engine that
  returned nothing; for us an empty result is a failure to be measured.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "METRICS",
    "Evaluation",
    "Qrels",
    "Run",
    "evaluate_run",
    "rank_documents",
]

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

METRICS: tuple[str, ...] = ("ndcg", "recall", "mrr", "map", "precision")

_RELEVANCE_LEVEL = 1


@dataclass(frozen=True)
class Evaluation:
    """Per-query and mean scores keyed like ``"ndcg@10"``.

    ``skipped`` names the queries that had no relevant judgement and so could not be scored;
    ``mean`` is empty when nothing could be scored, rather than pretending to a 0.
    """

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    queries: int
    skipped: list[str]


def _as_c_float(score: float) -> float:
    """Round to 32 bits, because trec_eval stores scores as C floats and ties on that precision."""
    if math.isnan(score):
        raise ValueError("a score is NaN; the ranking would be undefined")
    return struct.unpack("f", struct.pack("f", score))[0]


def rank_documents(scores: Mapping[str, float], k: int | None = None) -> list[str]:
    """Document ids in the exact order trec_eval evaluates them, cut to ``k`` when given.

    Ties (after 32-bit rounding) go to the larger document id, as trec_eval sorts by
    (score, doc id) both descending; any other tie rule shifts scores on tie-heavy runs.
    """
    ranked = sorted(scores, key=lambda doc: (_as_c_float(scores[doc]), doc), reverse=True)
    return ranked if k is None else ranked[:k]


def _metric_keys(ks: Sequence[int]) -> list[str]:
    return [f"{metric}@{k}" for metric in METRICS for k in ks]


def _checked_cutoffs(ks: Sequence[int]) -> list[int]:
    cutoffs = sorted(set(ks))
    if not cutoffs or cutoffs[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {list(ks)}")
    return cutoffs


def _dcg(gains: Sequence[int]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def _score_query(ranking: Sequence[str], relevant: Mapping[str, int], ks: Sequence[int]) -> dict[str, float]:
    """All metrics of one query; ``relevant`` maps each relevant doc to its (positive) grade."""
    gains = [relevant.get(doc, 0) for doc in ranking]
    ideal = sorted(relevant.values(), reverse=True)
    hit_ranks = [rank for rank, gain in enumerate(gains, start=1) if gain > 0]
    scores: dict[str, float] = {}
    for k in ks:
        hits = [rank for rank in hit_ranks if rank <= k]
        scores[f"ndcg@{k}"] = _dcg(gains[:k]) / _dcg(ideal[:k])
        scores[f"recall@{k}"] = len(hits) / len(relevant)
        scores[f"mrr@{k}"] = 1.0 / hits[0] if hits else 0.0
        scores[f"map@{k}"] = sum(i / rank for i, rank in enumerate(hits, start=1)) / len(relevant)
        scores[f"precision@{k}"] = len(hits) / k
    return scores


def evaluate_run(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 3, 10, 100)) -> Evaluation:
    """Score ``run`` against ``qrels`` at each cutoff in ``ks`` (see the module notes on which queries count)."""
    cutoffs = _checked_cutoffs(ks)
    depth = cutoffs[-1]
    per_query: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    for query_id in sorted(run.keys() | qrels.keys()):
        judged = qrels.get(query_id, {})
        relevant = {doc: grade for doc, grade in judged.items() if grade >= _RELEVANCE_LEVEL}
        if not relevant:
            skipped.append(query_id)
            continue
        ranking = rank_documents(run.get(query_id, {}), depth)
        per_query[query_id] = _score_query(ranking, relevant, cutoffs)
    keys = _metric_keys(cutoffs)
    mean = {key: math.fsum(s[key] for s in per_query.values()) / len(per_query) for key in keys} if per_query else {}
    return Evaluation(per_query=per_query, mean=mean, queries=len(per_query), skipped=skipped)
