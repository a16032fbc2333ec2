"""The QA rerank weight: fitted to what a reader is worth, and used wherever the rerank runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import squad_question

from searchkit import Document
from searchkit.reader import DEFAULT_RERANK_WEIGHT, Answer, Passage, rerank_weight
from searchkit.rerank_fit import RERANK_WEIGHTS, fit_rerank_weight
from searchkit.squad import SquadData, load_squad

# Each question has its answering paragraph and a decoy that repeats the question's words,
# so retrieval alone ranks the decoy first and only a reader can put the answer on top.
FACTS = [
    ("Where was Alice born?", "Records show the painter Alice grew up by the river in Lyon.", "Lyon"),
    ("What did Bruno bake?", "The bakery on the corner was famous for Bruno's rye loaves.", "rye loaves"),
    ("When did Chen learn to fly?", "At nineteen the young Chen earned a pilot licence in Dalian.", "At nineteen"),
    ("Which city did Dana move to?", "After medical school the surgeon Dana settled in Haifa.", "Haifa"),
]


@pytest.fixture(scope="module")
def decoyed(tmp_path_factory: pytest.TempPathFactory) -> SquadData:
    paragraphs = []
    for number, (question, context, answer) in enumerate(FACTS):
        paragraphs.append({"context": context, "qas": [squad_question(f"q{number}", question, context, answer)]})
        decoy = f"{question} Nobody could say. {question} The question was asked again and again."
        paragraphs.append({"context": decoy, "qas": []})
    path = tmp_path_factory.mktemp("squad") / "decoyed.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Facts", "paragraphs": paragraphs}]}))
    return load_squad(path)


class KnownAnswers:
    """A reader scoring high where a passage holds one of ``answers`` (or, ``inverted``, where it holds none)."""

    name = "known"

    def __init__(self, answers: Sequence[str], inverted: bool = False) -> None:
        self.answers, self.inverted = answers, inverted

    def read(self, question: str, passages: Sequence[Passage], top_k: int = 1) -> list[list[Answer]]:
        return self.read_batch([question], [passages], top_k)[0]

    def read_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int = 1
    ) -> list[list[list[Answer]]]:
        def read(passage: Passage) -> list[Answer]:
            holds = any(answer in passage.text for answer in self.answers)
            score = 5.0 if holds != self.inverted else -5.0
            return [Answer(passage.text[:5], score, passage.doc_id, passage.chunk_id, passage.title,
                           passage.offset, passage.offset + 5, passage.text, passage.offset)]
        return [[read(passage) for passage in group] for group in passages]


def test_a_reader_that_finds_the_answers_earns_a_low_weight_and_lifts_ndcg(decoyed: SquadData, embedder) -> None:
    fit = fit_rerank_weight(KnownAnswers([a for _, _, a in FACTS]), decoyed, decoyed.examples, embedder=embedder)
    assert fit.ndcg_at_10["1.0"] < 0.8  # retrieval alone puts the decoys first
    assert fit.weight < 1.0 and fit.gain > 0.2
    assert fit.ndcg_at_10[str(fit.weight)] == pytest.approx(1.0)
    assert fit.questions == 4 and set(fit.ndcg_at_10) == {str(w) for w in RERANK_WEIGHTS}


def test_a_reader_that_points_away_from_the_answers_gets_weight_one(decoyed: SquadData, embedder) -> None:
    """w = 1 leaves the retrieval order: a misleading reader can never pull the answers down."""
    fit = fit_rerank_weight(KnownAnswers([a for _, _, a in FACTS], inverted=True), decoyed, decoyed.examples,
                            embedder=embedder)
    assert fit.weight == 1.0 and fit.gain == 0.0
    assert min(fit.ndcg_at_10.values()) < fit.ndcg_at_10["1.0"]


def test_search_and_ask_use_the_readers_rerank_weight(make_index) -> None:
    index = make_index([Document("gold", "The answer to everything lives here: forty-two."),
                        Document("decoy", "What is the answer? What is the answer to everything?"),
                        Document("fruit", "Bananas are a yellow fruit that grows in bunches.")])
    question = "What is the answer to everything?"

    def order(hits) -> list[str]:
        return [hit.doc_id for hit in hits]

    assert order(index.search(question, 3)) == ["decoy", "gold", "fruit"]
    index.reader = KnownAnswers(["forty-two"])
    assert rerank_weight(index.reader) == DEFAULT_RERANK_WEIGHT
    assert order(index.search(question, 3, rerank="qa"))[0] == "gold"
    index.reader.rerank_weight = 1.0  # as a reader whose rerank did not help is saved
    assert order(index.search(question, 3, rerank="qa")) == ["decoy", "gold", "fruit"]
    assert order(index.ask(question, 3))[0] == "decoy"
    index.reader.rerank_weight = 0.0
    assert order(index.ask(question, 3))[0] == "gold"


def test_a_span_reader_reads_its_weight_from_the_reader_folder(tmp_path: Path, caplog) -> None:
    from searchkit.reader import READER_INFO_FILE, SpanReader, _learned_rerank_weight, _reader_info
    from searchkit.embedding import resolve_model

    folder = tmp_path / "reader"
    folder.mkdir()

    def weight() -> float:
        return _learned_rerank_weight(_reader_info(folder), folder)

    assert weight() == DEFAULT_RERANK_WEIGHT  # nothing recorded
    (folder / READER_INFO_FILE).write_text(json.dumps({"rerank": {"weight": 0.8}}))
    assert weight() == 0.8
    (folder / READER_INFO_FILE).write_text(json.dumps({"rerank": {"weight": "high"}}))
    assert weight() == DEFAULT_RERANK_WEIGHT
    assert "not a number in [0, 1]" in caplog.text
    bare = SpanReader(resolve_model("all-MiniLM-L6-v2"), allow_untrained_head=True)
    assert bare.rerank_weight == DEFAULT_RERANK_WEIGHT
