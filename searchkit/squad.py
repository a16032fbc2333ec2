"""SQuAD v1.1: loading, the official answer metrics, and reading with gold paragraphs.

Like the BEIR loader, a malformed entry never stops the load: it is skipped and reported
as a :class:`~searchkit.document.Problem` whose ``where`` is a JSON path such as
``data[3].paragraphs[2].qas[5]``, so it can be found in the file. Only a file that is not
JSON or has no ``"data"`` list is fatal.

The metrics reproduce the official v1.1 evaluation script (normalisation, exact match,
token F1, maximum over the gold answers), so figures compare with published ones.

Paragraphs get stable document ids ``"{article}-{paragraph}"`` (indices in the file), so
open-domain evaluation can index them and check that retrieval finds a question's own
paragraph.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from searchkit.document import Document, Problem
from searchkit.errors import SearchkitError
from searchkit.reader import Passage, Reader, SpanReader

__all__ = [
    "SquadError",
    "SquadExample",
    "SquadParagraph",
    "SquadData",
    "GoldReading",
    "load_squad",
    "normalize_answer",
    "exact_match",
    "f1",
    "evaluate_predictions",
    "read_gold",
    "score_gold_at_lengths",
    "gold_passage",
    "compare_readings",
    "paragraph_documents",
    "question_paragraphs",
]

_FORMAT = 'a SQuAD v1.1 file is {"version": "1.1", "data": [{"title": ..., "paragraphs": [...]}, ...]}'
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


class SquadError(SearchkitError, ValueError):
    """The file cannot be used at all: missing, not JSON, or without a "data" list."""


def _doc_id(article: int, paragraph: int) -> str:
    return f"{article}-{paragraph}"


@dataclass(frozen=True)
class SquadParagraph:
    """One context paragraph; ``article``/``paragraph`` are its indices in the file."""

    article: int
    paragraph: int
    title: str
    context: str

    @property
    def doc_id(self) -> str:
        return _doc_id(self.article, self.paragraph)


@dataclass(frozen=True)
class SquadExample:
    """One question with its gold answers (texts and character starts in ``context``)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    title: str
    article: int
    paragraph: int

    @property
    def doc_id(self) -> str:
        """The id of the paragraph document this question is asked about."""
        return _doc_id(self.article, self.paragraph)


@dataclass
class SquadData:
    """Questions and paragraphs in file order, and the entries skipped on the way."""

    path: Path | None
    examples: list[SquadExample]
    paragraphs: list[SquadParagraph]
    problems: list[Problem] = field(default_factory=list)

    @property
    def articles(self) -> list[int]:
        """Indices (in the file) of the articles present, in order."""
        return sorted({p.article for p in self.paragraphs})

    def subset(self, examples: Sequence[SquadExample]) -> SquadData:
        """These examples only, with just the paragraphs they are asked about."""
        used = {e.doc_id for e in examples}
        return replace(
            self, examples=list(examples), paragraphs=[p for p in self.paragraphs if p.doc_id in used], problems=[]
        )


