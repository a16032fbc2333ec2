"""`searchkit tune` on the BEIR sets in ../shared/datasets: does the winner on half the queries hold on the other half?

Run from the repository root after benchmarks/eval_beir.py has built the indexes under benchmarks/work/
(about 5 minutes a set on 2 cores; nothing is embedded but the queries):

    .venv/bin/python benchmarks/tune_beir.py [--datasets scifact npl cranfield] [--seed 0] [--work DIR]

What `searchkit tune ../shared/datasets/NAME --index benchmarks/work/NAME --dry-run` does, for each set:
the settings of the default grid scored by nDCG@10 on one half of the judged queries, the best
compared on the other half with the index's defaults (dense) by a paired randomization test, and
shown beside the hybrid default (weighted 0.6, feedback 0.5, k1 0.9, b 0.4). The indexes are not changed.
Results go to benchmarks/results/tune_beir.json and tune_beir.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import Index, SearchConfig, load_beir, load_embedder  # noqa: E402
from searchkit.cache import CachedEmbedder  # noqa: E402
from searchkit.tuning import Trial, tune  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
HYBRID_DEFAULT = SearchConfig(mode="hybrid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "npl", "cranfield"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work", help="Where the indexes are (one folder a set).")
    args = parser.parse_args()
    embedder = CachedEmbedder(load_embedder())
    results = json.loads((RESULTS / "tune_beir.json").read_text()) if (RESULTS / "tune_beir.json").exists() else {}
    for name in args.datasets:
        dataset = load_beir(DATASETS / name)
        started = time.perf_counter()
        with Index.open(args.work / name, model=embedder) as index:
            result = tune(index, dataset, seed=args.seed, apply=False, progress=True)
            against_hybrid = tune(index, dataset, grid=[result.winner.settings, HYBRID_DEFAULT], seed=args.seed, apply=False)
        hybrid: Trial = next(t for t in against_hybrid.trials if t.settings == HYBRID_DEFAULT)
        entry = result.to_dict()
        entry["seconds"] = time.perf_counter() - started
        entry["seed"] = args.seed
        entry["hybrid_default"] = {"label": hybrid.label(), "tune": hybrid.tune, "held_out": hybrid.held_out}
        entry["settings"] = len(entry["trials"])
        entry["trials"] = entry["trials"][:15]
        results[name] = entry
        print(name, entry["winner"]["label"], f"{entry['current']['held_out']:.4f} -> {entry['winner']['held_out']:.4f}",
              f"p={entry['p_value']:.4f}", f"hybrid default {hybrid.held_out:.4f}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "tune_beir.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "tune_beir.md").write_text(summary(results))


def summary(results: dict[str, dict]) -> str:
    lines = [
        "# searchkit tune on BEIR test collections",
        "",
        f"Produced by `.venv/bin/python benchmarks/tune_beir.py {' '.join(sys.argv[1:])}` (what `searchkit tune ../shared/datasets/NAME --index",
        "benchmarks/work/NAME --dry-run` does). nDCG@10; the winner is chosen on the tuning half (of the settings",
        "not significantly below the best there, the one closest to the built-in defaults) and judged on the",
        "held-out half, against the index's defaults (dense) with a paired randomization test (10,000 sign flips).",
        "The table under each set lists the best settings on the tuning half, not the winner alone.",
        "",
        "| set | queries (tune / held-out) | winner | defaults held-out | winner held-out | gain | p | hybrid default held-out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['tune_queries']} / {r['held_out_queries']} | {r['winner']['label']} | {r['current']['held_out']:.4f} "
            f"| {r['winner']['held_out']:.4f} | {r['gain']:+.4f} | {r['p_value']:.4f} | {r['hybrid_default']['held_out']:.4f} |"
        )
    for name, r in results.items():
        grid = f"{r['settings']} settings, " if "settings" in r else ""
        lines += ["", f"{name}: the best settings on the tuning half ({grid}{r['seconds']:.0f} s for the whole grid)", "",
                  "| setting | tune | held-out |", "|---|---|---|"]
        lines += [f"| {t['label']} | {t['tune']:.4f} | {t['held_out']:.4f} |" for t in r["trials"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
