"""searchkit on a local Ray cluster beside the bare library: ingest throughput and sharded query latency.

- Ingest: the same SciFact documents indexed locally (``Index.add``) and with embedding on
  Ray Data (``Index.add(embedder=RayEmbedder)``) with 1 and 2 embedding actors, each into a
  fresh index, without the embedding cache; chunks per second of the whole ingest.
- Per-batch overhead: one ``RayEmbedder.encode`` of a few texts (a Ray Data run: actors
  started, model loaded, batches moved) against the same texts encoded locally.
- Queries: the SciFact queries one at a time, dense and hybrid, on the unsharded index and
  on 2 and 4 shards served by Ray Serve (one replica each), through the router; p50/p99.

The cluster is three nodes of one CPU each on this machine, run inside a private network
namespace (the script re-executes itself there). Results: ``results/ray_scale.{json,md}``.

    .venv/bin/python benchmarks/ray_scale.py --documents 300 --queries 100
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
WORK = REPO / "benchmarks" / "work" / "ray_scale"
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=300, help="SciFact documents ingested")
    parser.add_argument("--queries", type=int, default=100, help="SciFact queries timed per setting")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per Ray Data batch")
    args = parser.parse_args()
    if os.environ.get("SEARCHKIT_BENCH_ISOLATED") != "1":
        from searchkit.distributed.runtime import in_loopback_namespace

        env = dict(os.environ, SEARCHKIT_BENCH_ISOLATED="1", RAY_USAGE_STATS_ENABLED="0")
        sys.exit(subprocess.run(in_loopback_namespace([sys.executable, *sys.argv]), env=env).returncode)
    run(args)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)) * 1000, "p99_ms": float(np.percentile(values, 99)) * 1000}


def run(args: argparse.Namespace) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from searchkit import Index, load_beir, load_embedder, read_sources
    from searchkit.distributed.embedding import RayEmbedder
    from searchkit.distributed.serving import open_on_ray
    from searchkit.distributed.sharding import shard_index

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    dataset = load_beir(DATASETS / "scifact")
    documents = [d for d in itertools.islice(read_sources([dataset.corpus_path]), args.documents)]
    queries = list(dataset.queries.values())[: args.queries]
    results: dict = {"documents": len(documents), "queries": len(queries), "batch_size": args.batch_size,
                     "load_average_start": load_average()}

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    embedder = load_embedder()
    embedder.encode(["warm up"])

    # Ingest: local, then Ray with 1 and 2 actors, each into a fresh index.
    ingest = {}
    for name, actors in (("local", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2)):
        folder = WORK / f"ingest-{actors}"
        with Index.create(folder, model=embedder) as index:
            remote = RayEmbedder(embedder, actors=actors, batch_size=args.batch_size) if actors else None
            report = index.add(documents, embedder=remote)
        ingest[name] = {"seconds": report.seconds, "chunks": report.chunks_added,
                        "chunks_per_second": report.chunks_added / report.seconds,
                        "ray_calls": remote.timings.calls if remote else 0, "load_average": load_average()}
        print(name, ingest[name], flush=True)
    results["ingest"] = ingest

    # Per-batch overhead: a Ray Data run of a few texts against encoding them here.
    texts = [d.text[:400] for d in documents[:8]]
    remote = RayEmbedder(embedder, actors=1, batch_size=8)
    ray_seconds, local_seconds = [], []
    for _ in range(3):
        started = time.perf_counter()
        remote.encode(texts)
        ray_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        embedder.encode(texts)
        local_seconds.append(time.perf_counter() - started)
    results["overhead"] = {"texts": len(texts), "ray_median_s": statistics.median(ray_seconds),
                           "local_median_s": statistics.median(local_seconds),
                           "overhead_per_call_s": statistics.median(ray_seconds) - statistics.median(local_seconds),
                           "load_average": load_average()}
    print("overhead", results["overhead"], flush=True)

    # Queries: unsharded, then 2 and 4 shards on Ray Serve.
    source = WORK / "ingest-0"
    latency = {}
    with Index.open(source, model=embedder) as unsharded:
        for mode in ("dense", "hybrid"):
            latency[f"unsharded {mode}"] = time_queries(lambda q, m=mode: unsharded.search(q, 10, mode=m), queries)
        from ray import serve

        for shards in (2, 4):
            folder = WORK / f"shards-{shards}"
            shard_index(source, shards, folder, model=embedder)
            sharded = open_on_ray(folder, replicas=1, address=cluster.address, model=embedder, replica_cpus=0)
            check = [h.doc_id for h in sharded.search(queries[0], 10)] == [h.doc_id for h in unsharded.search(queries[0], 10)]
            for mode in ("dense", "hybrid"):
                latency[f"{shards} shards {mode}"] = time_queries(lambda q, m=mode: sharded.search(q, 10, mode=m), queries)
                latency[f"{shards} shards {mode}"]["same_top10_as_unsharded"] = check
            for number in range(shards):
                serve.delete(f"searchkit-shard-{number:02d}")
    results["latency"] = latency
    results["load_average_end"] = load_average()
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()
    write(results)


def time_queries(search, queries: list[str]) -> dict[str, float]:
    search(queries[0])
    seconds = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds) | {"load_average": load_average()}


def write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# searchkit on a local Ray cluster (3 nodes of 1 CPU on one 2-core machine)",
        "",
        f"`python benchmarks/ray_scale.py`: {results['documents']} SciFact documents, {results['queries']} queries, "
        f"Ray Data batches of {results['batch_size']}; load average {results['load_average_start']} at the start, "
        f"{results['load_average_end']} at the end (the machine is shared).",
        "",
        "## Ingest (embedding cache off, fresh index each)",
        "",
        "| ingest | seconds | chunks | chunks/s | Ray Data runs | load average |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["ingest"].items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['chunks']} | {row['chunks_per_second']:.1f} | {row['ray_calls']} | {row['load_average']} |")
    overhead = results["overhead"]
    lines += [
        "",
        f"One Ray Data run of {overhead['texts']} texts (scheduling, moving the batches, encoding on a worker that keeps "
        f"its model loaded) took {overhead['ray_median_s']:.2f} s end to end, against {overhead['local_median_s']:.2f} s "
        "to encode them in this process under the same load (medians of 3): the fixed cost of a run is at most "
        f"{overhead['ray_median_s']:.2f} s. An ingest makes one run per committed batch (about 500 chunks).",
        "",
        *([f"The same run with a Ray Data actor pool (the first design, which starts its actors and loads the model "
           f"on every run) took {results['overhead_with_actor_pool']['ray_median_s']:.2f} s against "
           f"{results['overhead_with_actor_pool']['local_median_s']:.2f} s locally, measured earlier on the same "
           "machine (load average " + results['overhead_with_actor_pool']['load_average'] + ")."]
          if "overhead_with_actor_pool" in results else []),
        "",
        "## Query latency, one query at a time, k = 10 (end to end: encode, fan-out, merge, texts)",
        "",
        "| setting | p50 ms | p99 ms | load average |",
        "|---|---|---|---|",
    ]
    for name, row in results["latency"].items():
        lines.append(f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['load_average']} |")
    (RESULTS / "ray_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
