"""Lexical retrieval on the BEIR sets in ../shared/datasets: searchkit's BM25 against a plain reference BM25.

Run from the repository root (about 15 minutes on 2 cores; no model inference):

    .venv/bin/python benchmarks/lexical_beir.py [--datasets scifact npl cranfield]

Lexical scores do not depend on the vectors, so each dataset's index is built here with the real
chunking (the bundled model's tokenizer) and placeholder vectors, under benchmarks/work/NAME-lexical.
Measured on every query and on the longest quarter of each set's queries (by word count: the
verbose, natural-language queries people type into a search box):

- the reference: a plain BM25 (k1=0.9, b=0.4) over whole documents (title and text), with English
  stopwords removed from queries and SQLite's Porter stemmer, written here in numpy from the corpus
  file. It reproduces the figures of ../shared/datasets/README.md (scifact 0.676, npl 0.445;
  cranfield 0.342 there, higher here: the stemmers differ);
- FTS5's built-in bm25() over the chunks, every query word OR-ed (what searchkit did before);
- searchkit's lexical search as users get it (`index.search_batch(..., mode="lexical")`), with its
  default k1 and b, and over a grid of k1 and b.

Results go to benchmarks/results/lexical_beir.json and lexical_beir.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from searchkit import Index, SearchConfig, load_beir, load_embedder  # noqa: E402
from searchkit.datasets import BeirDataset  # noqa: E402
from searchkit.evaluation import retrieve_run  # noqa: E402
from searchkit.lexical import FTS_TOKENIZER, STOPWORDS  # noqa: E402
from searchkit.metrics import Run, evaluate_run  # noqa: E402
from searchkit.retrieval import Mode  # noqa: E402
from searchkit.sources import read_sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
PUBLISHED = {"scifact": 0.676, "npl": 0.445, "cranfield": 0.342}  # ../shared/datasets/README.md
GRID_K1 = (0.6, 0.9, 1.2, 1.5)
GRID_B = (0.3, 0.4, 0.6, 0.75)
VERBOSE_SHARE = 0.25
_WORD = re.compile(r"\w+")


class PlaceholderVectors:
    """The bundled model's tokenizer (so chunks are exactly searchkit's) and constant vectors."""

    def __init__(self) -> None:
        self.inner = load_embedder()

    @property
    def identity(self):  # noqa: ANN201
        return self.inner.identity

    def token_offsets(self, texts):  # noqa: ANN001, ANN201
        return self.inner.token_offsets(texts)

    def encode(self, texts, **_):  # noqa: ANN001, ANN003, ANN201
        vectors = np.zeros((len(texts), self.identity.dimension), np.float32)
        vectors[:, 0] = 1.0
        return vectors


def fts_tokens(texts: list[str]) -> list[Counter]:
    """Each text's terms and counts, from an FTS5 table with searchkit's tokenizer."""
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, tokenize = '{FTS_TOKENIZER}')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    db.executemany("INSERT INTO t (rowid, body) VALUES (?, ?)", enumerate(texts))
    counts = [Counter() for _ in texts]
    for term, doc, count in db.execute("SELECT term, doc, count(*) FROM v GROUP BY term, doc"):
        counts[doc][term] = count
    db.close()
    return counts


def reference_bm25(dataset: BeirDataset, depth: int = 100, k1: float = 0.9, b: float = 0.4) -> Run:
    """Plain BM25 over whole documents with stopwords removed from queries (the published baseline's recipe)."""
    records = [json.loads(line) for line in dataset.corpus_path.open(encoding="utf-8") if line.strip()]
    ids = [str(r["_id"]) for r in records]
    counts = fts_tokens([f"{r.get('title') or ''} {r.get('text') or ''}".strip() for r in records])
    lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
    postings: dict[str, list[tuple[int, int]]] = {}
    for doc, terms in enumerate(counts):
        for term, count in terms.items():
            postings.setdefault(term, []).append((doc, count))
    arrays = {t: (np.array([d for d, _ in p]), np.array([c for _, c in p], dtype=np.float64)) for t, p in postings.items()}
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    query_ids = list(dataset.queries)
    words = [[w for w in _WORD.findall(dataset.queries[q].lower()) if w not in STOPWORDS] for q in query_ids]
    query_terms = fts_tokens([" ".join(w) for w in words])
    run: Run = {}
    for query_id, terms in zip(query_ids, query_terms):
        scores = np.zeros(len(ids))
        for term in terms:
            if term in arrays:
                docs, tf = arrays[term]
                idf = math.log(1 + (len(ids) - len(docs) + 0.5) / (len(docs) + 0.5))
                scores[docs] += idf * tf * (k1 + 1) / (tf + norm[docs])
        top = np.argsort(-scores, kind="stable")[:depth]
        run[query_id] = {ids[i]: float(scores[i]) for i in top if scores[i] > 0}
    return run


def fts5_builtin_run(index: Index, dataset: BeirDataset, depth: int = 100) -> Run:
    """FTS5's bm25() over chunks, every query word OR-ed, a document scored by its best chunk."""
    run: Run = {}
    with index.store.engine.connect() as conn:
        db = conn.connection.dbapi_connection
        for query_id, text in dataset.queries.items():
            words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:64]
            scores: dict[str, float] = {}
            if words:
                rows = db.execute(
                    "SELECT d.doc_id, -bm25(chunks_fts) AS s FROM chunks_fts JOIN chunks AS c ON c.id = chunks_fts.rowid "
                    "JOIN documents AS d ON d.pk = c.document_pk WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
                    (" OR ".join(f'"{w}"' for w in words), depth * 3),
                )
                for doc_id, score in rows:
                    if doc_id not in scores and len(scores) < depth:
                        scores[doc_id] = score
            run[query_id] = scores
    return run


