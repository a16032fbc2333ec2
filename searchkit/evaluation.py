"""Evaluating an index against labeled queries: runs, scores, comparisons and reports.

Retrieval returns chunks; evaluation judges documents. A document's score is its best
chunk's score (max pooling), and enough chunks are retrieved that the top ``k``
documents are filled even when a document contributes several chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from searchkit.cache import CachedEmbedder
from searchkit.config import DEFAULT_MODEL, ChunkingConfig
from searchkit.datasets import BeirDataset
from searchkit.embedding import Embedder, load_embedder
from searchkit.errors import ConfigError
from searchkit.index import Index, IngestReport
from searchkit.state import MANIFEST_FILE, read_manifest
from searchkit.reader import Passage, best_answers, rerank_weight
from searchkit.retrieval import Fusion, Mode
from searchkit.squad import SquadData, evaluate_predictions, question_paragraphs
from searchkit.metrics import METRICS, Evaluation, Qrels, Run, evaluate_run
from searchkit.sources import read_sources

__all__ = [
    "OpenDomainResult",
    "evaluate_open_domain",
    "EvalResult",
    "EvalSetting",
    "evaluate_index",
    "evaluate_settings",
    "format_table",
    "parse_variant",
    "retrieve_run",
    "write_report",
]

# Chunks retrieved per document asked for, so several chunks of one document still leave k documents.
CHUNKS_PER_DOCUMENT = 3


@dataclass
class EvalResult:
    """One configuration's evaluation: the scores, the run they came from, and timings."""

    name: str
    evaluation: Evaluation
    run: Run
    seconds: float
    ingest: IngestReport | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The flat JSON shape ``searchkit eval --json`` prints: metric keys plus ``queries``."""
        return {**self.evaluation.mean, "queries": self.evaluation.queries}


def retrieve_run(
    index: Index,
    queries: Mapping[str, str],
    depth: int,
    *,
    mode: Mode | None = None,
    fusion: Fusion | None = None,
    hybrid_weight: float | None = None,
    feedback: float | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> Run:
    """Rank documents for every query: ``{query_id: {doc_id: best chunk score}}``, ``depth`` documents deep.

    ``mode``, ``fusion``, ``hybrid_weight`` and ``feedback`` left as None are the index's own search
    settings, so what is scored is what ``searchkit search`` returns on the same index.
    """
    run: Run = {}
    ids = list(queries)
    with tqdm(total=len(ids), unit="query", desc="searching", disable=not progress) as bar:
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            texts = [queries[q] for q in batch]
            results = index.search_batch(
                texts, k=depth * CHUNKS_PER_DOCUMENT, mode=mode, fusion=fusion, hybrid_weight=hybrid_weight, feedback=feedback
            )
            for query_id, hits in zip(batch, results):
                scores: dict[str, float] = {}
                for hit in hits:  # best first, so the first chunk of a document is its best
                    if hit.doc_id not in scores:
                        scores[hit.doc_id] = hit.score
                        if len(scores) == depth:
                            break
                run[query_id] = scores
            bar.update(len(batch))
    return run


def evaluate_index(
    index: Index,
    dataset: BeirDataset,
    ks: Sequence[int],
    *,
    name: str = "",
    mode: Mode | None = None,
    fusion: Fusion | None = None,
    hybrid_weight: float | None = None,
    feedback: float | None = None,
    progress: bool = False,
) -> EvalResult:
    started = time.perf_counter()
    run = retrieve_run(
        index, dataset.queries, max(ks), mode=mode, fusion=fusion, hybrid_weight=hybrid_weight, feedback=feedback,
        progress=progress,
    )
    evaluation = evaluate_run(run, dataset.qrels, ks)
    return EvalResult(name or index.path.name, evaluation, run, time.perf_counter() - started)


@dataclass(frozen=True)
class EvalSetting:
    """One configuration to evaluate: an index directory and, if it must be built, how."""

    name: str
    index: Path
    model: str | None = None
    chunking: ChunkingConfig | None = None
    mode: Mode | None = None  # None: the index's own search setting
    fusion: Fusion | None = None
    precision: str = "auto"

    def with_changes(self, changes: Mapping[str, str]) -> EvalSetting:
        """A variant of this setting.

        Changing how the index is built (model, chunking) puts the variant's index beside
        this one, unless ``index`` names one; changing only how it is searched (mode,
        fusion) reuses this setting's index.
        """
        label = ",".join(f"{k}={v}" for k, v in changes.items())
        unknown = set(changes) - VARIANT_KEYS
        if unknown:
            raise ConfigError(f"unknown setting {', '.join(sorted(unknown))} in {label!r}; use {', '.join(sorted(VARIANT_KEYS))}")
        chunking = self.chunking
        if changes.keys() & CHUNKING_KEYS:
            chunking = chunking or ChunkingConfig()
            try:
                chunking = replace(
                    chunking,
                    max_tokens=int(changes.get("chunk_tokens", chunking.max_tokens)),
                    overlap_tokens=int(changes.get("overlap", chunking.overlap_tokens)),
                    max_chunks=int(changes.get("max_chunks", chunking.max_chunks)),
                )
            except ValueError as exc:
                raise ConfigError(f"{label!r}: chunk_tokens, overlap and max_chunks take integers ({exc})") from exc
        index = self.index
        if "index" in changes:
            index = Path(changes["index"])
        elif changes.keys() & BUILD_KEYS:
            index = self.index.with_name(f"{self.index.name}.{_slug(label)}")
        try:
            mode = Mode(changes["mode"]) if "mode" in changes else self.mode
            fusion = Fusion(changes["fusion"]) if "fusion" in changes else self.fusion
        except ValueError as exc:
            raise ConfigError(f"{label!r}: {exc}; modes are dense, lexical, hybrid and fusions weighted, rrf") from exc
        return EvalSetting(
            label, index, changes.get("model", self.model), chunking, mode, fusion, changes.get("precision", self.precision)
        )


CHUNKING_KEYS = {"chunk_tokens", "overlap", "max_chunks"}
BUILD_KEYS = {"model", "precision"} | CHUNKING_KEYS
VARIANT_KEYS = BUILD_KEYS | {"index", "mode", "fusion"}


def parse_variant(text: str) -> dict[str, str]:
    """``"model=all-MiniLM-L6-v2,chunk_tokens=128"`` as a dict of settings."""
    changes: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"cannot parse setting {part!r} in {text!r}; write KEY=VALUE, e.g. 'chunk_tokens=128'")
        changes[key.strip()] = value.strip()
    if not changes:
        raise ConfigError("an empty --compare setting; write KEY=VALUE, e.g. 'chunk_tokens=128'")
    return changes


def evaluate_settings(
    dataset: BeirDataset,
    settings: Sequence[EvalSetting],
    ks: Sequence[int],
    *,
    cache: bool = True,
    progress: bool = False,
) -> list[EvalResult]:
    """Evaluate each setting on the same queries, building an index from the corpus where none exists.

    Indexes are built with the normal ingestion, so what is measured is what users get;
    with ``cache``, embeddings are shared through the embedding cache, so settings that
    embed the same texts with the same model embed them once.
    """
    embedders: dict[tuple[str, str, str | None], Embedder] = {}
    results = []
    for setting in settings:
        existing = read_manifest(setting.index) if (setting.index / MANIFEST_FILE).exists() else None
        model = setting.model or (existing.model.name if existing else DEFAULT_MODEL)
        # An existing index keeps embedding its documents in the precision it was built with.
        key = (model, setting.precision, existing.model.precision if existing else None)
        if key not in embedders:
            embedder = load_embedder(model, precision=setting.precision, passages=key[2])
            embedders[key] = CachedEmbedder(embedder) if cache else embedder
        with Index.open_or_create(setting.index, model=embedders[key], chunking=setting.chunking) as index:
            # Always ingest: an index whose build was interrupted must be completed, not scored
            # as if whole; on a complete index this only confirms every document is unchanged.
            ingest = index.add(read_sources([dataset.corpus_path]), progress=progress)
            result = evaluate_index(
                index, dataset, ks, name=setting.name, mode=setting.mode, fusion=setting.fusion, progress=progress
            )
            result.ingest = ingest
            searched = index.config.search
            result.settings = {
                "index": str(setting.index),
                "mode": setting.mode.value if setting.mode else searched.mode,
                "fusion": setting.fusion.value if setting.fusion else searched.fusion,
                "config": index.config.to_dict(),
            }
        results.append(result)
    return results


def format_table(results: Sequence[EvalResult], ks: Sequence[int]) -> str:
    """Metrics as rows; one column per configuration, plus the difference from the first."""
    keys = [f"{metric}@{k}" for metric in METRICS for k in sorted(set(ks))]
    names = [r.name for r in results]
    header = ["metric", *names] + ([f"Δ {n}" for n in names[1:]] if len(results) > 1 else [])
    rows = [header]
    for key in keys:
        values = [r.evaluation.mean.get(key, 0.0) for r in results]
        rows.append([key, *(f"{v:.4f}" for v in values), *(f"{v - values[0]:+.4f}" for v in values[1:])])
    rows.append(["queries", *(str(r.evaluation.queries) for r in results)] + [""] * (len(results) - 1))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(folder: Path, results: Sequence[EvalResult], qrels: Qrels) -> list[Path]:
    """Per-query scores, TREC run files, a JSON summary and plots; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for result in results:
        slug = _slug(result.name)
        per_query = folder / f"{slug}.per_query.tsv"
        keys = sorted(next(iter(result.evaluation.per_query.values()), {}))
        with per_query.open("w") as out:
            out.write("\t".join(["query_id", *keys]) + "\n")
            for query_id, scores in sorted(result.evaluation.per_query.items()):
                out.write("\t".join([query_id, *(f"{scores[k]:.6f}" for k in keys)]) + "\n")
        run_file = folder / f"{slug}.run.trec"
        with run_file.open("w") as out:
            for query_id, docs in sorted(result.run.items()):
                ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
                for rank, (doc_id, score) in enumerate(ranked, start=1):
                    out.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {slug}\n")
        written += [per_query, run_file]
    summary = folder / "summary.json"
    summary.write_text(json.dumps(
        {r.name: {**r.summary(), "seconds": r.seconds, "skipped_queries": r.evaluation.skipped, **r.settings} for r in results},
        indent=2,
    ) + "\n")
    written.append(summary)
    written += _plots(folder, results, qrels)
    return written


