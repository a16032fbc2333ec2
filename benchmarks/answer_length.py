"""A trained reader's exact match and F1 on SQuAD articles 29-36 at every answer length limit, 1 to 30 tokens.

Run from the repository root (about a minute on 2 cores):

    .venv/bin/python benchmarks/answer_length.py --reader DIR

``DIR`` is a reader trained by ``train-reader`` on articles 1-28 of ../shared/datasets/squad-dev-tune, which
fitted its limit on its held-out article. This shows whether that fit carries over to the test articles, never
trained on: each question is read once against its own paragraph and decoded at every limit. Results go to
benchmarks/results/answer_length.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa import RESULTS, SQUAD  # noqa: E402
from searchkit.reader import DEFAULT_MAX_ANSWER_TOKENS, SpanReader  # noqa: E402
from searchkit.squad import load_squad, score_gold_at_lengths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", type=Path, required=True, help="a folder written by train-reader")
    args = parser.parse_args()
    reader = SpanReader(args.reader)
    fitted = reader.max_answer_tokens
    test = load_squad(SQUAD, slice(28, 36))
    scores = score_gold_at_lengths(reader, test, range(1, DEFAULT_MAX_ANSWER_TOKENS + 1))
    result = {"reader": str(args.reader), "fitted_max_answer_tokens": fitted, "questions": len(test.examples),
              "scores": scores}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "answer_length.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Answer length limit on SQuAD articles 29-36 (gold paragraph)", "",
        f"Reader `{args.reader}`, limit fitted on its held-out article: {fitted} tokens; "
        f"{len(test.examples)} test questions. `python benchmarks/answer_length.py --reader READER`", "",
        "| at most N tokens | EM | F1 |", "|---|---|---|",
    ]
    for length, score in scores.items():
        mark = " (fitted)" if length == fitted else ""
        lines.append(f"| {length}{mark} | {score['exact_match']:.2f} | {score['f1']:.2f} |")
    (RESULTS / "answer_length.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
