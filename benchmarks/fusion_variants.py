"""Hybrid fusion variants on BEIR indexes, computed from every chunk's dense and BM25 scores.

The fusion searchkit used before took the top 100 chunks of each retriever, min-max scaled each
list and gave a chunk missing from a list that list's lowest score ("before" below). The variants
give every candidate of the union its true score from both retrievers (its cosine from the stored
embedding; its BM25, 0 where it holds no query term) before scaling, by min-max or z-score, at
chunk or document level, and add a dense pseudo-relevance feedback (Rocchio: the query vector
moved towards the top 3 chunks of the same fusion, then the dense side ranked again and fused).
"complete union, z" with feedback is what searchkit.retrieval does now. Every chunk's scores are
computed in memory, so this runs in seconds on a built index.

    .venv/bin/python benchmarks/fusion_variants.py scifact=IDX cranfield=IDX npl=IDX
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchkit import Index, load_beir  # noqa: E402
from searchkit.embedding import encode_queries  # noqa: E402
from searchkit.lexical import Bm25, bm25_scores  # noqa: E402
from searchkit.metrics import evaluate_run  # noqa: E402
from searchkit.tuning import paired_randomization_test, split_queries  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
DEPTH = 100
WEIGHTS = (0.4, 0.5, 0.6, 0.7)
FEEDBACKS = (0.5, 1.0)
BEFORE = "before (top lists, min-max) w=0.5"
DEFAULT = "complete union, z w=0.6 + feedback 0.5"  # what searchkit ranks by now (SearchConfig's defaults)


class Scores:
    """Every judged query's cosine and BM25 (k1 0.9, b 0.4) against every chunk of one index."""

    def __init__(self, index: Index, data_dir: Path) -> None:
        data = load_beir(data_dir)
        self.qrels = data.qrels
        self.qids = [q for q in data.queries if q in data.qrels]
        parts = list(index.store.embeddings(index.config.model.dimension))
        ids = np.concatenate([p[0] for p in parts])
        vectors = np.concatenate([p[1] for p in parts]).astype(np.float32)
        order = np.argsort(ids)
        self.ids, self.vectors = ids[order], vectors[order]
        documents = index.store.chunk_documents(self.ids.tolist())
        self.doc_of = np.array([documents[int(i)] for i in self.ids])
        texts = [data.queries[q] for q in self.qids]
        self.queries = encode_queries(index.embedder, texts).astype(np.float32)
        self.dense = self.queries @ self.vectors.T
        self.lexical = np.zeros_like(self.dense)
        bm25 = Bm25(index.store)
        for n, text in enumerate(texts):
            postings = bm25.postings(text)
            if postings is not None:
                chunk_ids, scores = bm25_scores(postings, 0.9, 0.4)
                self.lexical[n, np.searchsorted(self.ids, chunk_ids)] = scores

    def per_query(self, scores: np.ndarray) -> dict[str, float]:
        """nDCG@10 of each judged query, documents ranked by their best chunk's score."""
        run = {}
        for n, query_id in enumerate(self.qids):
            ranked: dict[str, float] = {}
            for i in np.argsort(-scores[n])[:200]:
                ranked.setdefault(str(self.doc_of[i]), float(scores[n, i]))
                if len(ranked) == 10:
                    break
            run[query_id] = ranked
        per_query = evaluate_run(run, {q: self.qrels[q] for q in self.qids}, [10]).per_query
        return {q: values["ndcg@10"] for q, values in per_query.items()}

    def by_document(self, scores: np.ndarray) -> np.ndarray:
        """Each chunk given its document's best score: fusion at document level."""
        out = scores.copy()
        groups = collections.defaultdict(list)
        for i, doc in enumerate(self.doc_of):
            groups[doc].append(i)
        for members in groups.values():
            if len(members) > 1:
                out[:, members] = scores[:, members].max(axis=1, keepdims=True)
        return out