def _plots(folder: Path, results: Sequence[EvalResult], qrels: Qrels) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cutoffs = list(range(1, 101))
    figure, (recall_axis, ndcg_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for result in results:
        curve = evaluate_run(result.run, qrels, cutoffs).mean
        recall_axis.plot(cutoffs, [curve.get(f"recall@{k}", 0.0) for k in cutoffs], label=result.name)
        ndcg = [scores.get("ndcg@10", 0.0) for scores in result.evaluation.per_query.values()]
        ndcg_axis.hist(ndcg, bins=20, range=(0, 1), alpha=0.5, label=result.name)
    recall_axis.set(xscale="log", xlabel="cut-off k (documents)", ylabel="mean recall@k", title="Recall at each cut-off", ylim=(0, 1))
    recall_axis.grid(True, which="both", alpha=0.3)
    recall_axis.legend()
    ndcg_axis.set(xlabel="nDCG@10 of a query", ylabel="queries", title="Distribution of per-query nDCG@10")
    ndcg_axis.legend()
    figure.tight_layout()
    path = folder / "retrieval_quality.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"


@dataclass
class OpenDomainResult:
    """Open-domain QA: retrieve passages from the index, read them, score the best answer."""

    exact_match: float
    f1: float
    questions: int
    k: int
    retrieval_recall: float
    seconds: float
    predictions: dict[str, str] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"exact_match": self.exact_match, "f1": self.f1, "questions": self.questions,
                f"retrieval_recall@{self.k}": self.retrieval_recall, "seconds": self.seconds}


