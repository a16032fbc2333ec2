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
is then ranked from them by the very function searches use
(:func:`searchkit.retrieval.hybrid_rank`: same candidates, same fusion, same feedback), so
a grid of hundreds costs little more than one search per query and distinct feedback vector.
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
from searchkit.embedding import encode_queries
from searchkit.evaluation import CHUNKS_PER_DOCUMENT
from searchkit.index import Index
from searchkit.lexical import Bm25, Postings
from searchkit.metrics import Run, evaluate_run
from searchkit.retrieval import HYBRID_CANDIDATES, Candidates, Fusion, LexicalSide, candidates_of, hybrid_rank

__all__ = ["Trial", "TuneResult", "search_grid", "split_queries", "paired_randomization_test", "tune"]

K1_GRID = (0.6, 0.9, 1.2, 1.5, 2.0)
B_GRID = (0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
WEIGHT_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FEEDBACK_GRID = (0.0, 0.5, 1.0)
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
        if s.fusion == "rrf":
            return f"hybrid rrf {bm25}"
        return f"hybrid weighted {s.hybrid_weight:g} {bm25} feedback={s.feedback:g}"


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
    k1s: Sequence[float] = K1_GRID, bs: Sequence[float] = B_GRID, weights: Sequence[float] = WEIGHT_GRID,
    feedbacks: Sequence[float] = FEEDBACK_GRID,
) -> list[SearchConfig]:
    """Dense; lexical at each (k1, b); hybrid by RRF, and by each weight with each feedback, at each (k1, b)."""
    grid = [SearchConfig(mode="dense")]
    for k1 in k1s:
        for b in bs:
            grid.append(SearchConfig(mode="lexical", k1=k1, b=b))
            grid.append(SearchConfig(mode="hybrid", fusion="rrf", k1=k1, b=b))
            grid += [SearchConfig(mode="hybrid", fusion="weighted", hybrid_weight=w, k1=k1, b=b, feedback=feedback)
                     for w in weights for feedback in feedbacks]
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
    """Each query's vector, dense ranking and BM25 statistics, read once; any setting ranked from them.

    Hybrid settings go through :func:`~searchkit.retrieval.hybrid_rank` itself, with a
    :class:`~searchkit.retrieval.CandidateSource` that remembers every dense search by its
    query vector, so the feedback rounds of hundreds of settings search only for the vectors
    not seen before.
    """

    def __init__(self, index: Index, queries: Mapping[str, str], progress: bool) -> None:
        self.index = index
        self.store = index.store
        self.depth = METRIC_K * CHUNKS_PER_DOCUMENT  # chunks asked for, as evaluation asks
        self.candidates = max(self.depth, HYBRID_CANDIDATES)
        self.ids = list(queries)
        bm25 = Bm25(index.store)
        self.postings: dict[str, Postings | None] = {}
        self.documents: dict[int, str] = {}
        self._nearest: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        vectors = []
        with tqdm(total=len(self.ids), unit="query", desc="reading rankings", disable=not progress) as bar:
            for start in range(0, len(self.ids), 64):
                batch = self.ids[start:start + 64]
                vectors.append(encode_queries(index.embedder, [queries[q] for q in batch]))
                self.nearest(vectors[-1], self.candidates)
                for query_id in batch:
                    self.postings[query_id] = bm25.postings(queries[query_id])
                bar.update(len(batch))
        dimension = index.config.model.dimension
        self.vectors = np.concatenate(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
        self.dense = {q: list(zip(ids.tolist(), scores.tolist()))
                      for q, (ids, scores) in zip(self.ids, self.nearest(self.vectors, self.candidates))}
        self._sources: dict[tuple[float, float], _TuningCandidates] = {}

    def nearest(self, vectors: np.ndarray, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense (ids, cosines), ``depth`` ≤ :attr:`candidates` long, searched only for vectors not seen before."""
        keys = [vector.tobytes() for vector in vectors]
        missing = [row for row, key in enumerate(keys) if key not in self._nearest]
        if missing:
            for row, hits in zip(missing, self.index.search_vectors(vectors[missing], self.candidates)):
                self._nearest[keys[row]] = (np.array([hit.chunk_id for hit in hits], dtype=np.int64),
                                            np.array([hit.score for hit in hits]))
                self.documents.update((hit.chunk_id, hit.doc_id) for hit in hits)
        return [(ids[:depth], scores[:depth]) for ids, scores in (self._nearest[key] for key in keys)]

    def source(self, k1: float, b: float) -> _TuningCandidates:
        """The candidate source of one BM25 setting, made once."""
        if (k1, b) not in self._sources:
            self._sources[(k1, b)] = _TuningCandidates(self, [Bm25.scored(self.postings[q], k1, b) for q in self.ids])
        return self._sources[(k1, b)]

    def run(self, settings: SearchConfig) -> Run:
        """Documents for every query under ``settings``, as ``Index.search_batch`` would rank them."""
        if settings.mode == "dense":
            rankings = [self.dense[q][: self.depth] for q in self.ids]
        elif settings.mode == "lexical":
            rankings = [
                [(int(ids[i]), float(scores[i])) for i in np.lexsort((ids, -scores))[: self.depth]]
                for ids, scores in self.source(settings.k1, settings.b).scored
            ]
        else:
            source = self.source(settings.k1, settings.b)
            rankings = hybrid_rank(source, self.vectors, self.depth, Fusion(settings.fusion), settings.hybrid_weight,
                                   settings.feedback)
        missing = {c for ranking in rankings for c, _ in ranking} - self.documents.keys()
        self.documents.update(self.store.chunk_documents(sorted(missing)))
        run: Run = {}
        for query_id, ranking in zip(self.ids, rankings):
            scores: dict[str, float] = {}
            for chunk_id, score in ranking:
                doc_id = self.documents.get(chunk_id)
                if doc_id is not None and doc_id not in scores:
                    scores[doc_id] = score
                    if len(scores) == METRIC_K:
                        break
            run[query_id] = scores
        return run


class _TuningCandidates:
    """Hybrid candidates for one BM25 setting, from what :class:`_Rankings` has read, each made once per query vector."""

    def __init__(self, rankings: _Rankings, scored: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.rankings = rankings
        self.scored = scored
        self._sides: dict[int, list[LexicalSide]] = {}
        self._made: dict[tuple[int, bytes, int], Candidates] = {}

    def candidates(self, vectors: np.ndarray, depth: int) -> list[Candidates]:
        if depth not in self._sides:
            self._sides[depth] = [LexicalSide.of(scored, depth, self.rankings.index.stored_vectors) for scored in self.scored]
        keys = [(row, vector.tobytes(), depth) for row, vector in enumerate(vectors)]
        missing = [key for key in keys if key not in self._made]
        if missing:
            rows = [row for row, _, _ in missing]
            for key, dense in zip(missing, self.rankings.nearest(vectors[rows], depth)):
                self._made[key] = candidates_of(vectors[key[0]], dense, self._sides[depth][key[0]])
        return [self._made[key] for key in keys]

    def embeddings(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return self.rankings.index.embeddings(ids)


def _per_query(run: Run, qrels: Mapping[str, Mapping[str, int]], ids: Sequence[str]) -> np.ndarray:
    """nDCG@10 of each query in ``ids`` that has a relevant judgement (0 where nothing was returned)."""
    subset = {q: dict(qrels[q]) for q in ids if q in qrels}
    per_query = evaluate_run({q: run.get(q, {}) for q in subset}, subset, [METRIC_K]).per_query
    return np.array([per_query[q][f"ndcg@{METRIC_K}"] for q in sorted(per_query)])


def _departures(settings: SearchConfig) -> int:
    """How many of the settings that matter for this mode differ from the built-in defaults."""
    default = SearchConfig()
    keys = {"dense": ["mode"], "lexical": ["mode", "k1", "b"]}.get(
        settings.mode, ["mode", "fusion", "hybrid_weight", "k1", "b", "feedback"]
    )
    if settings.mode == "hybrid" and settings.fusion == "rrf":
        keys.remove("hybrid_weight")
        keys.remove("feedback")
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
