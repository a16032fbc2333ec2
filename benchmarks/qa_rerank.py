"""The QA rerank on SQuAD-as-retrieval with each reader's weight: the fixed 0.5 against the one fitted for it.

Run from the repository root (about 10 minutes on 2 cores):

    .venv/bin/python benchmarks/qa_rerank.py --reader DIR [--questions 100] [--fit]

``DIR`` is a reader trained by ``train-reader`` on articles 1-28 of ../shared/datasets/squad-dev-tune (as
``benchmarks/qa.py`` trains it). ``--fit`` first fits its rerank weight as train-reader now does, on (at most)
100 questions of its held-out article spread evenly, over all paragraphs of articles 1-28, and records it in
the reader's searchkit-reader.json. Then all 1,545 paragraphs of the file are indexed (dense) and ``--questions``
test questions spread over articles 29-36 are searched, their own paragraph the one relevant document: retrieval
alone, and with the QA rerank of the default (phrase) reader and of the trained reader at the weight 0.5 and at the fitted
weight. Results go to benchmarks/results/qa_rerank.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa import RESULTS, SQUAD, WORK, rerank_effect, spread  # noqa: E402
from searchkit import Index, load_embedder  # noqa: E402
from searchkit.cache import CachedEmbedder  # noqa: E402
from searchkit.reader import READER_INFO_FILE, SentenceReader, SpanReader  # noqa: E402
from searchkit.rerank_fit import fit_rerank_weight  # noqa: E402
from searchkit.squad import load_squad, paragraph_documents  # noqa: E402
from searchkit.training import DEFAULT_RERANK_QUESTIONS, spread_questions  # noqa: E402


def fit(reader_dir: Path, embedder) -> dict:
    """Fit and record the reader's weight on its held-out article, as train-reader does at the end of training."""
    info_path = reader_dir / READER_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8"))
    train = load_squad(SQUAD, slice(0, 28))
    held = set(info["settings"]["held_out"]["articles"])
    questions = spread_questions([e for e in train.examples if e.article in held], DEFAULT_RERANK_QUESTIONS)
    result = fit_rerank_weight(SpanReader(reader_dir), train, questions, embedder=embedder).to_dict()
    info["rerank"] = result
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print("fitted", json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--fit", action="store_true", help="Fit the reader's rerank weight first and record it.")
    args = parser.parse_args()
    embedder = CachedEmbedder(load_embedder())
    fitted = fit(args.reader, embedder) if args.fit else json.loads(
        (args.reader / READER_INFO_FILE).read_text(encoding="utf-8"))["rerank"]
    test = spread(load_squad(SQUAD, slice(28, 36)), args.questions)
    index_dir = WORK / "squad-paragraphs"
    index = Index.open(index_dir, model=embedder) if index_dir.exists() else Index.create(index_dir, model=embedder)
    if not len(index):
        index.add(paragraph_documents(load_squad(SQUAD)), progress=True)
    trained = SpanReader(args.reader)
    rows = {}
    for name, reader, weight in (("phrase (default), w 0.5", SentenceReader(embedder), 0.5),
                                 ("trained span reader, w 0.5", trained, 0.5),
                                 (f"trained span reader, fitted w {fitted['weight']:g}", trained, fitted["weight"])):
        reader.rerank_weight = weight
        index.reader = reader
        rows[name] = rerank_effect(index, test)
    index.close()
    results = {"reader": str(args.reader), "fitted": fitted, "test_questions": len(test.examples), "rows": rows,
               "load_average_end": os.getloadavg()}
    (RESULTS / "qa_rerank.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# QA rerank with a fitted weight (SQuAD-as-retrieval, test articles 29-36)",
        "",
        f"`python benchmarks/qa_rerank.py --reader READER{' --fit' if args.fit else ''} --questions {args.questions}`:"
        f" all 1,545 paragraphs indexed (dense), {len(test.examples)} test questions spread over articles 29-36, a"
        " question's own paragraph the one relevant document, the 20 best chunks reranked.",
        "",
        f"Weight fitted on {fitted['questions']} held-out questions of the training articles (nDCG@10 per weight there:"
        f" {', '.join(f'{w}: {v:.4f}' for w, v in fitted['ndcg_at_10'].items())}): **{fitted['weight']:g}**.",
        "",
        "| reader | nDCG@10 retrieval → with QA rerank | MRR@10 | recall@1 |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        before, after = row["retrieval"], row["retrieval + qa rerank"]
        lines.append(f"| {name} | {before['ndcg@10']:.4f} → {after['ndcg@10']:.4f} | {before['mrr@10']:.3f} → "
                     f"{after['mrr@10']:.3f} | {before['recall@1']:.2f} → {after['recall@1']:.2f} |")
    (RESULTS / "qa_rerank.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
