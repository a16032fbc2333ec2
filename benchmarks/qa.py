"""Extractive QA on SQuAD v1.1 dev (../shared/datasets/squad-dev-tune): readers, training, and the QA rerank.

Run from the repository root (about 40 minutes on 2 cores: 17 of training, the default time limit):

    .venv/bin/python benchmarks/qa.py [--max-train N] [--reader DIR]

Articles 1-28 of the file train a span reader with `train_reader` and its default settings (the bundled
all-MiniLM-L6-v2 weights plus a QA head), unless `--reader` gives a reader already trained on them (its
searchkit-reader.json says how); articles 29-36 are the test set, never seen in training. Reported on the test articles:
exact match and F1 of the default (phrase) reader and of the trained reader, reading the gold paragraph and
open-domain (all 1,545 paragraphs of the file indexed, top 5 chunks read), and the effect of the QA rerank on
retrieval (questions as queries, their paragraph as the one relevant document, nDCG@10). Results go to
benchmarks/results/qa.json and qa.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from searchkit import Index, load_embedder  # noqa: E402
from searchkit.cache import CachedEmbedder  # noqa: E402
from searchkit.evaluation import evaluate_open_domain  # noqa: E402
from searchkit.metrics import evaluate_run  # noqa: E402
from searchkit.reader import SentenceReader, SpanReader  # noqa: E402
from searchkit.squad import load_squad, paragraph_documents, question_paragraphs, read_gold  # noqa: E402
from searchkit.training import READER_INFO_FILE, train_reader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "datasets" / "squad-dev-tune" / "squad.json"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"


def spread(data, count: int):
    """``count`` questions taken evenly across all the test articles."""
    step = max(1, len(data.examples) // count)
    return data.subset(data.examples[::step][:count])


def rerank_effect(index: Index, test, k: int = 10) -> dict[str, float]:
    """nDCG@10 and MRR@10 of retrieval with and without the QA rerank (paragraph = the relevant document)."""
    qrels = {e.id: {doc: 1} for e, doc in zip(test.examples, (question_paragraphs(test)[e.id] for e in test.examples))}
    out = {}
    for label, rerank in (("retrieval", None), ("retrieval + qa rerank", "qa")):
        run = {}
        started = time.perf_counter()
        examples = test.examples
        for begin in range(0, len(examples), 32):
            batch = examples[begin:begin + 32]
            for example, hits in zip(batch, index.search_batch([e.question for e in batch], k, rerank=rerank)):
                scores: dict[str, float] = {}
                for hit in hits:
                    scores.setdefault(hit.doc_id, hit.score)
                run[example.id] = scores
        mean = evaluate_run(run, qrels, [1, 10]).mean
        out[label] = {"ndcg@10": mean["ndcg@10"], "mrr@10": mean["mrr@10"], "recall@1": mean["recall@1"],
                      "seconds": time.perf_counter() - started}
        print(label, out[label], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=None, help="Train on at most this many questions.")
    parser.add_argument("--reader", type=Path, default=None,
                        help="A reader train-reader wrote from articles 1-28, measured instead of training one.")
    parser.add_argument("--open-domain-questions", type=int, default=300,
                        help="Test questions answered open-domain (spread evenly over articles 29-36).")
    parser.add_argument("--rerank-questions", type=int, default=200, help="Test questions for the rerank comparison.")
    args = parser.parse_args()
    train = load_squad(SQUAD, slice(0, 28))
    test = load_squad(SQUAD, slice(28, 36))
    everything = load_squad(SQUAD)
    embedder = CachedEmbedder(load_embedder())
    results: dict = {"train_questions": len(train.examples), "test_questions": len(test.examples),
                     "open_domain_questions": min(args.open_domain_questions, len(test.examples)),
                     "rerank_questions": min(args.rerank_questions, len(test.examples)),
                     "split": "train on articles 1-28, report on articles 29-36"}

    reader_dir = args.reader or WORK / "squad-reader"
    if args.reader is None:
        load = os.getloadavg()
        train_reader(train, reader_dir, max_examples=args.max_train, progress=True)
        results["load_average_before_training"] = load
        results["load_average_after_training"] = os.getloadavg()
    info = json.loads((reader_dir / READER_INFO_FILE).read_text(encoding="utf-8"))
    results["training"] = {**info["report"], "settings": info["settings"]}
    print("trained", json.dumps(results["training"], default=str), flush=True)

    index_dir = WORK / "squad-paragraphs"
    index = Index.open(index_dir, model=embedder) if index_dir.exists() else Index.create(index_dir, model=embedder)
    if not len(index):
        index.add(paragraph_documents(everything), progress=True)

    readers = {"phrase (default)": SentenceReader(embedder), "trained span reader": SpanReader(reader_dir)}
    for name, reader in readers.items():
        gold = read_gold(reader, test, progress=True)
        index.reader = reader
        open_domain = evaluate_open_domain(index, spread(test, args.open_domain_questions), k=5, progress=True)
        results[name] = {"gold_paragraph": {**gold.metrics, "seconds": gold.seconds}, "open_domain": open_domain.to_dict()}
        print(name, json.dumps(results[name]), flush=True)
        results[name]["rerank"] = rerank_effect(index, spread(test, args.rerank_questions))
    index.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qa.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_summary(results)


def write_summary(r: dict) -> None:
    t = r["training"]
    lines = [
        "# Extractive QA on SQuAD v1.1 dev, articles 29-36 (trained on articles 1-28)",
        "",
        "Produced by `.venv/bin/python benchmarks/qa.py` on 2 CPU cores. EM and F1 are percentages with the official",
        f"SQuAD normalisation, over {r['test_questions']} test questions. Open-domain: the 1,545 paragraphs of all 36",
        "articles indexed (dense, all-MiniLM-L6-v2), the top 5 chunks read, the best answer scored.",
        "",
        f"Open-domain uses {r['open_domain_questions']} test questions and the rerank columns {r['rerank_questions']}, "
        "spread evenly over the test articles (reading 20 candidates a question with a span reader on 2 cores is slow).",
        "",
        "| reader | gold paragraph EM / F1 | open-domain EM / F1 | paragraph in top 5 | nDCG@10 retrieval → with QA rerank |",
        "|---|---|---|---|---|",
    ]
    for name in ("phrase (default)", "trained span reader"):
        g, o, rr = r[name]["gold_paragraph"], r[name]["open_domain"], r[name]["rerank"]
        lines.append(
            f"| {name} | {g['exact_match']:.1f} / {g['f1']:.1f} | {o['exact_match']:.1f} / {o['f1']:.1f} | "
            f"{o['retrieval_recall@5']:.1f}% | {rr['retrieval']['ndcg@10']:.4f} → {rr['retrieval + qa rerank']['ndcg@10']:.4f} |"
        )
    lines += [
        "",
        f"Training: {t['train_examples']} questions ({t['train_features']} windows), {t['steps']} of "
        f"{t['planned_steps']} planned steps in {t['train_seconds']:.0f} s (ended by the {t['stopped_by']}); settings "
        f"{json.dumps(t['settings'])}; held-out part of articles 1-28: EM {t['exact_match']:.1f} / F1 {t['f1']:.1f}.",
        "",
        "Reference: distilbert-base-cased-distilled-squad scores EM 79.6 / F1 87.0 on the full dev set (gold paragraph),",
        f"after training on the 87,599 SQuAD train questions; the reader here trained on {t['train_examples']:,}.",
        "",
    ]
    (RESULTS / "qa.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
