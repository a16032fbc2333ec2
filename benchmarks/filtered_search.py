"""Filtered and unfiltered search beside bare FAISS in one run: clustered vectors at 200k and 1M, and SciFact.

Run from the repository root (about 5 minutes at 200k on 2 cores, 20 at 1M; one 1M run at a time, it needs
about 6 GB):

    .venv/bin/python benchmarks/filtered_search.py                       # --counts 200000 1000000 --queries 200

For each count, clustered unit 384-d vectors (2,000 Gaussian clusters, as in scale.py) go into a searchkit index
as bring-your-own embeddings, one document each with an integer ``bucket`` field in 0-999; ``bucket < 1``, ``< 10``
and ``< 100`` match 0.1%, 1% and 10% of the documents. Every search is one query at a time, k=10:

- Flat: searchkit ``Index.search_vectors`` with the filter, against bare FAISS on the same ``IndexIDMap2`` with an
  ``IDSelectorBatch`` of the matching ids (ids known beforehand; the selector is built in each timed query, as a
  caller holding the ids would). Recall@10 is against exact search over the matching vectors.
- HNSW32: unfiltered, searchkit against bare FAISS on the same graph with the same efSearch (so at the same
  recall); and the filters through searchkit.
- The first filtered search after opening (the field columns are read from the store) and the first after a write
  (read again) are timed once each.

SciFact (the corpus's 5,183 documents, one chunk each, with synthetic unit vectors: the search path does not
depend on what the vectors mean, and embedding the corpus would take most of the run): search-only latency with a
precomputed query vector, searchkit ``search_vectors`` (FAISS search, text and metadata of the hits) against a bare
``IndexFlatIP`` over the same vectors. FAISS runs one thread in both, as searchkit does for single queries.

Results go to benchmarks/results/filtered_search.json and .md, with the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import Document, Index  # noqa: E402
from scale import DIMENSION, FixedModel, clustered  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
BUCKETS = 1000
SELECTIVITIES = {"0.1%": 1, "1%": 10, "10%": 100}
K = 10


def timed(queries: np.ndarray, search: Callable[[np.ndarray], np.ndarray]) -> tuple[float, np.ndarray]:
    """(p50 ms, the ids each query returned, padded with -1 to k)."""
    latencies, found = [], np.full((len(queries), K), -1, dtype=np.int64)
    for row, query in enumerate(queries):
        started = time.perf_counter()
        ids = search(query[None, :])
        latencies.append((time.perf_counter() - started) * 1000)
        found[row, : len(ids)] = ids[:K]
    return float(np.median(latencies)), found


def exact_top(queries: np.ndarray, vectors: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Positions of the K best of ``vectors[subset]`` for each query, by exact inner product, a few queries at a time."""
    top = np.zeros((len(queries), K), dtype=np.int64)
    candidates = vectors if len(subset) == len(vectors) else vectors[subset]
    for start in range(0, len(queries), 16):
        scores = queries[start:start + 16] @ candidates.T
        best = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        top[start:start + 16] = subset[np.take_along_axis(best, order, axis=1)]
    return top


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def hit_ids(index: Index, where: dict | None) -> Callable[[np.ndarray], np.ndarray]:
    return lambda query: np.array([hit.chunk_id for hit in index.search_vectors(query, k=K, where=where)[0]], dtype=np.int64)


