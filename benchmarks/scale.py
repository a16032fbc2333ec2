"""Vector index types at scale: build time, memory, recall@10, latency, throughput and filtered search.

Run from the repository root (about 40 minutes on 2 cores at the default million vectors):

    .venv/bin/python benchmarks/scale.py [--count 1000000] [--types Flat HNSW32 IVF,Flat IVF,SQ8 IVF,PQ48]

The vectors are synthetic but clustered (2,000 Gaussian clusters of unit 384-d vectors), so approximate
search behaves as it does on real embeddings rather than on uniform noise. They go into a searchkit index
as bring-your-own embeddings (one document each, with a `bucket` metadata field for filters), then
`Index.reindex(type)` builds each index type from the stored embeddings. Ground truth is bare FAISS
IndexFlatIP. Results go to benchmarks/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import Document, Index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DIMENSION = 384
BUCKETS = 1000  # bucket < 1 matches 0.1% of the documents, < 10 1%, < 100 10%
SELECTIVITIES = {"0.1%": 1, "1%": 10, "10%": 100}


def clustered(count: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    vectors = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        part = centres[rng.integers(0, len(centres), stop - start)] + 0.35 * rng.standard_normal((stop - start, DIMENSION), dtype=np.float32)
        vectors[start:stop] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return vectors


class FixedModel:
    """The identity of an embedding model whose vectors the benchmark brings itself."""

    def __init__(self) -> None:
        from searchkit import ModelIdentity

        self.identity = ModelIdentity(name="synthetic-clustered-384", weights_sha256="0" * 64, dimension=DIMENSION)

    def token_offsets(self, texts):  # documents arrive with embeddings: never chunked
        raise NotImplementedError

    def encode(self, texts, *, batch_size=32, show_progress=False):
        raise NotImplementedError


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def knob_sweep(index: Index, queries: np.ndarray, truth_ids: np.ndarray) -> dict[str, dict[str, float]]:
    """Recall@10 and p50 of the vector search at other efSearch (HNSW) or nprobe (IVF) settings."""
    vectors = index.vectors
    if vectors.description.startswith("HNSW"):
        knob, values, default = "ef_search", (32, 64, 256, 512), vectors.ef_search
    elif vectors.description.startswith("IVF"):
        knob, values, default = "nprobe", (8, 16, 64, 128), vectors.nprobe
    else:
        return {}
    sweep = {}
    for value in values:
        setattr(vectors, knob, value)
        latencies, found = [], np.zeros((len(queries), 10), dtype=np.int64)
        for row, query in enumerate(queries):
            started = time.perf_counter()
            _, ids = vectors.search(query[None, :], 10)
            latencies.append((time.perf_counter() - started) * 1000)
            found[row] = ids[0]
        sweep[f"{knob}={value}"] = {"recall@10": recall(found, truth_ids), "search_p50_ms": percentiles(latencies)[0]}
    setattr(vectors, knob, default)
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--types", nargs="+", default=["Flat", "HNSW32", "IVF,Flat", "IVF,SQ8", "IVF,PQ48"])
    parser.add_argument("--name", default="scale", help="Results file name (without extension) in benchmarks/results.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIMENSION), dtype=np.float32)
    vectors = clustered(args.count, rng, centres)
    queries = clustered(args.queries, rng, centres)
    buckets = rng.integers(0, BUCKETS, args.count)
    work = Path(tempfile.mkdtemp(prefix="searchkit-scale-"))

    started = time.perf_counter()
    index = Index.create(work / "idx", model=FixedModel())
    step = 100_000
    for start in range(0, args.count, step):
        stop = min(start + step, args.count)
        documents = [Document(f"d{i}", f"document {i}", metadata={"bucket": int(buckets[i])}) for i in range(start, stop)]
        index.add(documents, embeddings=vectors[start:stop])
        print(f"added {stop:,}", flush=True)
    ingest_seconds = time.perf_counter() - started
    chunk_ids = np.sort(index.store.all_chunk_ids())  # chunk i holds document i
    truth_index = faiss.IndexFlatIP(DIMENSION)
    truth_index.add(vectors)
    _, truth = truth_index.search(queries, 10)
    truth_ids = chunk_ids[truth]
    filtered_truth = {}
    for label, limit in SELECTIVITIES.items():
        subset = np.flatnonzero(buckets < limit)
        scores = queries @ vectors[subset].T
        filtered_truth[label] = chunk_ids[subset[np.argsort(-scores, axis=1)[:, :10]]]

    results = {"count": args.count, "dimension": DIMENSION, "queries": args.queries,
               "ingest_seconds_with_sqlite": ingest_seconds, "types": {}}
    for kind in args.types:
        started = time.perf_counter()
        index.reindex(kind)
        build_seconds = time.perf_counter() - started
        memory_mb = faiss.serialize_index(index.vectors.index).nbytes / 1e6
        single, raw = [], []
        found = np.zeros((args.queries, 10), dtype=np.int64)
        for row, query in enumerate(queries):
            started = time.perf_counter()
            hits = index.search_vectors(query[None, :], k=10)[0]
            single.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            _, ids = index.vectors.search(query[None, :], 10)
            raw.append((time.perf_counter() - started) * 1000)
            found[row, : len(ids[0])] = ids[0]
            assert len(hits) == 10
        started = time.perf_counter()
        index.vectors.search(queries, 10)
        batch_qps = args.queries / (time.perf_counter() - started)
        entry = {
            "resolved": index.vectors.description,
            "build_seconds": build_seconds,
            "index_memory_mb": memory_mb,
            "recall@10": recall(found, truth_ids),
            "search_p50_ms": percentiles(raw)[0],
            "search_p99_ms": percentiles(raw)[1],
            "end_to_end_p50_ms": percentiles(single)[0],
            "end_to_end_p99_ms": percentiles(single)[1],
            "batch_queries_per_second": batch_qps,
            "filtered": {},
        }
        for label, limit in SELECTIVITIES.items():
            where = {"bucket": {"$lt": limit}}
            latencies, got = [], []
            for query in queries[:100]:
                started = time.perf_counter()
                hits = index.search_vectors(query[None, :], k=10, where=where)[0]
                latencies.append((time.perf_counter() - started) * 1000)
                got.append(np.array([h.chunk_id for h in hits] + [-1] * (10 - len(hits))))
            entry["filtered"][label] = {
                "p50_ms": percentiles(latencies)[0],
                "p99_ms": percentiles(latencies)[1],
                "recall@10": recall(np.array(got), filtered_truth[label][:100]),
                "hits_returned_mean": float(np.mean([(g >= 0).sum() for g in got])),
            }
        entry["knob_sweep"] = knob_sweep(index, queries, truth_ids)
        results["types"][kind] = entry
        print(kind, json.dumps(entry), flush=True)
    index.close()
    shutil.rmtree(work)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(summary(results))


def summary(results: dict) -> str:
    lines = [
        f"# Vector index types at {results['count']:,} vectors ({results['dimension']}-d, clustered), 2 cores",
        "",
        "Produced by `.venv/bin/python benchmarks/scale.py`. Latency is one query at a time, k=10, median (p50) and p99",
        f"over {results['queries']} queries; 'search' is the vector search alone, 'end to end' adds the SQLite look-up",
        "of the hits (`Index.search_vectors`). Recall@10 is against exact search. Filtered columns use a metadata",
        "filter matching 0.1%, 1% and 10% of the documents (100 queries): p50 ms / recall@10.",
        "",
        "| type | build s | memory MB | recall@10 | search p50 / p99 ms | end to end p50 / p99 ms | batch q/s | filter 0.1% | filter 1% | filter 10% |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["types"].items():
        filtered = [f"{r['filtered'][s]['p50_ms']:.1f} / {r['filtered'][s]['recall@10']:.3f}" for s in SELECTIVITIES]
        lines.append(
            f"| {kind} ({r['resolved']}) | {r['build_seconds']:.0f} | {r['index_memory_mb']:.0f} | {r['recall@10']:.3f} | "
            f"{r['search_p50_ms']:.2f} / {r['search_p99_ms']:.2f} | {r['end_to_end_p50_ms']:.2f} / {r['end_to_end_p99_ms']:.2f} | "
            f"{r['batch_queries_per_second']:.0f} | " + " | ".join(filtered) + " |"
        )
    lines += ["", "Search-time knobs (vector search alone, all queries): recall@10 and p50 ms", ""]
    for kind, r in results["types"].items():
        if r.get("knob_sweep"):
            cells = ", ".join(f"{name}: {v['recall@10']:.3f} / {v['search_p50_ms']:.2f}" for name, v in r["knob_sweep"].items())
            lines.append(f"- {kind}: {cells}")
    lines += ["", f"Adding {results['count']:,} documents with their vectors (SQLite, full-text index, FAISS): "
              f"{results['ingest_seconds_with_sqlite']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
