"""Retrieval quality of searchkit's dense retrieval on the BEIR sets in ../shared/datasets.

Run from the repository root (about 10 minutes on 2 cores the first time; the embedding cache makes
re-runs fast, so pass --no-cache to time embedding):

    .venv/bin/python benchmarks/eval_beir.py [--datasets scifact npl cranfield] [--no-cache]

Each index is built from the dataset's corpus.jsonl with the normal ingestion (the same as
`searchkit eval DATASET --index DIR`), kept under benchmarks/work/ (not committed), and evaluated on
the test qrels. Results go to benchmarks/results/eval_beir.json and eval_beir.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import load_beir  # noqa: E402
from searchkit.evaluation import EvalSetting, evaluate_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
# Published nDCG@10 of all-MiniLM-L6-v2 (MTEB) and BM25, for the table.
REFERENCE = {"scifact": {"mteb_minilm": 0.6451, "bm25": 0.665}, "cranfield": {"bare_minilm": 0.382}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "npl", "cranfield"])
    parser.add_argument("--no-cache", action="store_true", help="Embed everything afresh (timing embedding).")
    args = parser.parse_args()

    results = {}
    for name in args.datasets:
        dataset = load_beir(DATASETS / name)
        index_dir = ROOT / "benchmarks" / "work" / f"{name}-dense"
        started = time.perf_counter()
        [result] = evaluate_settings(dataset, [EvalSetting(name, index_dir)], [1, 3, 10, 100], cache=not args.no_cache)
        ingest = result.ingest
        results[name] = {
            "queries": result.evaluation.queries,
            "ndcg@10": result.evaluation.mean["ndcg@10"],
            "recall@100": result.evaluation.mean["recall@100"],
            "mrr@10": result.evaluation.mean["mrr@10"],
            "map@10": result.evaluation.mean["map@10"],
            "wall_seconds": time.perf_counter() - started,
            "query_seconds": result.seconds,
            "documents": ingest.added if ingest else None,
            "chunks": ingest.chunks_added if ingest else None,
            "ingest_seconds": ingest.seconds if ingest else None,
            "embedding_chunks_per_second": ingest.chunks_per_second if ingest else None,
            "dataset_problems": len(dataset.problems),
            "reference": REFERENCE.get(name, {}),
            "command": f"searchkit eval ../shared/datasets/{name} --index benchmarks/work/{name}-dense",
        }
        print(name, json.dumps(results[name]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_beir.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Dense retrieval quality on BEIR test collections",
        "",
        "Produced by `.venv/bin/python benchmarks/eval_beir.py`; model all-MiniLM-L6-v2 (bundled), exact cosine,",
        "chunks of 254 word pieces with 32 overlap, a document scored by its best chunk.",
        "",
        "| dataset | queries | nDCG@10 | Recall@100 | MRR@10 | reference nDCG@10 | ingest s | chunks/s embedded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        reference = ", ".join(f"{k} {v}" for k, v in r["reference"].items()) or "-"
        ingest = f"{r['ingest_seconds']:.0f}" if r["ingest_seconds"] else "reused"
        rate = f"{r['embedding_chunks_per_second']:.1f}" if r["embedding_chunks_per_second"] else "-"
        lines.append(f"| {name} | {r['queries']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} | {reference} | {ingest} | {rate} |")
    (RESULTS / "eval_beir.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
