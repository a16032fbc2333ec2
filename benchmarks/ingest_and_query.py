"""Ingest throughput, query latency and memory on BEIR SciFact, searchkit beside the bare libraries.

Run from the repository root (takes about 15 minutes on 2 cores):

    .venv/bin/python benchmarks/ingest_and_query.py [--dataset ../shared/datasets/scifact] [--rounds 3 --subset 1500]

Ingest: the same chunk texts are embedded by bare ``SentenceTransformer.encode`` and indexed by searchkit
(chunking, embedding, SQLite writes, FAISS), alternating over ``--rounds`` rounds on a ``--subset`` of the
corpus; medians are reported with their ratio. Then the whole corpus is indexed once, and every query is run
one at a time through ``Index.search`` (encode + FAISS + SQLite text) and, on the same vectors, bare FAISS.
Results go to ``benchmarks/results/ingest_and_query.json`` (and a Markdown summary beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import Index, load_embedder, read_sources  # noqa: E402
from searchkit.chunking import embedding_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=1500)
    parser.add_argument("--name", default="ingest_and_query", help="Results file name (without extension) in benchmarks/results.")
    args = parser.parse_args()

    embedder = load_embedder()
    documents = [d for d in read_sources([args.dataset / "corpus.jsonl"]) if not hasattr(d, "reason")]
    queries = [json.loads(line)["text"] for line in (args.dataset / "queries.jsonl").open()]
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    subset = documents[: args.subset]

    # The exact texts searchkit embeds, so the bare encode does the same work.
    probe = Index.create(work / "probe", model=embedder)
    chunk_inputs = [embedding_input(d.title, c.text) for d, cs in zip(subset, probe._chunk(subset)) for c in cs]
    probe.close()
    embedder.encode(chunk_inputs[:64])  # warm-up

    bare_times, searchkit_times = [], []
    for round_number in range(args.rounds):
        started = time.perf_counter()
        embedder._model.encode(chunk_inputs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        bare_times.append(time.perf_counter() - started)
        target = work / f"round{round_number}"
        index = Index.create(target, model=embedder)
        started = time.perf_counter()
        index.add(subset)
        searchkit_times.append(time.perf_counter() - started)
        index.close()
        shutil.rmtree(target)
        print(f"round {round_number}: bare {bare_times[-1]:.1f} s, searchkit {searchkit_times[-1]:.1f} s", flush=True)
    bare_rate = len(chunk_inputs) / statistics.median(bare_times)
    searchkit_rate = len(chunk_inputs) / statistics.median(searchkit_times)

    index = Index.create(work / "full", model=embedder)
    started = time.perf_counter()
    report = index.add(documents)
    full_seconds = time.perf_counter() - started
    rss_after_ingest = peak_rss_mb()

    for query in queries[:20]:  # warm-up
        index.search(query, k=10)
    end_to_end = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, k=10)
        end_to_end.append((time.perf_counter() - started) * 1000)
    query_vectors = embedder.encode(queries)
    encode_only = []
    for query in queries:
        started = time.perf_counter()
        embedder.encode([query])
        encode_only.append((time.perf_counter() - started) * 1000)
    searchkit_faiss, bare_faiss = [], []
    vectors = np.vstack([v for _, v in index.store.embeddings(embedder.identity.dimension)])
    bare = faiss.IndexFlatIP(vectors.shape[1])
    bare.add(vectors)
    for vector in query_vectors:
        row = vector[None, :]
        started = time.perf_counter()
        index.vectors.search(row, 10)
        searchkit_faiss.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        bare.search(row, 10)
        bare_faiss.append((time.perf_counter() - started) * 1000)
    index.close()
    disk_mb = sum(p.stat().st_size for p in (work / "full").iterdir()) / 1e6
    shutil.rmtree(work)

    results = {
        "dataset": str(args.dataset.name),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "faiss": faiss.__version__},
        "ingest_subset": {
            "documents": len(subset),
            "chunks": len(chunk_inputs),
            "rounds": args.rounds,
            "bare_encode_seconds": bare_times,
            "searchkit_seconds": searchkit_times,
            "bare_chunks_per_second_median": bare_rate,
            "searchkit_chunks_per_second_median": searchkit_rate,
            "searchkit_over_bare": searchkit_rate / bare_rate,
        },
        "ingest_full": {
            "documents": report.added,
            "chunks": report.chunks_added,
            "seconds": full_seconds,
            "documents_per_second": report.added / full_seconds,
            "chunks_per_second": report.chunks_added / full_seconds,
            "failed": len(report.failed),
            "index_size_mb": disk_mb,
        },
        "query_ms": {
            "queries": len(queries),
            "end_to_end_p50": percentile(end_to_end, 50),
            "end_to_end_p99": percentile(end_to_end, 99),
            "encode_only_p50": percentile(encode_only, 50),
            "searchkit_vector_search_p50": percentile(searchkit_faiss, 50),
            "bare_faiss_search_p50": percentile(bare_faiss, 50),
            "searchkit_vector_search_p99": percentile(searchkit_faiss, 99),
            "bare_faiss_search_p99": percentile(bare_faiss, 99),
        },
        "peak_rss_mb": {"after_ingest": rss_after_ingest, "end": peak_rss_mb()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(summary(results))
    print(json.dumps(results, indent=2))


def summary(r: dict) -> str:
    s, f, q = r["ingest_subset"], r["ingest_full"], r["query_ms"]
    lines = [
        f"# Ingest and query on {r['dataset']} ({r['machine']['cpus']} CPUs)",
        "",
        "Produced by `.venv/bin/python benchmarks/ingest_and_query.py`.",
        "",
        f"Ingest, {s['documents']} documents / {s['chunks']} chunks, median of {s['rounds']} alternating rounds:",
        "",
        "| pipeline | chunks/s |",
        "|---|---|",
        f"| bare SentenceTransformer.encode | {s['bare_chunks_per_second_median']:.1f} |",
        f"| searchkit index.add (chunk, embed, SQLite, FAISS) | {s['searchkit_chunks_per_second_median']:.1f} |",
        f"| ratio searchkit / bare | {s['searchkit_over_bare']:.3f} |",
        "",
        f"Full corpus: {f['documents']} documents, {f['chunks']} chunks in {f['seconds']:.1f} s "
        f"({f['documents_per_second']:.1f} docs/s); index on disk {f['index_size_mb']:.1f} MB.",
        "",
        f"Queries one at a time, k=10, {q['queries']} queries (ms):",
        "",
        "| measure | p50 | p99 |",
        "|---|---|---|",
        f"| searchkit end to end (encode + FAISS + SQLite) | {q['end_to_end_p50']:.2f} | {q['end_to_end_p99']:.2f} |",
        f"| query encode alone | {q['encode_only_p50']:.2f} | |",
        f"| searchkit vector search | {q['searchkit_vector_search_p50']:.3f} | {q['searchkit_vector_search_p99']:.3f} |",
        f"| bare FAISS IndexFlatIP search | {q['bare_faiss_search_p50']:.3f} | {q['bare_faiss_search_p99']:.3f} |",
        "",
        f"Peak resident memory: {r['peak_rss_mb']['after_ingest']:.0f} MB after ingest, {r['peak_rss_mb']['end']:.0f} MB at the end.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
