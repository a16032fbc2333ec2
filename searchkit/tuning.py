"""Choosing an index's search settings from labeled queries: what ``searchkit tune`` does.

Which mode wins, how to fuse, and BM25's k1 and b all depend on the collection (see
``benchmarks/results/``). Given queries with judgements, every combination of a grid is
scored on one half of the queries; among the settings that half cannot tell from the
best (a paired test at the same significance), the one that departs least from the built-in
defaults is chosen, since picking the top of hundreds of near-equal settings mostly picks
noise. It is checked against the index's current settings on the other half (never seen while choosing, so the gain is not the optimism of
having picked the best of many), with a paired randomization test on the per-query
scores, and it is written into the manifest only when it wins there significantly.

Each query's dense ranking and BM25 statistics are read once; every setting of the grid
is then ranked from them exactly as :class:`searchkit.retrieval.Retriever` ranks (same
candidate depths, same fusion), so a grid of hundreds costs little more than one search
per query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from searchkit.config import SearchConfig
from searchkit.datasets import BeirDataset
from searchkit.evaluation import CHUNKS_PER_DOCUMENT
from searchkit.index import Index
from searchkit.lexical import Bm25, Postings
from searchkit.metrics import Run, evaluate_run
from searchkit.retrieval import HYBRID_CANDIDATES, Fusion, Ranking, fuse

__all__ = ["Trial", "TuneResult", "search_grid", "split_queries", "paired_randomization_test", "tune"]

K1_GRID = (0.6, 0.9, 1.2, 1.5, 2.0)
B_GRID = (0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
WEIGHT_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
METRIC_K = 10


@dataclass(frozen=True)
class Trial:
    """One setting's mean nDCG@10 on the tuning half and on the held-out half."""

    settings: SearchConfig
    tune: float
    held_out: float

    def label(self) -> str:
        s = self.settings
        if s.mode == "dense":
            return "dense"
        bm25 = f"k1={s.k1:g},b={s.b:g}"
        if s.mode == "lexical":
            return f"lexical {bm25}"
        return f"hybrid rrf {bm25}" if s.fusion == "rrf" else f"hybrid weighted {s.hybrid_weight:g} {bm25}"


@dataclass
class TuneResult:
    """The grid's scores, the winner on the tuning half, and how it does against the current settings on the held-out half."""

    trials: list[Trial]  # best on the tuning half first
    current: Trial
    winner: Trial
    gain: float  # winner − current, mean nDCG@10 on the held-out half
    p_value: float  # paired randomization test of that gain, two-sided
    tune_queries: int
    held_out_queries: int
    alpha: float
    applied: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def better(self) -> bool:
        """The winner beats the current settings on the held-out half, significantly at ``alpha``."""
        return self.winner.settings != self.current.settings and self.gain > 0 and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        row = lambda t: {"label": t.label(), "settings": asdict(t.settings), "tune": t.tune, "held_out": t.held_out}  # noqa: E731
        return {
            "metric": f"ndcg@{METRIC_K}", "tune_queries": self.tune_queries, "held_out_queries": self.held_out_queries,
            "current": row(self.current), "winner": row(self.winner), "gain": self.gain, "p_value": self.p_value,
            "alpha": self.alpha, "better": self.better, "applied": self.applied, "notes": self.notes,
            "trials": [row(t) for t in self.trials],
        }


def search_grid(
    k1s: Sequence[float] = K1_GRID, bs: Sequence[float] = B_GRID, weights: Sequence[float] = WEIGHT_GRID
) -> list[SearchConfig]:
    """Dense; lexical at each (k1, b); hybrid by RRF and by each weight at each (k1, b)."""
    grid = [SearchConfig(mode="dense")]
    for k1 in k1s:
        for b in bs:
            grid.append(SearchConfig(mode="lexical", k1=k1, b=b))
            grid.append(SearchConfig(mode="hybrid", fusion="rrf", k1=k1, b=b))
            grid += [SearchConfig(mode="hybrid", fusion="weighted", hybrid_weight=w, k1=k1, b=b) for w in weights]
    return grid


def split_queries(query_ids: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Two halves, by a hash of each id: stable across runs and machines, independent of file order."""
    ordered = sorted(query_ids, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    half = (len(ordered) + 1) // 2
    return sorted(ordered[:half]), sorted(ordered[half:])


def paired_randomization_test(a: Sequence[float], b: Sequence[float], rounds: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value that the mean of ``b − a`` differs from 0, by flipping the sign of each pair's difference.

    The test IR evaluation recommends for comparing two systems on the same queries
    (Smucker, Allan and Carterette 2007); it assumes nothing about the scores' distribution.
    """
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not len(diff) or not np.any(diff):
        return 1.0
    observed = abs(diff.mean())
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(rounds, len(diff)))
    extreme = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (rounds + 1))