def _min_max(x: np.ndarray) -> np.ndarray:
    low, high = x.min(), x.max()
    return np.ones_like(x) if high == low else (x - low) / (high - low)


def _z(x: np.ndarray) -> np.ndarray:
    spread = x.std()
    return np.zeros_like(x) if spread == 0 else (x - x.mean()) / spread


def fused(s: Scores, weight: float, scale: str, complete: bool, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    out = np.full(dense.shape, -1e9)
    for n in range(len(s.qids)):
        top_dense = np.argsort(-dense[n])[:DEPTH]
        matching = np.nonzero(lexical[n])[0]
        top_lexical = matching[np.argsort(-lexical[n, matching])][:DEPTH]
        union = np.union1d(top_dense, top_lexical)
        if not complete:  # what searchkit did before: a chunk missing from a list gets 0 there after min-max
            scaled_dense = np.zeros(len(union))
            scaled_lexical = np.zeros(len(union))
            scaled_dense[np.isin(union, top_dense)] = _min_max(dense[n, np.intersect1d(union, top_dense)])
            in_lexical = np.isin(union, top_lexical)
            if in_lexical.any():
                scaled_lexical[in_lexical] = _min_max(lexical[n, np.intersect1d(union, top_lexical)])
            out[n, union] = weight * scaled_dense + (1 - weight) * scaled_lexical
            continue
        f = _min_max if scale == "min-max" else _z
        out[n, union] = weight * f(dense[n, union]) + (1 - weight) * f(lexical[n, union])
    return out


def variants(s: Scores) -> dict[str, dict[str, float]]:
    """Each variant's per-query nDCG@10."""
    results = {"dense": s.per_query(s.dense), "lexical": s.per_query(np.where(s.lexical > 0, s.lexical, -1e9))}
    doc_dense, doc_lexical = s.by_document(s.dense), s.by_document(s.lexical)
    for w in WEIGHTS:
        results[f"before (top lists, min-max) w={w}"] = s.per_query(fused(s, w, "min-max", False, s.dense, s.lexical))
        for scale in ("min-max", "z"):
            results[f"complete union, {scale} w={w}"] = s.per_query(fused(s, w, scale, True, s.dense, s.lexical))
            results[f"complete union, {scale}, document level w={w}"] = s.per_query(fused(s, w, scale, True, doc_dense, doc_lexical))
    for w in WEIGHTS:
        first = fused(s, w, "z", True, s.dense, s.lexical)
        for beta in FEEDBACKS:
            expanded = s.queries.copy()
            for n in range(len(s.qids)):
                top = np.lexsort((s.ids, -first[n]))[:3]
                expanded[n] += beta * s.vectors[top].mean(axis=0)
            expanded /= np.linalg.norm(expanded, axis=1, keepdims=True)
            dense = expanded @ s.vectors.T
            results[f"complete union, z w={w} + feedback {beta}"] = s.per_query(fused(s, w, "z", True, dense, s.lexical))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("indexes", nargs="+", metavar="NAME=INDEX", help="A BEIR set under ../shared/datasets and its built index.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fusion_variants")
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    held_out: dict[str, dict[str, object]] = {}
    every: dict[str, dict[str, dict[str, float]]] = {}
    for item in args.indexes:
        name, _, path = item.partition("=")
        with Index.open(path) as index:
            every[name] = per_query = variants(Scores(index, DATASETS / name))
        table[name] = {key: float(np.mean(list(scores.values()))) for key, scores in per_query.items()}
        held_out[name] = judge_on_held_out_half(per_query)
        print(name, json.dumps(table[name], indent=1), json.dumps(held_out[name]), flush=True)
    left_out = judge_leaving_one_collection_out(every) if len(every) > 2 else {}
    args.out.with_suffix(".json").write_text(
        json.dumps({"all_queries": table, "held_out": held_out, "collection_left_out": left_out}, indent=2) + "\n"
    )
    names = list(table)
    lines = [
        "# Hybrid fusion variants: nDCG@10 over all judged queries",
        "",
        f"`python benchmarks/fusion_variants.py {' '.join(args.indexes)}` (indexes built by `searchkit index`",
        "with the defaults: bf16 passages, int8 ONNX queries, chunks of 254 word pieces). BM25 k1 0.9, b 0.4; 100",
        "candidates per retriever. The first table is over all queries (chosen and scored on the same queries); the second is held out.",
        "",
        "| variant | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in table[names[0]]:
        lines.append(f"| {key} | " + " | ".join(f"{table[n][key]:.4f}" for n in names) + " |")
    lines += [
        "",
        "Chosen on one half of each set's queries (`searchkit tune`'s split, seed 0) and judged on the other: the best",
        "fusion variant on the tuning half against the fusion before (weighted 0.5) on the held-out half, with the paired",
        "randomization test's p-value.",
        "",
        "| set | chosen on the tuning half | held-out: before | held-out: chosen | p |",
        "|---|---|---|---|---|",
    ]
    for name, row in held_out.items():
        lines.append(f"| {name} | {row['chosen']} | {row['before']:.4f} | {row['held_out']:.4f} | {row['p']:.4f} |")
    if left_out:
        lines += [
            "",
            "A default has to hold on collections it was not chosen on: each set below is judged with the variant",
            "that scores best on the mean of the other sets (all their queries), against the fusion before, over all",
            "of this set's queries, with the paired randomization test's p-value.",
            "",
            "| set | chosen on the other sets | before | chosen | p |",
            "|---|---|---|---|---|",
        ]
        for name, row in left_out.items():
            lines.append(f"| {name} | {row['chosen']} | {row['before']:.4f} | {row['held_out']:.4f} | {row['p']:.4f} |")
    lines += [
        "",
        f"The default now ({DEFAULT}) against the fusion before, over all queries, with the paired randomization",
        "test's p-value:",
        "",
        "| set | before | default | gain | p |",
        "|---|---|---|---|---|",
    ]
    for name, per_query in every.items():
        ids = sorted(per_query[BEFORE])
        before, default = [per_query[BEFORE][q] for q in ids], [per_query[DEFAULT][q] for q in ids]
        lines.append(f"| {name} | {np.mean(before):.4f} | {np.mean(default):.4f} | {np.mean(default) - np.mean(before):+.4f} "
                     f"| {paired_randomization_test(before, default):.4f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def judge_on_held_out_half(per_query: dict[str, dict[str, float]]) -> dict[str, object]:
    """The fusion variant best on the tuning half, scored against the fusion before on the other half."""
    ids = sorted(per_query[BEFORE])
    tune_ids, held_ids = split_queries(ids)
    fusions = [key for key in per_query if key not in ("dense", "lexical") and "dense alone" not in key]
    chosen = max(fusions, key=lambda key: np.mean([per_query[key][q] for q in tune_ids]))
    today = [per_query[BEFORE][q] for q in held_ids]
    picked = [per_query[chosen][q] for q in held_ids]
    return {"chosen": chosen, "before": float(np.mean(today)), "held_out": float(np.mean(picked)),
            "p": paired_randomization_test(today, picked)}


def judge_leaving_one_collection_out(every: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, object]]:
    """Each set scored with the fusion variant best on the mean over the other sets, against the fusion before."""
    out = {}
    for name, per_query in every.items():
        others = [every[other] for other in every if other != name]
        fusions = [key for key in per_query if key not in ("dense", "lexical") and "dense alone" not in key]
        chosen = max(fusions, key=lambda key: np.mean([np.mean(list(o[key].values())) for o in others]))
        ids = sorted(per_query[BEFORE])
        today, picked = [per_query[BEFORE][q] for q in ids], [per_query[chosen][q] for q in ids]
        out[name] = {"chosen": chosen, "before": float(np.mean(today)), "held_out": float(np.mean(picked)),
                     "p": paired_randomization_test(today, picked)}
    return out


if __name__ == "__main__":
    main()