def one_thread(search: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def run(query: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(1)
        try:
            return search(query)
        finally:
            faiss.omp_set_num_threads(threads)

    threads = faiss.omp_get_max_threads()
    return run


def at_scale(count: int, query_count: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIMENSION), dtype=np.float32)
    vectors = clustered(count, rng, centres)
    queries = clustered(query_count, rng, centres)
    buckets = rng.integers(0, BUCKETS, count)
    started = time.perf_counter()
    index = Index.create(work / f"idx{count}", model=FixedModel())
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        docs = [Document(f"d{i}", f"document {i}", metadata={"bucket": int(buckets[i])}) for i in range(start, stop)]
        index.add(docs, embeddings=vectors[start:stop])
    result: dict = {"count": count, "queries": query_count, "ingest_seconds": time.perf_counter() - started}
    print(f"{count:,}: added in {result['ingest_seconds']:.0f} s", flush=True)
    chunk_ids = np.sort(index.store.all_chunk_ids())  # chunk i holds document i
    truth = {"all": chunk_ids[exact_top(queries, vectors, np.arange(count))]}
    matching = {}
    for label, limit in SELECTIVITIES.items():
        subset = np.flatnonzero(buckets < limit)
        matching[label] = chunk_ids[subset]
        truth[label] = chunk_ids[exact_top(queries, vectors, subset)]
        result.setdefault("matching", {})[label] = len(subset)

    index.close()  # reopened: the first filtered search reads the field columns
    index = Index.open(work / f"idx{count}", model=FixedModel())
    started = time.perf_counter()
    index.search_vectors(queries[:1], k=K, where={"bucket": {"$lt": 10}})
    result["first_filtered_search_ms"] = (time.perf_counter() - started) * 1000

    flat: dict = {}
    raw = index.vectors.index
    for label, limit in SELECTIVITIES.items():
        where = {"bucket": {"$lt": limit}}
        p50, found = timed(queries, hit_ids(index, where))
        ids = matching[label]
        bare_p50, bare_found = timed(queries, one_thread(
            lambda q: raw.search(q, K, params=faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids)))[1][0]))
        flat[label] = {
            "searchkit_p50_ms": p50, "searchkit_recall@10": recall(found, truth[label]),
            "searchkit_hits_min": int((found >= 0).sum(axis=1).min()),
            "bare_p50_ms": bare_p50, "bare_recall@10": recall(bare_found, truth[label]),
        }
        print(f"{count:,} Flat {label}: {json.dumps(flat[label])}", flush=True)
    p50, found = timed(queries, hit_ids(index, None))
    bare_p50, bare_found = timed(queries, one_thread(lambda q: raw.search(q, K)[1][0]))
    flat["unfiltered"] = {"searchkit_p50_ms": p50, "searchkit_recall@10": recall(found, truth["all"]),
                          "bare_p50_ms": bare_p50, "bare_recall@10": recall(bare_found, truth["all"])}
    result["Flat"] = flat

    index.add([Document("extra", "one more document", metadata={"bucket": 0})], embeddings=vectors[:1])
    started = time.perf_counter()
    index.search_vectors(queries[:1], k=K, where={"bucket": {"$lt": 10}})
    result["first_filtered_search_after_a_write_ms"] = (time.perf_counter() - started) * 1000
    index.delete(["extra"])

    started = time.perf_counter()
    index.reindex("HNSW32")
    result["hnsw_build_seconds"] = time.perf_counter() - started
    hnsw: dict = {}
    backend = index.vectors
    params = faiss.SearchParametersHNSW(efSearch=max(backend.ef_search, K))
    p50, found = timed(queries, hit_ids(index, None))
    bare_p50, bare_found = timed(queries, one_thread(lambda q: backend.index.search(q, K, params=params)[1][0]))
    hnsw["unfiltered"] = {"searchkit_p50_ms": p50, "searchkit_recall@10": recall(found, truth["all"]),
                          "bare_p50_ms": bare_p50, "bare_recall@10": recall(bare_found, truth["all"]),
                          "ef_search": backend.ef_search}
    for label, limit in SELECTIVITIES.items():
        p50, found = timed(queries, hit_ids(index, {"bucket": {"$lt": limit}}))
        hnsw[label] = {"searchkit_p50_ms": p50, "searchkit_recall@10": recall(found, truth[label]),
                       "searchkit_hits_min": int((found >= 0).sum(axis=1).min())}
    print(f"{count:,} HNSW32: {json.dumps(hnsw)}", flush=True)
    result["HNSW32"] = hnsw
    index.close()
    shutil.rmtree(work / f"idx{count}")
    return result