class _Rankings:
    """Each query's dense ranking and BM25 statistics, read once; any setting ranked from them."""

    def __init__(self, index: Index, queries: Mapping[str, str], progress: bool) -> None:
        self.store = index.store
        self.depth = METRIC_K * CHUNKS_PER_DOCUMENT  # chunks asked for, as evaluation asks
        self.candidates = max(self.depth, HYBRID_CANDIDATES)
        ids = list(queries)
        bm25 = Bm25(index.store)
        self.dense: dict[str, Ranking] = {}
        self.postings: dict[str, Postings | None] = {}
        self.documents: dict[int, str] = {}
        with tqdm(total=len(ids), unit="query", desc="reading rankings", disable=not progress) as bar:
            for start in range(0, len(ids), 64):
                batch = ids[start:start + 64]
                for query_id, hits in zip(batch, index.search_batch([queries[q] for q in batch], self.candidates, mode="dense")):
                    self.dense[query_id] = [(hit.chunk_id, hit.score) for hit in hits]
                    self.documents.update((hit.chunk_id, hit.doc_id) for hit in hits)
                for query_id in batch:
                    self.postings[query_id] = bm25.postings(queries[query_id])
                bar.update(len(batch))
        self._lexical: dict[tuple[float, float], dict[str, Ranking]] = {}

    def lexical(self, k1: float, b: float) -> dict[str, Ranking]:
        if (k1, b) not in self._lexical:
            rankings = {q: Bm25.ranked(p, self.candidates, k1, b) for q, p in self.postings.items()}
            missing = {c for r in rankings.values() for c, _ in r} - self.documents.keys()
            self.documents.update(self.store.chunk_documents(sorted(missing)))
            self._lexical[(k1, b)] = rankings
        return self._lexical[(k1, b)]

    def run(self, settings: SearchConfig) -> Run:
        """Documents for every query under ``settings``, as ``Index.search_batch`` would rank them."""
        if settings.mode == "dense":
            chunk_rankings = {q: r[: self.depth] for q, r in self.dense.items()}
        elif settings.mode == "lexical":
            chunk_rankings = {q: r[: self.depth] for q, r in self.lexical(settings.k1, settings.b).items()}
        else:
            lexical = self.lexical(settings.k1, settings.b)
            chunk_rankings = {
                q: fuse(dict(self.dense[q]), dict(lexical[q]), Fusion(settings.fusion), settings.hybrid_weight)[: self.depth]
                for q in self.dense
            }
        run: Run = {}
        for query_id, ranking in chunk_rankings.items():
            scores: dict[str, float] = {}
            for chunk_id, score in ranking:
                doc_id = self.documents.get(chunk_id)
                if doc_id is not None and doc_id not in scores:
                    scores[doc_id] = score
                    if len(scores) == METRIC_K:
                        break
            run[query_id] = scores
        return run


def _per_query(run: Run, qrels: Mapping[str, Mapping[str, int]], ids: Sequence[str]) -> np.ndarray:
    """nDCG@10 of each query in ``ids`` that has a relevant judgement (0 where nothing was returned)."""
    subset = {q: dict(qrels[q]) for q in ids if q in qrels}
    per_query = evaluate_run({q: run.get(q, {}) for q in subset}, subset, [METRIC_K]).per_query
    return np.array([per_query[q][f"ndcg@{METRIC_K}"] for q in sorted(per_query)])


def _departures(settings: SearchConfig) -> int:
    """How many of the settings that matter for this mode differ from the built-in defaults."""
    default = SearchConfig()
    keys = {"dense": ["mode"], "lexical": ["mode", "k1", "b"]}.get(settings.mode, ["mode", "fusion", "hybrid_weight", "k1", "b"])
    if settings.mode == "hybrid" and settings.fusion == "rrf":
        keys.remove("hybrid_weight")
    return sum(getattr(settings, key) != getattr(default, key) for key in keys)


def tune(
    index: Index,
    dataset: BeirDataset,
    *,
    grid: Sequence[SearchConfig] | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    apply: bool = True,
    progress: bool = False,
) -> TuneResult:
    """Score ``grid`` (default :func:`search_grid`) on half the queries, check the chosen one on the other half.

    With ``apply``, the winner becomes the index's search settings (in its manifest) when it
    beats the current ones on the held-out half with p < ``alpha``; otherwise nothing changes.
    """
    judged = [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]
    tune_ids, held_out_ids = split_queries(judged, seed)
    rankings = _Rankings(index, {q: dataset.queries[q] for q in judged}, progress)
    current_settings = index.config.search
    candidates = list(dict.fromkeys([*(grid if grid is not None else search_grid()), current_settings]))
    scored: dict[SearchConfig, tuple[np.ndarray, np.ndarray]] = {}
    for settings in tqdm(candidates, unit="setting", desc="tuning", disable=not progress):
        run = rankings.run(settings)
        scored[settings] = (_per_query(run, dataset.qrels, tune_ids), _per_query(run, dataset.qrels, held_out_ids))
    trial = lambda s: Trial(s, float(scored[s][0].mean()), float(scored[s][1].mean()))  # noqa: E731
    trials = sorted((trial(s) for s in candidates), key=lambda t: -t.tune)  # stable: grid order breaks ties
    best = trials[0].settings
    indistinguishable = [
        t for t in trials
        if paired_randomization_test(scored[best][0], scored[t.settings][0], rounds=2000, seed=seed) >= alpha
    ]
    winner = min(indistinguishable, key=lambda t: (_departures(t.settings), -t.tune))
    current = trial(current_settings)
    gain = winner.held_out - current.held_out
    p_value = paired_randomization_test(scored[current_settings][1], scored[winner.settings][1], seed=seed)
    result = TuneResult(trials, current, winner, gain, p_value, len(tune_ids), len(held_out_ids), alpha)
    if len(judged) < 20:
        result.notes.append(f"only {len(judged)} judged queries: too few halves to tell settings apart reliably")
    if apply and result.better:
        index.configure_search(winner.settings)
        result.applied = True
    return result