def evaluate_open_domain(
    index: Index, data: SquadData, k: int = 5, *, mode: Mode | None = None, batch_size: int = 32, progress: bool = False
) -> OpenDomainResult:
    """Answer every question from the top ``k`` chunks of ``index`` (built from the paragraphs).

    The retrieval recall (share of questions whose own paragraph is among the ``k``
    chunks read) is reported beside EM and F1: it caps what any reader can reach.
    """
    started = time.perf_counter()
    gold_paragraph = question_paragraphs(data)
    predictions: dict[str, str] = {}
    found = 0
    examples = data.examples
    with tqdm(total=len(examples), unit="question", desc="answering", disable=not progress) as bar:
        for begin in range(0, len(examples), batch_size):
            batch = examples[begin:begin + batch_size]
            questions = [example.question for example in batch]
            hits_per_question = index.search_batch(questions, k, mode=mode)
            passages = [[Passage.from_hit(hit) for hit in hits] for hits in hits_per_question]
            read = index.reader.read_batch(questions, passages)
            for example, hits, answers in zip(batch, hits_per_question, read):
                best = best_answers(hits, answers, 1, rerank_weight(index.reader))
                predictions[example.id] = best[0].answer if best else ""
                found += gold_paragraph[example.id] in {hit.doc_id for hit in hits}
            bar.update(len(batch))
    scores = evaluate_predictions(predictions, data)
    return OpenDomainResult(
        scores["exact_match"], scores["f1"], len(examples), k,
        100.0 * found / len(examples) if examples else 0.0, time.perf_counter() - started, predictions,
    )
