"""The QA rerank's weight, learned for one reader from questions whose answering paragraph is known.

The rerank orders hits by ``w * retrieval + (1 - w) * answer`` (:func:`searchkit.reader.rerank_hits`).
No single ``w`` suits every reader: a strong reader earns a low one, while a weak reader's
noisy answer scores pull good hits down unless ``w`` stays near 1 (a reader scoring F1 25.5
lowered nDCG@10 on SQuAD-as-retrieval from 0.754 to 0.705 at ``w = 0.5``). So the weight
is measured rather than assumed: the paragraphs of the training file are indexed with the
default embedder, each question's candidates are retrieved and read exactly as
``search(..., rerank="qa")`` does, and the weight on a grid from 0 to 1 with the best mean
nDCG@10 wins. ``w = 1`` (retrieval order) is on the grid, so a reader that cannot help
is given that weight and the rerank leaves the ranking as it was. Ties go to the larger
weight, the one that trusts the reader less.

``train-reader`` runs this on its held-out questions and records the result in the
reader's ``searchkit-reader.json``, where :class:`~searchkit.reader.SpanReader` reads it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from searchkit.embedding import Embedder, load_embedder
from searchkit.index import QA_CANDIDATES, Index
from searchkit.metrics import evaluate_run
from searchkit.reader import Passage, Reader, rerank_hits
from searchkit.squad import SquadData, SquadExample, paragraph_documents

__all__ = ["RERANK_WEIGHTS", "RerankFit", "fit_rerank_weight"]

RERANK_WEIGHTS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(11))
_BATCH = 32
_K = 10  # the fit maximises nDCG at this depth


@dataclass(frozen=True)
class RerankFit:
    """The chosen weight, and the nDCG@10 every weight on the grid scored on ``questions`` questions."""

    weight: float
    questions: int
    ndcg_at_10: dict[str, float]  # weight (as text, for JSON) -> mean nDCG@10; "1.0" is retrieval alone

    @property
    def gain(self) -> float:
        """nDCG@10 of the chosen weight over retrieval alone (0 when the rerank is left to do nothing)."""
        return self.ndcg_at_10[str(self.weight)] - self.ndcg_at_10[str(1.0)]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gain": self.gain}


def fit_rerank_weight(
    reader: Reader,
    data: SquadData,
    questions: Sequence[SquadExample],
    *,
    embedder: Embedder | None = None,
    work_dir: str | Path | None = None,
) -> RerankFit:
    """The weight for ``reader``'s QA rerank, measured on ``questions`` over all paragraphs of ``data``.

    A question's relevant document is its own paragraph. ``embedder`` defaults to the
    bundled model; ``work_dir`` holds the temporary paragraph index (a temporary folder
    by default).
    """
    if not questions:
        raise ValueError("fitting the rerank weight needs at least one question")
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="searchkit-rerank-") as folder:
        index = Index.create(Path(folder) / "paragraphs", model=embedder or load_embedder())
        try:
            index.add(paragraph_documents(data))
            candidates, answers = [], []
            for begin in range(0, len(questions), _BATCH):
                texts = [example.question for example in questions[begin:begin + _BATCH]]
                hits = index.search_batch(texts, QA_CANDIDATES)
                candidates += hits
                answers += reader.read_batch(texts, [[Passage.from_hit(hit) for hit in group] for group in hits])
        finally:
            index.close()
    qrels = {example.id: {example.doc_id: 1} for example in questions}
    scores: dict[str, float] = {}
    for weight in RERANK_WEIGHTS:
        run: dict[str, dict[str, float]] = {}
        for example, hits, read in zip(questions, candidates, answers):
            ranked: dict[str, float] = {}
            for hit in rerank_hits(hits, read, weight)[:_K]:
                ranked.setdefault(hit.doc_id, hit.score)
            run[example.id] = ranked
        scores[str(weight)] = evaluate_run(run, qrels, [_K]).mean[f"ndcg@{_K}"]
    best = max(RERANK_WEIGHTS, key=lambda weight: (round(scores[str(weight)], 9), weight))
    return RerankFit(weight=best, questions=len(questions), ndcg_at_10=scores)