# Loading


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise SquadError(f"no SQuAD file at {path}; give the path of a SQuAD v1.1 JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadError(f"{path} is not a readable JSON file ({exc}); {_FORMAT}") from exc


def load_squad(path: str | Path, articles: slice | None = None) -> SquadData:
    """Load a SQuAD v1.1 file, optionally only ``articles`` (a slice of the articles in file order)."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise SquadError(f'{path} has no "data" list; {_FORMAT}')
    data = SquadData(path, [], [], [])
    seen: set[str] = set()
    chosen = range(len(raw["data"]))[articles] if articles is not None else range(len(raw["data"]))
    for index in chosen:
        _load_article(raw["data"][index], index, data, seen)
    return data


def _load_article(entry: Any, index: int, data: SquadData, seen: set[str]) -> None:
    where = f"data[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
        data.problems.append(Problem(where, 'not an article: needs a string "title" and a "paragraphs" list'))
        return
    if not isinstance(entry.get("paragraphs"), list):
        data.problems.append(Problem(f"{where}.paragraphs", "missing or not a list"))
        return
    for number, paragraph in enumerate(entry["paragraphs"]):
        _load_paragraph(paragraph, index, number, entry["title"], data, seen)


def _load_paragraph(entry: Any, article: int, number: int, title: str, data: SquadData, seen: set[str]) -> None:
    where = f"data[{article}].paragraphs[{number}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("context"), str) or not entry["context"].strip():
        data.problems.append(Problem(where, 'not a paragraph: needs a non-empty string "context" and a "qas" list'))
        return
    if not isinstance(entry.get("qas"), list):
        data.problems.append(Problem(f"{where}.qas", "missing or not a list"))
        return
    paragraph = SquadParagraph(article, number, title, entry["context"])
    data.paragraphs.append(paragraph)
    for number, qa in enumerate(entry["qas"]):
        example = _example(qa, paragraph, f"{where}.qas[{number}]", data.problems, seen)
        if example is not None:
            seen.add(example.id)
            data.examples.append(example)


def _example(
    qa: Any, paragraph: SquadParagraph, where: str, problems: list[Problem], seen: set[str]
) -> SquadExample | None:
    reason = _question_problem(qa, seen)
    if reason is not None:
        problems.append(Problem(where, reason))
        return None
    answers = []
    for number, answer in enumerate(qa["answers"]):
        reason = _answer_problem(answer, paragraph.context)
        if reason is None:
            answers.append((answer["text"], answer["answer_start"]))
        else:
            problems.append(Problem(f"{where}.answers[{number}]", f"{reason}; answer skipped"))
    if not answers:
        problems.append(Problem(where, f"question {qa['id']!r} has no valid answer; skipped"))
        return None
    return SquadExample(
        id=qa["id"],
        question=qa["question"],
        context=paragraph.context,
        answers=tuple(text for text, _ in answers),
        answer_starts=tuple(start for _, start in answers),
        title=paragraph.title,
        article=paragraph.article,
        paragraph=paragraph.paragraph,
    )


def _question_problem(qa: Any, seen: set[str]) -> str | None:
    if not isinstance(qa, dict):
        return "not a question object"
    if not isinstance(qa.get("id"), str) or not qa["id"]:
        return 'missing or empty "id"'
    if qa["id"] in seen:
        return f"duplicate question id {qa['id']!r} (first occurrence kept)"
    if not isinstance(qa.get("question"), str) or not qa["question"].strip():
        return f'question {qa["id"]!r} has no "question" text'
    if not isinstance(qa.get("answers"), list) or not qa["answers"]:
        return f'question {qa["id"]!r} has no "answers" list'
    return None


def _answer_problem(answer: Any, context: str) -> str | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) or not answer["text"]:
        return 'not an answer: needs a non-empty "text" and an integer "answer_start"'
    start = answer.get("answer_start")
    if not isinstance(start, int) or isinstance(start, bool):
        return f'"answer_start" is {start!r}, not an integer'
    found = context[start:start + len(answer["text"])] if start >= 0 else ""
    if found != answer["text"]:
        return f"answer_start {start} does not point at {answer['text']!r} in the context (found {found!r})"
    return None


# The official metrics


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (official v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in golds))


def _token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """The official token F1 against the best-matching gold answer."""
    return max((_token_f1(prediction, gold) for gold in golds), default=0.0)


def evaluate_predictions(predictions: dict[str, str], data: SquadData) -> dict[str, float]:
    """Exact match and F1 in percent over all questions of ``data``.

    As in the official script, a question without a prediction scores 0; ``unanswered``
    counts them so a partial run is visible rather than silently low.
    """
    total_em = total_f1 = 0.0
    unanswered = 0
    for example in data.examples:
        prediction = predictions.get(example.id)
        if prediction is None:
            unanswered += 1
            continue
        total_em += exact_match(prediction, example.answers)
        total_f1 += f1(prediction, example.answers)
    count = len(data.examples)
    return {
        "exact_match": 100.0 * total_em / count if count else 0.0,
        "f1": 100.0 * total_f1 / count if count else 0.0,
        "questions": count,
        "unanswered": unanswered,
    }


# Reading with gold paragraphs


@dataclass
class GoldReading:
    """A reader's predictions on the gold paragraphs, their scores and the time taken."""

    predictions: dict[str, str]
    metrics: dict[str, float]
    seconds: float

    @property
    def questions_per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "questions_per_second": self.questions_per_second}


