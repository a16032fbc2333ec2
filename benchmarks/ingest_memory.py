"""Peak memory of an ingest against the size of the corpus: does it stay flat as the JSONL grows?

Run from the repository root:

    .venv/bin/python benchmarks/ingest_memory.py --sizes-mb 2,20,200

Each size is a generated JSONL file (short paragraphs, one chunk each), ingested by a fresh
process through ``Sources`` and ``Index.add`` exactly as ``searchkit index`` does. The
model's tokenizer does the chunking, but the embedding itself is a cheap deterministic
stand-in, so that the run measures searchkit's pipeline (reading, batching, chunking,
SQLite, FAISS) rather than hours of CPU inference, whose memory does not depend on the
corpus anyway. The FAISS index holds every vector in memory by design (4 bytes x 384 per
chunk); the table reports it beside the peak so the rest of the pipeline can be judged.
Results go to benchmarks/results/ingest_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "ingest_memory"
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r"""
import hashlib, json, resource, sys, time
from dataclasses import replace
import numpy as np
from searchkit import Index, load_embedder
from searchkit.sources import Sources

class HashEmbedder:
    '''The real tokenizer for chunking; vectors derived from a hash of the text.'''
    def __init__(self):
        self.real = load_embedder()
        self.identity = replace(self.real.identity, name="hash-stand-in", weights_sha256="0" * 64)
    def token_offsets(self, texts):
        return self.real.token_offsets(texts)
    def encode(self, texts, **_):
        out = np.empty((len(texts), self.identity.dimension), np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[row] = np.random.default_rng(seed).standard_normal(self.identity.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

corpus, index_dir = sys.argv[1], sys.argv[2]
embedder = HashEmbedder()
embedder.encode(["warm up"]); embedder.token_offsets(["warm up"])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
with Index.create(index_dir, model=embedder) as index:
    report = index.add(Sources([corpus]))
    vector_bytes = index.vectors.index.ntotal * index.config.model.dimension * 4
print(json.dumps({"documents": report.added, "chunks": report.chunks_added, "seconds": time.perf_counter() - started,
                  "baseline_rss_mb": baseline / 1024, "vector_index_mb": vector_bytes / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WORDS = ("search engines rank documents by meaning vectors tokens chunks index query model recall precision "
         "ocean tides volcano glacier espresso bread rust sql parrot photosynthesis gravity galaxy").split()


def make_corpus(path: Path, megabytes: float) -> int:
    """A JSONL file of about ``megabytes`` MB: paragraphs of 40-80 words, deterministic."""
    target = int(megabytes * 2**20)
    written = count = 0
    with path.open("w") as out:
        while written < target:
            digest = hashlib.sha256(str(count).encode()).digest()
            words = [WORDS[b % len(WORDS)] for b in digest * 3][: 40 + digest[0] % 40]
            line = json.dumps({"id": f"d{count}", "text": " ".join(words) + ".", "n": count}) + "\n"
            out.write(line)
            written += len(line)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="2,20,200", help="comma-separated corpus sizes in MB")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [float(s) for s in args.sizes_mb.split(",")]:
        corpus = WORK / f"corpus-{size:g}mb.jsonl"
        documents = make_corpus(corpus, size)
        index_dir = WORK / f"index-{size:g}mb"
        subprocess.run(["rm", "-rf", str(index_dir)], check=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        result = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(index_dir)], env=env,
                                capture_output=True, text=True, check=True)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        measured.update(size_mb=size, file_documents=documents,
                        rest_mb=measured["peak_rss_mb"] - measured["vector_index_mb"])
        rows.append(measured)
        print(json.dumps(measured), flush=True)
        corpus.unlink()
        subprocess.run(["rm", "-rf", str(index_dir)], check=True)
    RESULTS.mkdir(exist_ok=True)
    command = f".venv/bin/python benchmarks/ingest_memory.py --sizes-mb {args.sizes_mb}"
    (RESULTS / "ingest_memory.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Ingest memory against corpus size",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, 2 cores). A fresh process per size ingests a generated JSONL",
        "through `Sources` and `Index.add`, with the real tokenizer chunking and a hash stand-in for the embedding",
        "model (see the script's docstring). Peak RSS includes the loaded tokenizer and model code (the baseline);",
        "the FAISS Flat index holds every vector in memory by design, so `peak - vectors` is the pipeline's own share.",
        "",
        "| corpus | documents | chunks | seconds | baseline RSS MB | peak RSS MB | FAISS vectors MB | peak - vectors MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['size_mb']:g} MB | {r['documents']:,} | {r['chunks']:,} | {r['seconds']:.0f} | "
                     f"{r['baseline_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['vector_index_mb']:.0f} | {r['rest_mb']:.0f} |")
    (RESULTS / "ingest_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