def verbose_queries(dataset: BeirDataset) -> set[str]:
    """The longest quarter of the queries that have judgements, by word count (ties by id)."""
    judged = [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]
    judged.sort(key=lambda q: (-len(_WORD.findall(dataset.queries[q])), q))
    return set(judged[: max(1, round(len(judged) * VERBOSE_SHARE))])


def scores(run: Run, dataset: BeirDataset, subset: set[str] | None = None) -> dict[str, float]:
    qrels = dataset.qrels if subset is None else {q: r for q, r in dataset.qrels.items() if q in subset}
    mean = evaluate_run({q: r for q, r in run.items() if q in qrels}, qrels, [10, 100]).mean
    return {"ndcg@10": mean["ndcg@10"], "recall@100": mean["recall@100"]}


def searchkit_run(index: Index, dataset: BeirDataset, k1: float, b: float) -> tuple[Run, float]:
    index._state.config = replace(index.config, search=replace(index.config.search, k1=k1, b=b))  # this run only
    started = time.perf_counter()
    run = retrieve_run(index, dataset.queries, 100, mode=Mode.LEXICAL)
    return run, (time.perf_counter() - started) / len(dataset.queries)


def latency_ms(search, queries: list[str]) -> float:  # noqa: ANN001
    """Median milliseconds of one k=10 query."""
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "npl", "cranfield"])
    args = parser.parse_args()
    embedder = PlaceholderVectors()
    results: dict[str, dict] = {}
    for name in args.datasets:
        dataset = load_beir(DATASETS / name)
        verbose = verbose_queries(dataset)
        index_dir = ROOT / "benchmarks" / "work" / f"{name}-lexical"
        with Index.open_or_create(index_dir, model=embedder) as index:
            index.add(read_sources([dataset.corpus_path]))
            default = SearchConfig()
            reference = reference_bm25(dataset)
            builtin = fts5_builtin_run(index, dataset)
            ours, seconds = searchkit_run(index, dataset, default.k1, default.b)
            grid = {}
            for k1 in GRID_K1:
                for b in GRID_B:
                    run = ours if (k1, b) == (default.k1, default.b) else searchkit_run(index, dataset, k1, b)[0]
                    grid[f"k1={k1},b={b}"] = scores(run, dataset)["ndcg@10"]
            sample = list(dataset.queries.values())[:100]
            index._state.config = replace(index.config, search=default)
            entry = {
                "queries": len(dataset.queries),
                "verbose_queries": len(verbose),
                "verbose_min_words": min(len(_WORD.findall(dataset.queries[q])) for q in verbose),
                "mean_words": statistics.mean(len(_WORD.findall(t)) for t in dataset.queries.values()),
                "published_plain_bm25": PUBLISHED.get(name),
                "reference": {"all": scores(reference, dataset), "verbose": scores(reference, dataset, verbose)},
                "fts5_builtin": {"all": scores(builtin, dataset), "verbose": scores(builtin, dataset, verbose)},
                "searchkit": {"all": scores(ours, dataset), "verbose": scores(ours, dataset, verbose),
                              "k1": default.k1, "b": default.b, "eval_seconds_per_query": seconds},
                "grid_ndcg@10": grid,
                "latency_ms_p50_k10": {
                    "searchkit": latency_ms(lambda q: index.search(q, 10, mode="lexical"), sample),
                    "fts5_builtin": latency_ms(lambda q: fts5_builtin_run(index, BeirDataset(dataset.root, {"q": q}, {}, []), 4), sample),
                },
            }
        results[name] = entry
        print(name, json.dumps({k: entry[k] for k in ("reference", "fts5_builtin", "searchkit")}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lexical_beir.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "lexical_beir.md").write_text(summary(results))


def summary(results: dict[str, dict]) -> str:
    names = list(results)
    cell = lambda m: f"{m['ndcg@10']:.4f} ({m['recall@100']:.3f})"  # noqa: E731
    lines = [
        "# Lexical retrieval against a plain BM25",
        "",
        "Produced by `.venv/bin/python benchmarks/lexical_beir.py`. nDCG@10 (Recall@100 in brackets); a document",
        "is scored by its best chunk in searchkit and FTS5, whole in the reference. *verbose* is the longest quarter",
        "of each set's judged queries by word count (at least the number of words given).",
        "",
        "| | " + " | ".join(f"{n} all | {n} verbose" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
        "| queries (verbose: min words) | " + " | ".join(
            f"{results[n]['queries']} | {results[n]['verbose_queries']} (≥{results[n]['verbose_min_words']})" for n in names) + " |",
        "| published plain BM25 | " + " | ".join(f"{results[n]['published_plain_bm25']} | -" for n in names) + " |",
    ]
    for key, label in (("reference", "reference plain BM25 (k1 0.9, b 0.4, stopwords, whole documents)"),
                       ("fts5_builtin", "FTS5 bm25(), all words OR-ed (searchkit before)"),
                       ("searchkit", "searchkit lexical (k1 0.9, b 0.4, stopwords, chunks)")):
        lines.append(f"| {label} | " + " | ".join(f"{cell(results[n][key]['all'])} | {cell(results[n][key]['verbose'])}" for n in names) + " |")
    lines.append("| searchkit − reference | " + " | ".join(
        f"{results[n]['searchkit']['all']['ndcg@10'] - results[n]['reference']['all']['ndcg@10']:+.4f} | "
        f"{results[n]['searchkit']['verbose']['ndcg@10'] - results[n]['reference']['verbose']['ndcg@10']:+.4f}" for n in names) + " |")
    lines += ["", "Median latency of one k=10 lexical query (ms, 100 queries): " + "; ".join(
        f"{n} searchkit {results[n]['latency_ms_p50_k10']['searchkit']:.1f}, FTS5 bm25() {results[n]['latency_ms_p50_k10']['fts5_builtin']:.1f}"
        for n in names), "", "searchkit lexical nDCG@10 over k1 (rows) and b (columns):", ""]
    for name in names:
        lines += [f"{name}:", "", "| k1 \\ b | " + " | ".join(map(str, GRID_B)) + " |", "|---|" + "---|" * len(GRID_B)]
        for k1 in GRID_K1:
            lines.append(f"| {k1} | " + " | ".join(f"{results[name]['grid_ndcg@10'][f'k1={k1},b={b}']:.4f}" for b in GRID_B) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