def gold_passage(example: SquadExample) -> Passage:
    """The paragraph ``example`` was asked about, as a reader reads it."""
    return Passage(example.doc_id, example.paragraph, example.title, example.context, 0)


def read_gold(reader: Reader, data: SquadData, batch: int = 32, *, progress: bool = False) -> GoldReading:
    """Read each question against its own paragraph, ``batch`` questions per reader call.

    This measures the reader alone (retrieval assumed perfect), the setting of the
    published SQuAD figures. A question the reader finds no answer for predicts "".
    """
    started = time.perf_counter()
    predictions: dict[str, str] = {}
    examples = data.examples
    with tqdm(total=len(examples), unit="question", desc="reading", disable=not progress) as bar:
        for begin in range(0, len(examples), batch):
            chunk = examples[begin:begin + batch]
            results = reader.read_batch([e.question for e in chunk], [[gold_passage(e)] for e in chunk], top_k=1)
            for example, (answers,) in zip(chunk, results):
                predictions[example.id] = answers[0].answer if answers else ""
            bar.update(len(chunk))
    seconds = time.perf_counter() - started
    return GoldReading(predictions, evaluate_predictions(predictions, data), seconds)


def score_gold_at_lengths(
    reader: SpanReader, data: SquadData, lengths: Sequence[int], batch: int = 32
) -> dict[int, dict[str, float]]:
    """Exact match and F1 on the gold paragraphs with answers of at most each of ``lengths`` tokens.

    Each question is read once and decoded once per limit, so fitting the limit (as
    train-reader does on its held-out questions) costs one reading.
    """
    predictions: dict[int, dict[str, str]] = {length: {} for length in lengths}
    examples = data.examples
    for begin in range(0, len(examples), batch):
        chunk = examples[begin:begin + batch]
        found = reader.read_at_lengths([e.question for e in chunk], [[gold_passage(e)] for e in chunk], lengths)
        for length, answers in found.items():
            predictions[length].update((e.id, a[0].answer if a else "") for e, a in zip(chunk, answers))
    return {length: evaluate_predictions(predictions[length], data) for length in lengths}


def compare_readings(first: GoldReading, second: GoldReading, data: SquadData) -> dict[str, float]:
    """``second`` against ``first`` on the same questions: metric differences and per-question wins.

    ``better``/``worse`` count the questions whose F1 the second reader raised or lowered,
    so two readers with equal averages but different strengths are told apart.
    """
    better = worse = 0
    for example in data.examples:
        mine = f1(second.predictions.get(example.id, ""), example.answers)
        theirs = f1(first.predictions.get(example.id, ""), example.answers)
        better += mine > theirs
        worse += mine < theirs
    return {
        "exact_match": second.metrics["exact_match"] - first.metrics["exact_match"],
        "f1": second.metrics["f1"] - first.metrics["f1"],
        "better": better,
        "worse": worse,
    }


# Paragraphs as a retrieval corpus


def paragraph_documents(data: SquadData) -> list[Document]:
    """One document per paragraph (id ``"{article}-{paragraph}"``, titled by its article)."""
    return [
        Document(p.doc_id, p.context, p.title, {"article": p.article, "paragraph": p.paragraph})
        for p in data.paragraphs
    ]


def question_paragraphs(data: SquadData) -> dict[str, str]:
    """Question id -> id of the paragraph document that answers it (the relevant one)."""
    return {example.id: example.doc_id for example in data.examples}