def scifact(query_count: int, work: Path) -> dict | None:
    if not SCIFACT.exists():
        print(f"{SCIFACT} not found: SciFact skipped", flush=True)
        return None
    docs = []
    with SCIFACT.open() as lines:
        for line in lines:
            record = json.loads(line)
            docs.append(Document(record["_id"], record["text"], title=record.get("title", ""),
                                 metadata={"ordinal": len(docs)}))
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((len(docs), DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picked = vectors[rng.integers(0, len(docs), query_count)]
    queries = picked + 0.05 * rng.standard_normal(picked.shape, dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = Index.create(work / "scifact", model=FixedModel())
    started = time.perf_counter()
    index.add(docs, embeddings=vectors)
    add_seconds = time.perf_counter() - started
    bare = faiss.IndexFlatIP(DIMENSION)
    bare.add(vectors)
    chunk_ids = np.sort(index.store.all_chunk_ids())
    timed(queries[:20], hit_ids(index, None))  # warm both paths
    bare_p50, bare_found = timed(queries, one_thread(lambda q: bare.search(q, K)[1][0]))
    p50, found = timed(queries, hit_ids(index, None))
    texts_ok = all(hit.text and hit.doc_id for hit in index.search_vectors(queries[:5], k=K)[0])
    index.close()
    return {"documents": len(docs), "queries": query_count, "add_seconds": add_seconds,
            "searchkit_p50_ms": p50, "bare_p50_ms": bare_p50,
            "same_top10": float(np.mean(found == chunk_ids[bare_found])), "hits_have_text": texts_ok}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="*", default=[200_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-scifact", action="store_true", help="Leave out the SciFact search-only measurement.")
    parser.add_argument("--name", default="filtered_search", help="Results file name (without extension) in benchmarks/results.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="searchkit-filtered-"))
    results: dict = {"load_average_start": load_average(), "faiss": faiss.__version__, "k": K}
    try:
        if not args.no_scifact:
            results["scifact"] = scifact(300, work)
            print(f"SciFact: {json.dumps(results['scifact'])}", flush=True)
        results["scales"] = [at_scale(count, args.queries, work) for count in args.counts]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_end"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(summary(results, args))


def summary(results: dict, args: argparse.Namespace) -> str:
    counts = " ".join(str(c) for c in args.counts)
    lines = [
        "# Filtered and unfiltered search beside bare FAISS",
        "",
        f"Produced by `.venv/bin/python benchmarks/filtered_search.py --counts {counts} --queries {args.queries}` "
        f"(FAISS {results['faiss']}), one query at a time, k={K}, p50 ms; load average {results['load_average_start']} "
        f"at the start and {results['load_average_end']} at the end, on 2 shared cores. Recall@10 is against exact "
        "search over the matching vectors; 'hits' is the fewest hits any query got.",
        "",
    ]
    if results.get("scifact"):
        s = results["scifact"]
        lines += [
            f"SciFact ({s['documents']:,} documents, one chunk each, synthetic vectors, {s['queries']} queries), "
            "search with a precomputed query vector:",
            "",
            "| | p50 ms |",
            "|---|---|",
            f"| bare FAISS IndexFlatIP | {s['bare_p50_ms']:.3f} |",
            f"| searchkit `search_vectors` (search, text and metadata of the hits) | {s['searchkit_p50_ms']:.3f} |",
            "",
            f"Same top 10 as bare FAISS: {s['same_top10']:.3f}. Adding the {s['documents']:,} documents with their "
            f"vectors: {s['add_seconds']:.2f} s.",
            "",
        ]
    for r in results["scales"]:
        lines += [
            f"## {r['count']:,} clustered 384-d vectors ({r['queries']} queries)",
            "",
            "| index | filter | searchkit p50 ms | searchkit recall@10 | hits | bare FAISS p50 ms | bare recall@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind in ("Flat", "HNSW32"):
            for label in ("unfiltered", *SELECTIVITIES):
                e = r[kind].get(label)
                if e is None:
                    continue
                bare = f"{e['bare_p50_ms']:.2f} | {e['bare_recall@10']:.3f}" if "bare_p50_ms" in e else "- | -"
                bare_label = " (IDSelectorBatch)" if kind == "Flat" and label != "unfiltered" else ""
                lines.append(
                    f"| {kind} | {label}{bare_label} | {e['searchkit_p50_ms']:.2f} | {e['searchkit_recall@10']:.3f} | "
                    f"{e.get('searchkit_hits_min', K)} | {bare} |"
                )
        lines += [
            "",
            f"Adding the vectors: {r['ingest_seconds']:.0f} s; HNSW32 built in {r['hnsw_build_seconds']:.0f} s "
            f"(efSearch {r['HNSW32']['unfiltered']['ef_search']}, bare FAISS searched the same graph with it). "
            f"The first filtered search after opening, which reads the field columns: "
            f"{r['first_filtered_search_ms']:.0f} ms; the first after a write, which reads them again: "
            f"{r['first_filtered_search_after_a_write_ms']:.0f} ms.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
