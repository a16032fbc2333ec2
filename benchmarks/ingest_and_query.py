"""Ingest throughput, query latency and start-up on BEIR SciFact, searchkit beside the bare libraries, in one run.

Run from the repository root (about 15 minutes on 2 quiet cores):

    .venv/bin/python benchmarks/ingest_and_query.py [--dataset ../shared/datasets/scifact] [--rounds 3 --subset 1500]

Ingest: the same chunk texts are embedded by bare ``SentenceTransformer.encode`` in float32 (and, for reference,
under bfloat16 autocast), and the same documents are indexed by searchkit with its defaults: ``Index.add`` with
the model loaded (chunking, embedding, SQLite and FAISS), or with ``--cli`` ``searchkit index`` in a new process
(start-up and model load included too). The variants alternate over ``--rounds`` rounds; medians are reported
with their ratio.

Queries: every SciFact query one at a time, k=10, on the index of the last round (``--full``: the whole
corpus), each variant in turn per query so that a noisy neighbour slows them alike: searchkit dense and hybrid
end to end (encode + FAISS + SQLite text), searchkit with ``precision="fp32"``, the bare path (encode + FAISS
``IndexFlatIP``, no text) with the float32 model and with the encoder searchkit chose, and the parts. The
variants that run torch (float32) are interleaved among themselves, after the others: torch's spinning OpenMP
threads slowed an int8 ONNX encode right after them about 1.5x, which no searchkit query meets.

Start-up: ``searchkit info`` and a cold ``searchkit search`` (a new process each time), alternated.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from searchkit import Index, SentenceTransformerEmbedder, load_embedder, read_sources  # noqa: E402
from searchkit.chunking import embedding_input  # noqa: E402
from searchkit.embedding import encode_queries  # noqa: E402
from searchkit.index import chunking_for  # noqa: E402
from searchkit.ingest import Ingestor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEARCHKIT = str(Path(sys.executable).with_name("searchkit"))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_process(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=1500)
    parser.add_argument("--full", action="store_true", help="Run the queries on the whole corpus, indexed once more.")
    parser.add_argument("--cli", action="store_true", help="Time `searchkit index` in a new process instead of Index.add.")
    parser.add_argument("--query-passes", type=int, default=2)
    parser.add_argument("--startup-runs", type=int, default=7)
    parser.add_argument("--name", default="ingest_and_query", help="Results file name (without extension) in benchmarks/results.")
    args = parser.parse_args()
    command = "python benchmarks/ingest_and_query.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()

    embedder = load_embedder()  # the defaults: precision "auto", decided once on this machine and kept
    default_precision, query_encoder = embedder.precision, embedder.query_precision
    model = embedder.model  # the same SentenceTransformer, run bare below
    documents = [d for d in read_sources([args.dataset / "corpus.jsonl"]) if not hasattr(d, "reason")]
    queries = [json.loads(line)["text"] for line in (args.dataset / "queries.jsonl").open()]
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    subset = documents[: args.subset]
    subset_file = work / "subset.jsonl"
    with subset_file.open("w", encoding="utf-8") as out:
        for document in subset:
            out.write(json.dumps({"_id": document.id, "title": document.title, "text": document.text}) + "\n")

    # The exact texts searchkit embeds, so the bare encode does the same work.
    chunker = Ingestor(None, embedder, chunking_for(embedder.identity, None), embedder.identity.dimension, None)  # type: ignore[arg-type]
    chunk_inputs = [embedding_input(d.title, c.text) for d, cs in zip(subset, chunker._chunk(subset)) for c in cs]
    model.encode(chunk_inputs[:64])  # warm-up

    def bare(precision: str) -> float:
        started = time.perf_counter()
        if precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model.encode(chunk_inputs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        else:
            model.encode(chunk_inputs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - started

    def searchkit(target: Path) -> float:
        if args.cli:  # everything included: start-up, model load, reading the file
            return timed_process([SEARCHKIT, "index", str(subset_file), "--index", str(target), "-q"])[0]
        with Index.create(target, model=embedder) as index:  # the default embedder, its model loaded once
            started = time.perf_counter()
            index.add(subset)
            return time.perf_counter() - started

    times: dict[str, list[float]] = {"bare_fp32": [], "bare_bf16": [], "searchkit": []}
    for round_number in range(args.rounds):
        times["bare_fp32"].append(bare("fp32"))
        target = work / f"round{round_number}"
        times["searchkit"].append(searchkit(target))
        times["bare_bf16"].append(bare("bf16"))
        if round_number < args.rounds - 1:
            shutil.rmtree(target)
        print(f"round {round_number}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    rates = {name: len(chunk_inputs) / statistics.median(values) for name, values in times.items()}

    query_index = work / f"round{args.rounds - 1}"
    full = None
    if args.full:
        query_index = work / "full"
        with Index.create(query_index, model=embedder) as index:
            started = time.perf_counter()
            report = index.add(documents)
            full = {"documents": report.added, "chunks": report.chunks_added, "seconds": time.perf_counter() - started}
    rss_after_ingest = peak_rss_mb()

    index = Index.open(query_index, model=embedder)
    fp32_embedder = SentenceTransformerEmbedder(precision="fp32", passages=index.config.model.precision)
    fp32_embedder._model = model  # the same loaded model, run in float32
    index_fp32 = Index.open(query_index, model=fp32_embedder)
    vectors = np.vstack([v for _, v in index.store.embeddings(embedder.identity.dimension)])
    bare_faiss = faiss.IndexFlatIP(vectors.shape[1])
    bare_faiss.add(vectors)

    def fp32_encode(query: str) -> np.ndarray:
        return model.encode([query], normalize_embeddings=True, convert_to_numpy=True)

    def chosen_encode(query: str) -> np.ndarray:
        return encode_queries(embedder, [query])

    variants = {
        "searchkit_dense": lambda q: index.search(q, k=10),
        "searchkit_hybrid": lambda q: index.search(q, k=10, mode="hybrid"),
        "searchkit_dense_fp32": lambda q: index_fp32.search(q, k=10),
        "bare_fp32_encode_faiss": lambda q: bare_faiss.search(fp32_encode(q), 10),
        "bare_chosen_encode_faiss": lambda q: bare_faiss.search(chosen_encode(q), 10),
        "encode_chosen": chosen_encode,
        "encode_fp32": fp32_encode,
    }
    query_vectors = encode_queries(embedder, queries)
    parts = {
        "searchkit_search_vectors": lambda v: index.search_vectors(v, k=10),
        "searchkit_vector_backend": lambda v: index.vectors.search(v, 10),
        "bare_faiss_search": lambda v: bare_faiss.search(v, 10),
    }
    latencies: dict[str, list[float]] = {name: [] for name in [*variants, *parts]}
    # Variants that run torch are timed apart from the rest: torch's OpenMP threads spin on after
    # each call and slowed the int8 ONNX encoder run right after them about 1.5x, which a
    # searchkit query (no torch in the process) never meets.
    torch_names = ["searchkit_dense_fp32", "bare_fp32_encode_faiss", "encode_fp32"]
    groups = [[n for n in variants if n not in torch_names] + list(parts), torch_names]
    for names in groups:
        for query, vector in zip(queries[:20], query_vectors[:20]):  # warm-up
            for name in names:
                (variants[name](query) if name in variants else parts[name](vector[None, :]))
        for number in range(args.query_passes * len(queries)):
            query = queries[number % len(queries)]
            vector = query_vectors[number % len(queries)][None, :]
            shift = number % len(names)  # each variant takes each place in the order in turn
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                variants[name](query) if name in variants else parts[name](vector)
                latencies[name].append((time.perf_counter() - started) * 1000)
    index.close()
    index_fp32.close()

    startup: dict[str, list[tuple[float, float]]] = {"info": [], "search_cold": []}
    info_command = [SEARCHKIT, "info", "--index", str(query_index)]
    search_command = [SEARCHKIT, "search", queries[0], "--index", str(query_index)]
    timed_process(info_command), timed_process(search_command)  # page cache warm-up
    for _ in range(args.startup_runs):
        startup["info"].append(timed_process(info_command))
        startup["search_cold"].append(timed_process(search_command))
    disk_mb = sum(p.stat().st_size for p in query_index.iterdir()) / 1e6
    shutil.rmtree(work)

    query_ms = {name: {"p50": percentile(values, 50), "p99": percentile(values, 99)} for name, values in latencies.items()}
    startup_s = {
        name: {"wall_median": statistics.median(w for w, _ in runs), "cpu_median": statistics.median(c for _, c in runs),
               "wall_min": min(w for w, _ in runs)}
        for name, runs in startup.items()
    }
    results = {
        "command": command,
        "dataset": str(args.dataset.name),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "faiss": faiss.__version__,
                    "torch": torch.__version__, "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "precision": {"passages": default_precision, "query_encoder": query_encoder,
                      "decisions": {job: embedder.decision(job).to_dict() for job in ("passages", "query")}},
        "ingest_subset": {
            "documents": len(subset),
            "chunks": len(chunk_inputs),
            "rounds": args.rounds,
            "seconds": times,
            "chunks_per_second_median": rates,
            "searchkit_timed": "searchkit index (new process)" if args.cli else "Index.add (model loaded)",
            "searchkit_over_bare_fp32": rates["searchkit"] / rates["bare_fp32"],
            "searchkit_over_bare_bf16": rates["searchkit"] / rates["bare_bf16"],
        },
        "ingest_full": full,
        "query_index": {"documents": len(documents) if args.full else len(subset), "disk_mb": disk_mb},
        "query_ms": {"queries": len(queries), "passes": args.query_passes, **query_ms},
        "startup_seconds": startup_s,
        "startup_runs": args.startup_runs,
        "peak_rss_mb": {"after_ingest": rss_after_ingest, "end": peak_rss_mb()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(summary(results))
    print(summary(results))


def summary(r: dict) -> str:
    s, q, st, p = r["ingest_subset"], r["query_ms"], r["startup_seconds"], r["precision"]
    rate = s["chunks_per_second_median"]
    ratio = s["searchkit_over_bare_fp32"]
    dense, bare_fp32, bare_chosen = q["searchkit_dense"]["p50"], q["bare_fp32_encode_faiss"]["p50"], q["bare_chosen_encode_faiss"]["p50"]
    load = r["machine"]
    lines = [
        f"# Ingest, query and start-up on {r['dataset']} ({load['cpus']} CPUs)",
        "",
        f"Produced by `{r['command']}`. Load average before / after: "
        f"{', '.join(f'{x:.1f}' for x in load['load_average_before'])} / {', '.join(f'{x:.1f}' for x in load['load_average_after'])} "
        "(other work shared the machine: compare within this run).",
        "",
        f"Default precision here: passages **{p['passages']}**, one query **{p['query_encoder']}** "
        f"({p['decisions']['query']['reason']}).",
        "",
        f"Ingest, {s['documents']} documents / {s['chunks']} chunks, median of {s['rounds']} alternating rounds:",
        "",
        "| pipeline | chunks/s |",
        "|---|---|",
        f"| bare SentenceTransformer.encode, float32 | {rate['bare_fp32']:.1f} |",
        f"| bare SentenceTransformer.encode, bfloat16 autocast | {rate['bare_bf16']:.1f} |",
        f"| searchkit, default precision: {s['searchkit_timed']} (chunk, embed, SQLite, FAISS) | {rate['searchkit']:.1f} |",
        f"| ratio searchkit / bare float32 (goal >= 3) | **{ratio:.2f}** ({'met' if ratio >= 3 else 'not met'}) |",
        f"| ratio searchkit / bare bfloat16 | {s['searchkit_over_bare_bf16']:.2f} |",
        "",
        f"Queries one at a time, k=10, {q['queries']} queries x {q['passes']} passes, variants interleaved, on "
        f"{r['query_index']['documents']} documents (ms):",
        "",
        "| measure | p50 | p99 |",
        "|---|---|---|",
    ]
    labels = {
        "searchkit_dense": "searchkit dense end to end (encode + FAISS + SQLite text), defaults",
        "searchkit_hybrid": "searchkit hybrid end to end, defaults",
        "searchkit_dense_fp32": "searchkit dense end to end, precision fp32",
        "bare_fp32_encode_faiss": "bare SentenceTransformer.encode fp32 + FAISS IndexFlatIP (no text)",
        "bare_chosen_encode_faiss": f"bare {p['query_encoder']} encode + FAISS IndexFlatIP (no text)",
        "encode_chosen": f"query encode alone, {p['query_encoder']}",
        "encode_fp32": "query encode alone, SentenceTransformer fp32",
        "searchkit_search_vectors": "searchkit search_vectors (FAISS + SQLite text, vector given)",
        "searchkit_vector_backend": "searchkit vector backend search",
        "bare_faiss_search": "bare FAISS IndexFlatIP search",
    }
    for name, label in labels.items():
        lines.append(f"| {label} | {q[name]['p50']:.2f} | {q[name]['p99']:.2f} |")
    hybrid_extra = q["searchkit_hybrid"]["p50"] - dense
    lines += [
        "",
        f"Goals: dense p50 <= 4 ms: **{dense:.2f}** ({'met' if dense <= 4 else 'not met'}); never slower than the bare "
        f"encode + FAISS path: {dense:.2f} vs {bare_fp32:.2f} with the float32 encoder "
        f"({'met' if dense <= bare_fp32 else 'not met'}), vs {bare_chosen:.2f} with the same encoder as searchkit; "
        f"hybrid at most 2 ms more than dense: +{hybrid_extra:.2f} ({'met' if hybrid_extra <= 2 else 'not met'}).",
        "",
        f"Start-up, a new process each time, median of {r['startup_runs']} alternated runs of each (s):",
        "",
        "| command | wall median | wall min | CPU median |",
        "|---|---|---|---|",
        f"| `searchkit info` (goal < 0.5) | {st['info']['wall_median']:.2f} | {st['info']['wall_min']:.2f} | {st['info']['cpu_median']:.2f} |",
        f"| `searchkit search QUERY` cold (goal < 2) | {st['search_cold']['wall_median']:.2f} | {st['search_cold']['wall_min']:.2f} "
        f"| {st['search_cold']['cpu_median']:.2f} |",
        "",
        f"Peak resident memory: {r['peak_rss_mb']['after_ingest']:.0f} MB after ingest, {r['peak_rss_mb']['end']:.0f} MB at the end.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
