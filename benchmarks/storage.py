"""The write path and the index on disk, beside bare FAISS in the same run.

Run from the repository root:

    .venv/bin/python benchmarks/storage.py [--rounds 5] [--count 200000]

1. SciFact (5,183 documents, title and text, one chunk each) with bring-your-own vectors:
   ``Index.add(documents, embeddings=...)`` into a new index, timed from the call to its
   return (the store, the full-text index and the FAISS file all written), against bare
   FAISS ``IndexIDMap2(IndexFlatIP)`` ``add_with_ids`` and ``write_index``; then the
   disk each leaves, the store's tables one by one (SQLite's ``dbstat``). The vectors are
   fixed synthetic ones, clustered unit 384-d vectors (seed 0), not model embeddings: what
   is measured here (time to write, bytes on disk) does not depend on their values, and
   the run needs no model. Rounds alternate between the two; medians.
2. ``--count`` clustered 384-d vectors with an integer field, in one ``Index.add`` call, in
   a new process each (so peak RSS is the add's own): peak RSS, the largest size the
   SQLite WAL reached (sampled every 10 ms), the disk in the process at its peak and after
   it exits, against bare FAISS ``IndexFlatIP`` add and ``write_index`` in a process of its
   own. Both processes first make the same vectors, so both peaks include them (4 bytes x
   384 per vector).

Results go to benchmarks/results/storage.json and storage.md, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from scale import DIMENSION, FixedModel, clustered  # noqa: E402

from searchkit import Document, Index  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
MIB = 2**20


def scifact(corpus: Path) -> list[Document]:
    if not corpus.exists():
        raise SystemExit(f"{corpus} is missing: give SciFact's corpus.jsonl with --corpus")
    documents = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            documents.append(Document(record["_id"], record["text"], title=record.get("title", "")))
    return documents


def synthetic(count: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (as benchmarks/scale.py makes them), 10,000 at a time so that making
    them adds little to the peak memory measured after."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, DIMENSION), dtype=np.float32)
    vectors = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 10_000):
        vectors[start:start + 10_000] = clustered(min(10_000, count - start), rng, centres)
    return vectors


def folder_mib(path: Path) -> dict[str, float]:
    return {p.name: p.stat().st_size / MIB for p in sorted(path.iterdir()) if p.is_file()}


def store_tables(store: Path) -> dict[str, float]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    return {name: size / MIB for name, size in rows if size >= 0.05 * MIB}


def searchkit_round(work: Path, documents: list[Document], vectors: np.ndarray) -> tuple[float, float, Path]:
    """(wall seconds, CPU seconds of this process, the index folder) of one add into a new index."""
    path = work / f"searchkit-{time.monotonic_ns()}"
    index = Index.create(path, model=FixedModel())
    started, cpu = time.perf_counter(), time.process_time()
    index.add(documents, embeddings=vectors)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    index.close()
    return seconds, cpu, path


def faiss_round(work: Path, vectors: np.ndarray) -> tuple[float, float, Path]:
    import faiss

    path = work / f"faiss-{time.monotonic_ns()}.index"
    started, cpu = time.perf_counter(), time.process_time()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIMENSION))
    index.add_with_ids(vectors, np.arange(1, len(vectors) + 1, dtype=np.int64))
    faiss.write_index(index, str(path))
    return time.perf_counter() - started, time.process_time() - cpu, path


def scifact_part(corpus: Path, rounds: int, work: Path) -> dict:
    documents = scifact(corpus)
    vectors = synthetic(len(documents))
    searchkit_seconds, faiss_seconds, searchkit_cpu, faiss_cpu = [], [], [], []
    for _ in range(rounds):
        seconds, cpu, last_searchkit = searchkit_round(work, documents, vectors)
        searchkit_seconds.append(seconds)
        searchkit_cpu.append(cpu)
        seconds, cpu, last_faiss = faiss_round(work, vectors)
        faiss_seconds.append(seconds)
        faiss_cpu.append(cpu)
    files = folder_mib(last_searchkit)
    return {
        "documents": len(documents),
        "text_mib": sum(len(d.text.encode()) + len(d.title.encode()) for d in documents) / MIB,
        "searchkit": {"add_seconds": searchkit_seconds, "add_seconds_p50": statistics.median(searchkit_seconds),
                      "add_cpu_seconds_p50": statistics.median(searchkit_cpu),
                      "disk_mib": sum(files.values()), "files_mib": files,
                      "store_tables_mib": store_tables(last_searchkit / "store.sqlite")},
        "faiss": {"add_seconds": faiss_seconds, "add_seconds_p50": statistics.median(faiss_seconds),
                  "add_cpu_seconds_p50": statistics.median(faiss_cpu),
                  "disk_mib": last_faiss.stat().st_size / MIB},
    }


def child(system: str, count: int, work: Path) -> dict:
    """One process, one system: make the vectors, add them all at once, report memory and disk."""
    vectors = synthetic(count, seed=1)
    buckets = np.random.default_rng(2).integers(0, 1000, count)
    if system == "faiss":
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        seconds, _, path = faiss_round(work, vectors)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"seconds": seconds, "peak_rss_mb": peak, "rss_before_add_mb": before, "disk_mib": path.stat().st_size / MIB}
    documents = [Document(f"d{i}", f"document {i}", metadata={"bucket": int(buckets[i])}) for i in range(count)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the vectors and the documents
    path = work / "searchkit"
    index = Index.create(path, model=FixedModel())
    wal = path / "store.sqlite-wal"
    largest = {"wal": 0, "disk": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            sizes = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
            largest["wal"] = max(largest["wal"], sizes.get(wal.name, 0))
            largest["disk"] = max(largest["disk"], sum(sizes.values()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    index.add(documents, embeddings=vectors)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    in_process = folder_mib(path)
    index.close()
    return {"seconds": seconds, "peak_rss_mb": peak, "rss_before_add_mb": before,
            "largest_wal_mib": largest["wal"] / MIB, "largest_disk_mib": largest["disk"] / MIB,
            "files_in_process_mib": in_process, "files_after_mib": folder_mib(path),
            "disk_mib": sum(folder_mib(path).values()), "store_tables_mib": store_tables(path / "store.sqlite")}


def scale_part(count: int, work: Path) -> dict:
    found = {}
    for system in ("faiss", "searchkit"):
        folder = work / f"scale-{system}"
        folder.mkdir()
        output = subprocess.run(
            [sys.executable, __file__, "--child", system, "--count", str(count), "--work", str(folder)],
            check=True, capture_output=True, text=True,
        ).stdout
        found[system] = json.loads(output.strip().splitlines()[-1])
        shutil.rmtree(folder, ignore_errors=True)
    found["disk_ratio"] = found["searchkit"]["disk_mib"] / found["faiss"]["disk_mib"]
    return found


def summary(results: dict) -> str:
    sci, scale = results["scifact"], results["scale"]
    s, f = sci["searchkit"], sci["faiss"]
    lines = [
        "# Storage and the write path",
        "",
        f"`{results['command']}`; load average {results['load_before']} before, {results['load_after']} after "
        f"(2 cores, shared). Medians of {results['rounds']} alternating rounds.",
        "",
        f"## SciFact, {sci['documents']:,} documents with bring-your-own vectors (synthetic, clustered, 384-d)",
        "",
        "| measure | bare FAISS | searchkit |",
        "|---|---|---|",
        f"| add + persist (s) | {f['add_seconds_p50']:.3f} | {s['add_seconds_p50']:.3f} |",
        f"| CPU time of the add (s) | {f['add_cpu_seconds_p50']:.3f} | {s['add_cpu_seconds_p50']:.3f} |",
        f"| disk (MiB) | {f['disk_mib']:.1f} | {s['disk_mib']:.1f} |",
        "",
        f"The text (titles and bodies, UTF-8) is {sci['text_mib']:.1f} MiB. searchkit's files: "
        + ", ".join(f"{name} {mib:.2f}" for name, mib in s["files_mib"].items() if mib >= 0.01)
        + "; the store's tables: " + ", ".join(f"{name} {mib:.2f}" for name, mib in s["store_tables_mib"].items()) + ".",
        "",
        f"## {results['count']:,} clustered 384-d vectors with an integer field, one add call",
        "",
        "| measure | bare FAISS | searchkit |",
        "|---|---|---|",
        f"| add (s) | {scale['faiss']['seconds']:.1f} | {scale['searchkit']['seconds']:.1f} |",
        f"| peak RSS (MB) | {scale['faiss']['peak_rss_mb']:.0f} | {scale['searchkit']['peak_rss_mb']:.0f} |",
        f"| RSS before the add (MB: the vectors; searchkit's documents too) | {scale['faiss']['rss_before_add_mb']:.0f} | "
        f"{scale['searchkit']['rss_before_add_mb']:.0f} |",
        f"| largest WAL (MiB) | - | {scale['searchkit']['largest_wal_mib']:.1f} |",
        f"| largest disk in the process (MiB) | - | {scale['searchkit']['largest_disk_mib']:.1f} |",
        f"| disk after (MiB) | {scale['faiss']['disk_mib']:.1f} | {scale['searchkit']['disk_mib']:.1f} "
        f"({scale['disk_ratio']:.2f}x) |",
        "",
        "searchkit's files after: " + ", ".join(
            f"{name} {mib:.1f}" for name, mib in scale["searchkit"]["files_after_mib"].items() if mib >= 0.1)
        + "; the store's tables: " + ", ".join(
            f"{name} {mib:.1f}" for name, mib in scale["searchkit"]["store_tables_mib"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="Alternating SciFact rounds (medians are reported).")
    parser.add_argument("--count", type=int, default=200_000, help="Vectors in the one-call add.")
    parser.add_argument("--corpus", type=Path, default=SCIFACT, help="SciFact's corpus.jsonl (BEIR layout).")
    parser.add_argument("--name", default="storage", help="Results file name (without extension) in benchmarks/results.")
    parser.add_argument("--child", choices=["faiss", "searchkit"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.count, args.work)))
        return
    work = Path(tempfile.mkdtemp(prefix="searchkit-storage-"))
    try:
        results = {"command": "python benchmarks/storage.py " + " ".join(sys.argv[1:]), "rounds": args.rounds,
                   "count": args.count, "load_before": os.getloadavg()[0].__round__(1)}
        results["scifact"] = scifact_part(args.corpus, args.rounds, work)
        results["scale"] = scale_part(args.count, work)
        results["load_after"] = round(os.getloadavg()[0], 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(summary(results))
    print(summary(results))


if __name__ == "__main__":
    main()
