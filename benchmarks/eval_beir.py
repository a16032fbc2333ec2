"""Retrieval quality on the BEIR sets in ../shared/datasets: dense, lexical and hybrid, side by side.

Run from the repository root (about 15 minutes on 2 cores the first time; the embedding cache makes
re-runs fast, so pass --no-cache to time embedding):

    .venv/bin/python benchmarks/eval_beir.py [--datasets scifact npl cranfield] [--no-cache]

Each index is built once from the dataset's corpus.jsonl with the normal ingestion (what
`searchkit eval DATASET --index DIR` does), kept under benchmarks/work/ (not committed), and evaluated
on the test qrels in every retrieval mode, plus a sweep of the hybrid fusion settings that the default
was chosen from, each also on the shortest and the longest quarter of the queries (keyword-like and
verbose queries: does one fusion rule hold for both?). Results go to benchmarks/results/eval_beir.json
and eval_beir.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import ChunkingConfig, Index, load_beir, load_embedder  # noqa: E402
from searchkit.cache import CachedEmbedder  # noqa: E402
from searchkit.evaluation import evaluate_index  # noqa: E402
from searchkit.metrics import evaluate_run  # noqa: E402
from searchkit.retrieval import Fusion, Mode  # noqa: E402
from searchkit.sources import read_sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_WORK = ROOT / "benchmarks" / "work"
KS = [1, 3, 10, 100]
# Published nDCG@10 for comparison (see ../shared/datasets/README.md).
REFERENCE = {
    "scifact": "MTEB all-MiniLM-L6-v2 0.6451; BM25 0.665 (BEIR) / 0.679 (Anserini); txtai hybrid 0.713",
    "cranfield": "bare all-MiniLM-L6-v2 0.382; plain BM25 0.342",
    "npl": "plain BM25 0.445",
}
MTEB_LABEL = "dense, 1 chunk/doc (MTEB)"
QUARTER = 0.25
# (label, mode, fusion, dense weight, feedback); the defaults are weighted 0.6 with feedback 0.5
SETTINGS = [
    ("dense", Mode.DENSE, Fusion.WEIGHTED, 0.6, 0.0),
    ("lexical", Mode.LEXICAL, Fusion.WEIGHTED, 0.6, 0.0),
    ("hybrid rrf", Mode.HYBRID, Fusion.RRF, 0.6, 0.0),
    *[(f"hybrid weighted {w}, no feedback", Mode.HYBRID, Fusion.WEIGHTED, w, 0.0) for w in (0.4, 0.5, 0.6, 0.7)],
    *[(f"hybrid weighted {w}, feedback {f:g}", Mode.HYBRID, Fusion.WEIGHTED, w, f) for w in (0.5, 0.6, 0.7) for f in (0.5, 1.0)],
]


def query_quarters(dataset) -> dict[str, set[str]]:  # noqa: ANN001
    """The shortest and the longest quarter of the judged queries, by word count (ties by id)."""
    judged = [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]
    judged.sort(key=lambda q: (len(re.findall(r"\w+", dataset.queries[q])), q))
    size = max(1, round(len(judged) * QUARTER))
    return {"short": set(judged[:size]), "verbose": set(judged[-size:])}


def subset_ndcg(run, qrels, subset: set[str]) -> float:  # noqa: ANN001
    judged = {q: qrels[q] for q in subset}
    return evaluate_run({q: run.get(q, {}) for q in judged}, judged, [10]).mean["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "npl", "cranfield"])
    parser.add_argument("--no-cache", action="store_true", help="Embed everything afresh (timing embedding).")
    parser.add_argument("--no-mteb", action="store_true", help="Leave out SciFact embedded one chunk per document.")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="Where the indexes are kept (one folder a set); an index already there is reused.")
    args = parser.parse_args()

    embedder = load_embedder() if args.no_cache else CachedEmbedder(load_embedder())
    previous = json.loads((RESULTS / "eval_beir.json").read_text()) if (RESULTS / "eval_beir.json").exists() else {}
    # Sets not run this time keep their last results, so the sets can be run one at a time.
    results: dict[str, dict] = {name: entry for name, entry in previous.items() if name not in args.datasets}
    for name in args.datasets:
        dataset = load_beir(DATASETS / name)
        index_dir = args.work / name
        ingest = None
        if index_dir.exists():
            index = Index.open(index_dir, model=embedder)
        else:
            index = Index.create(index_dir, model=embedder)
            ingest = index.add(list(read_sources([dataset.corpus_path])), progress=True)
        entry: dict = {
            "queries": len(dataset.queries),
            "dataset_problems": len(dataset.problems),
            "reference_ndcg@10": REFERENCE.get(name, ""),
            # A reused index keeps the ingest figures of the run that built it (known only for the default --work).
            "ingest": (previous.get(name, {}).get("ingest") if args.work == DEFAULT_WORK else None) if ingest is None else {
                "documents": ingest.added, "chunks": ingest.chunks_added, "seconds": ingest.seconds,
                "embedding_chunks_per_second": ingest.chunks_per_second,
                "embedded_fresh": getattr(embedder, "misses", None),
            },
            "modes": {},
        }
        quarters = query_quarters(dataset)
        for label, mode, fusion, weight, feedback in SETTINGS:
            result = evaluate_index(index, dataset, KS, name=label, mode=mode, fusion=fusion, hybrid_weight=weight,
                                    feedback=feedback)
            mean = result.evaluation.mean
            entry["modes"][label] = {
                "ndcg@10": mean["ndcg@10"], "recall@100": mean["recall@100"], "mrr@10": mean["mrr@10"],
                "map@10": mean["map@10"], "queries_per_second": result.evaluation.queries / result.seconds,
                **{f"ndcg@10 {shape}": subset_ndcg(result.run, dataset.qrels, ids) for shape, ids in quarters.items()},
            }
            print(f"{name:10} {label:22} nDCG@10 {mean['ndcg@10']:.4f}  R@100 {mean['recall@100']:.4f}", flush=True)
        index.close()
        kept = previous.get(name, {}).get("modes", {}).get(MTEB_LABEL)
        if args.no_mteb and kept:  # dense with one chunk a document: no fusion setting changes it
            entry["modes"][MTEB_LABEL] = kept
        if name == "scifact" and not args.no_mteb:  # the published setting: one window per document, cut where the model truncates
            truncated = args.work / "scifact-one-chunk"
            index = Index.open(truncated, model=embedder) if truncated.exists() else Index.create(
                truncated, model=embedder, chunking=ChunkingConfig(max_chunks=1))
            if not len(index):
                index.add(list(read_sources([dataset.corpus_path])), progress=True)
            result = evaluate_index(index, dataset, KS, name=MTEB_LABEL)
            entry["modes"][MTEB_LABEL] = {k: result.evaluation.mean[k] for k in ("ndcg@10", "recall@100", "mrr@10", "map@10")}
            print(f"{name:10} {MTEB_LABEL:22} nDCG@10 {result.evaluation.mean['ndcg@10']:.4f}", flush=True)
            index.close()
        results[name] = entry
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_beir.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "eval_beir.md").write_text(summary(results))


def summary(results: dict[str, dict]) -> str:
    names = list(results)
    lines = [
        "# Retrieval quality on BEIR test collections",
        "",
        f"Produced by `.venv/bin/python benchmarks/eval_beir.py {' '.join(sys.argv[1:])}` (the same indexes and runs as",
        "`searchkit eval ../shared/datasets/NAME --index DIR --mode MODE`). Model all-MiniLM-L6-v2 (bundled),",
        "exact cosine, chunks of 254 word pieces with 32 overlap, BM25 (k1 0.9, b 0.4, query stopwords dropped)",
        "scored by searchkit.lexical from the SQLite FTS5 index (Porter stemming), a document scored by its best",
        "chunk. Hybrid takes 100 candidates per retriever, each scored by both; weighted fusion mixes their",
        "z-scores, and feedback moves the query vector towards the top 3 fused chunks for a second dense round",
        "(see searchkit/retrieval.py). Passages embedded under bf16 autocast, queries by the int8 ONNX encoder",
        "(the defaults). Ingest lines, where shown, are those of the run that first built each index; the MTEB",
        "row is left out with --no-mteb.",
        "",
        "nDCG@10 (Recall@100 in brackets):",
        "",
        "| setting | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label in [s[0] for s in SETTINGS] + [MTEB_LABEL]:
        cells = [
            f"{results[n]['modes'][label]['ndcg@10']:.4f} ({results[n]['modes'][label]['recall@100']:.3f})"
            if label in results[n]["modes"] else "-"
            for n in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "nDCG@10 on the shortest / the longest quarter of each set's judged queries (by word count):", "",
              "| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label in [s[0] for s in SETTINGS]:
        lines.append(f"| {label} | " + " | ".join(
            f"{results[n]['modes'][label]['ndcg@10 short']:.4f} / {results[n]['modes'][label]['ndcg@10 verbose']:.4f}"
            if "ndcg@10 short" in results[n]["modes"].get(label, {}) else "-" for n in names) + " |")
    lines += ["", "Published references: " + "; ".join(f"{n}: {results[n]['reference_ndcg@10']}" for n in names), ""]
    for name in names:
        ingest = results[name]["ingest"]
        if ingest:
            lines.append(
                f"- {name}: indexed {ingest['documents']} documents / {ingest['chunks']} chunks in {ingest['seconds']:.0f} s "
                f"({ingest['embedding_chunks_per_second']:.1f} chunks/s embedded)"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
