"""Hybrid query latency beside dense on one index: what the fusion's candidates and its feedback round cost.

Run from the repository root, on a built index or on the first documents of a BEIR corpus indexed afresh
(embedded through the embedding cache):

    .venv/bin/python benchmarks/hybrid_latency.py --index DIR [--dataset ../shared/datasets/scifact]
    .venv/bin/python benchmarks/hybrid_latency.py --subset 1500 [--dataset ../shared/datasets/scifact]

Every judged query is searched one at a time, k=10, by each variant in turn (so a noisy neighbour slows them
alike), for ``--passes`` passes after one warm-up pass: dense, lexical, hybrid by the defaults (weighted, with
feedback), hybrid weighted without feedback, and hybrid by RRF. Medians and 99th percentiles go to
``benchmarks/results/hybrid_latency.json`` and ``.md`` (``--name`` renames them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchkit import CachedEmbedder, Index, load_beir, load_embedder, read_sources  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {
    "dense": {"mode": "dense"},
    "lexical": {"mode": "lexical"},
    "hybrid, defaults (weighted 0.6, feedback 0.5)": {"mode": "hybrid"},
    "hybrid, weighted 0.6, no feedback": {"mode": "hybrid", "feedback": 0.0},
    "hybrid, rrf": {"mode": "hybrid", "fusion": "rrf"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--index", type=Path, help="A built index of the dataset's corpus.")
    parser.add_argument("--subset", type=int, default=1500, help="Without --index: index this many documents afresh.")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--name", default="hybrid_latency")
    args = parser.parse_args()
    data = load_beir(args.dataset)
    queries = [data.queries[q] for q in data.queries if q in data.qrels]
    with tempfile.TemporaryDirectory() as scratch:
        if args.index:
            index, built = Index.open(args.index), f"the index at {args.index}"
        else:
            index = Index.create(Path(scratch) / "index", model=CachedEmbedder(load_embedder()))
            index.add(list(read_sources([data.corpus_path]))[: args.subset])
            built = f"the first {args.subset} documents, indexed with the defaults"
        with index:
            times = measure(index, queries, args.passes)
            documents, chunks = index.store.counts()[:2]
    load = os.getloadavg()[0]
    summary = {name: {"p50_ms": statistics.median(t) * 1000, "p99_ms": float(np.percentile(t, 99)) * 1000}
               for name, t in times.items()}
    dense = summary["dense"]["p50_ms"]
    result = {"dataset": args.dataset.name, "index": built, "documents": documents, "chunks": chunks,
              "queries": len(queries), "passes": args.passes, "load_average": load, "variants": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Hybrid query latency: {args.dataset.name}, {documents:,} documents ({chunks:,} chunks)",
        "",
        f"`python benchmarks/hybrid_latency.py {' '.join(sys.argv[1:])}`: {len(queries)} queries one at a time, k=10,",
        f"each variant in turn per query, {args.passes} passes after a warm-up, on {built}; load average {load:.1f}.",
        "",
        "| variant | p50 ms | p99 ms | p50 beyond dense |",
        "|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['p50_ms'] - dense:+.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def measure(index: Index, queries: list[str], passes: int) -> dict[str, list[float]]:
    """Seconds per search of every variant, the variants interleaved query by query."""
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for number in range(passes + 1):
        for query in queries:
            for name, options in VARIANTS.items():
                started = time.perf_counter()
                hits = index.search(query, 10, **options)
                elapsed = time.perf_counter() - started
                if number:  # the first pass warms caches and is not counted
                    times[name].append(elapsed)
                if len(hits) < 10 and options["mode"] != "lexical":
                    raise SystemExit(f"{name} returned {len(hits)} hits for {query!r}")
    return times


if __name__ == "__main__":
    main()
