"""Retrieval quality with the default precision beside float32, on SciFact, NPL and Cranfield, dense and hybrid.

Run from the repository root (about 15 minutes on 2 quiet cores; the float32 passages take most of it):

    .venv/bin/python benchmarks/precision_quality.py [--datasets cranfield npl scifact]

Each collection is indexed twice with the normal ingestion, once with ``precision="fp32"``
(passages and queries in float32) and once with the defaults (``precision="auto"``: on
CPUs with AVX512-BF16 the passages in bfloat16 and each query through the fastest encoder
that agrees with float32, the int8 ONNX export where installed). Both go through the
embedding cache, whose files are per precision, so a rerun embeds nothing. Results go to
``benchmarks/results/precision_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import CachedEmbedder, Index, load_beir, load_embedder  # noqa: E402
from searchkit.evaluation import evaluate_index  # noqa: E402
from searchkit.retrieval import Fusion, Mode  # noqa: E402
from searchkit.sources import read_sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "precision"
GOAL = 0.003


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cranfield", "npl", "scifact"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--name", default="precision_quality")
    args = parser.parse_args()

    results: dict = {"command": "python benchmarks/precision_quality.py " + " ".join(["--datasets", *args.datasets]),
                     "goal": f"|nDCG@10 default - fp32| <= {GOAL}", "datasets": {}}
    for dataset_name in args.datasets:
        data = load_beir(args.data / dataset_name)
        entry: dict = {"queries": len(data.queries), "settings": {}}
        for precision in ("fp32", "auto"):
            embedder = load_embedder(precision=precision)
            cached = CachedEmbedder(embedder)
            folder = WORK / f"{dataset_name}-{precision}"
            started = time.perf_counter()
            with Index.open_or_create(folder, model=cached) as index:
                report = index.add(read_sources([data.corpus_path]), progress=False)
                built = time.perf_counter() - started
                setting = {
                    "passages": index.config.model.precision,
                    "queries": embedder.query_precision,
                    "chunks": index.store.counts()[1],
                    "embedded_fresh": cached.misses,
                    "build_seconds": built,
                    "ndcg@10": {},
                }
                for mode in (Mode.DENSE, Mode.HYBRID):
                    evaluation = evaluate_index(index, data, [10, 100], mode=mode, fusion=Fusion.WEIGHTED)
                    setting["ndcg@10"][mode.value] = evaluation.evaluation.mean["ndcg@10"]
            cached.close()
            entry["settings"][precision] = setting
            print(dataset_name, precision, json.dumps(setting), f"({report.chunks_added} chunks embedded now)", flush=True)
        fp32, default = entry["settings"]["fp32"]["ndcg@10"], entry["settings"]["auto"]["ndcg@10"]
        entry["difference"] = {mode: default[mode] - fp32[mode] for mode in fp32}
        entry["within_goal"] = all(abs(d) <= GOAL for d in entry["difference"].values())
        results["datasets"][dataset_name] = entry
        write(results, args.name)


def write(results: dict, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# nDCG@10: default precision beside float32",
        "",
        f"Produced by `{results['command']}`. Goal: {results['goal']}.",
        "",
        "| collection | mode | fp32 | default | difference | passages / queries (default) |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, entry in results["datasets"].items():
        default = entry["settings"]["auto"]
        for mode, difference in entry["difference"].items():
            lines.append(
                f"| {dataset} | {mode} | {entry['settings']['fp32']['ndcg@10'][mode]:.4f} | {default['ndcg@10'][mode]:.4f} "
                f"| {difference:+.4f} | {default['passages']} / {default['queries']} |"
            )
    met = all(entry["within_goal"] for entry in results["datasets"].values())
    lines += ["", f"Within {GOAL} everywhere: {'yes' if met else 'no'}.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
