"""SQuAD loading (with located problems), the official metrics, and gold-paragraph reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATASETS
from searchkit.reader import SentenceReader
from searchkit.squad import (
    SquadError,
    evaluate_predictions,
    exact_match,
    f1,
    load_squad,
    normalize_answer,
    paragraph_documents,
    question_paragraphs,
    read_gold,
)

SQUAD_DEV = DATASETS / "squad-dev-tune" / "squad.json"

EIFFEL = "The Eiffel Tower is in Paris. It was completed in 1889."
MOON = "Neil Armstrong walked on the Moon in 1969. Buzz Aldrin followed him."
ROME = "Rome is the capital of Italy."


def qa(qid: str, question: str, context: str, *answers: str) -> dict:
    return {"id": qid, "question": question,
            "answers": [{"text": a, "answer_start": context.index(a)} for a in answers]}


def squad_file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def small_squad(tmp_path: Path) -> Path:
    return squad_file(tmp_path, {"version": "1.1", "data": [
        {"title": "Eiffel_Tower", "paragraphs": [
            {"context": EIFFEL, "qas": [qa("e1", "Where is the Eiffel Tower?", EIFFEL, "Paris"),
                                        qa("e2", "When was it completed?", EIFFEL, "1889", "in 1889")]},
        ]},
        {"title": "Apollo_11", "paragraphs": [
            {"context": MOON, "qas": [qa("m1", "Who walked on the Moon first?", MOON, "Neil Armstrong")]},
            {"context": ROME, "qas": [qa("m2", "What is the capital of Italy?", ROME, "Rome")]},
        ]},
        {"title": "Empty", "paragraphs": []},
    ]})


# Metrics


@pytest.mark.parametrize(("text", "expected"), [
    ("The Cat!", "cat"),
    ("  an  apple,  a pear and THE plum. ", "apple pear and plum"),
    ("theatre", "theatre"),  # articles only as whole words
    ("U.S.A.", "usa"),
])
def test_normalize_answer_follows_the_official_script(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_takes_the_best_gold() -> None:
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("a dog", ["cat", "the dog"]) == 1.0
    assert exact_match("dogs", ["dog"]) == 0.0


def test_f1_counts_shared_tokens() -> None:
    # [big, red, dog] vs [red, dog, house]: 2 shared, precision = recall = 2/3.
    assert f1("the big red dog", ["red dog house"]) == pytest.approx(2 / 3)
    # [paris, france] vs [paris]: precision 1/2, recall 1 -> F1 2/3; the exact gold wins.
    assert f1("Paris, France", ["Paris"]) == pytest.approx(2 / 3)
    assert f1("Paris, France", ["Paris", "paris france"]) == 1.0
    assert f1("nothing shared", ["Paris"]) == 0.0
    # A repeated token is shared only as often as both sides have it: [x, x, y] vs [x, y]
    # share 2 tokens, precision 2/3, recall 1 -> F1 0.8.
    assert f1("x x y", ["x y"]) == pytest.approx(0.8)


def test_evaluate_predictions_scores_missing_answers_as_zero(small_squad: Path) -> None:
    data = load_squad(small_squad)
    metrics = evaluate_predictions({"e1": "paris", "e2": "in 1889", "m1": "Armstrong"}, data)
    assert metrics["questions"] == 4
    assert metrics["unanswered"] == 1
    assert metrics["exact_match"] == pytest.approx(50.0)
    # e1 1, e2 1, m1 F1 2/3 ([armstrong] vs [neil, armstrong]), m2 0.
    assert metrics["f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)


# Loading


def test_load_squad_reads_examples_in_file_order(small_squad: Path) -> None:
    data = load_squad(small_squad)
    assert data.problems == []
    assert [e.id for e in data.examples] == ["e1", "e2", "m1", "m2"]
    second = data.examples[1]
    assert second.answers == ("1889", "in 1889")
    assert second.answer_starts == (EIFFEL.index("1889"), EIFFEL.index("in 1889"))
    assert (second.title, second.article, second.paragraph, second.context) == ("Eiffel_Tower", 0, 0, EIFFEL)
    assert data.examples[3].doc_id == "1-1"
    assert data.articles == [0, 1]


def test_load_squad_slices_articles_and_keeps_their_file_indices(small_squad: Path) -> None:
    data = load_squad(small_squad, articles=slice(1, 2))
    assert [e.id for e in data.examples] == ["m1", "m2"]
    assert {e.article for e in data.examples} == {1}
    assert [p.doc_id for p in data.paragraphs] == ["1-0", "1-1"]


def test_malformed_entries_are_skipped_and_located(tmp_path: Path) -> None:
    path = squad_file(tmp_path, {"data": [
        {"title": "Good", "paragraphs": [{"context": ROME, "qas": [
            qa("ok", "Capital of Italy?", ROME, "Rome"),
            {"id": "no-question", "answers": [{"text": "Rome", "answer_start": 0}]},
            {"id": "wrong-start", "question": "Which country?",
             "answers": [{"text": "Italy", "answer_start": 3}]},
            {"id": "one-bad", "question": "Capital?",
             "answers": [{"text": "Rome", "answer_start": "0"}, {"text": "Rome", "answer_start": 0}]},
            qa("ok", "Duplicate id?", ROME, "Rome"),
            "not an object",
        ]}, {"context": ROME, "qas": "not a list"}]},
        {"paragraphs": []},
        {"title": "No paragraphs"},
    ]})
    data = load_squad(path)
    assert [e.id for e in data.examples] == ["ok", "one-bad"]
    assert data.examples[1].answers == ("Rome",)
    where = [p.where for p in data.problems]
    assert where == [
        "data[0].paragraphs[0].qas[1]",
        "data[0].paragraphs[0].qas[2].answers[0]",
        "data[0].paragraphs[0].qas[2]",
        "data[0].paragraphs[0].qas[3].answers[0]",
        "data[0].paragraphs[0].qas[4]",
        "data[0].paragraphs[0].qas[5]",
        "data[0].paragraphs[1].qas",
        "data[1]",
        "data[2].paragraphs",
    ]
    reasons = {p.where: p.reason for p in data.problems}
    assert "does not point at 'Italy'" in reasons["data[0].paragraphs[0].qas[2].answers[0]"]
    assert "duplicate question id 'ok'" in reasons["data[0].paragraphs[0].qas[4]"]


@pytest.mark.parametrize("content", ["not json {", json.dumps({"version": "1.1"}), json.dumps([1, 2])])
def test_unusable_files_raise_with_the_path(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SquadError, match="bad.json"):
        load_squad(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SquadError, match="no SQuAD file"):
        load_squad(tmp_path / "absent.json")


# Paragraphs as documents, and gold reading


def test_paragraph_documents_map_questions_to_their_paragraph(small_squad: Path) -> None:
    data = load_squad(small_squad)
    documents = paragraph_documents(data)
    assert [(d.id, d.title) for d in documents] == [("0-0", "Eiffel_Tower"), ("1-0", "Apollo_11"), ("1-1", "Apollo_11")]
    assert documents[2].text == ROME
    mapping = question_paragraphs(data)
    assert mapping == {"e1": "0-0", "e2": "0-0", "m1": "1-0", "m2": "1-1"}


def test_read_gold_with_the_sentence_readers(small_squad: Path, embedder) -> None:
    data = load_squad(small_squad)
    phrase = read_gold(SentenceReader(embedder), data, batch=3)
    assert phrase.predictions["m1"] == "Neil Armstrong"  # the default narrows the sentence to the answer
    assert phrase.metrics["exact_match"] > 0.0
    reading = read_gold(SentenceReader(embedder, narrow=False), data, batch=3)
    assert reading.predictions["m1"] == "Neil Armstrong walked on the Moon in 1969."
    assert reading.predictions["m2"] == ROME
    # Whole sentences contain the answers, so F1 is partial and exact match is zero here.
    assert reading.metrics["exact_match"] == 0.0
    assert 0.0 < reading.metrics["f1"] < 100.0
    assert reading.metrics["questions"] == 4


@pytest.mark.skipif(not SQUAD_DEV.exists(), reason="shared SQuAD dev set not present")
def test_the_shared_squad_dev_set_loads_cleanly() -> None:
    data = load_squad(SQUAD_DEV)
    assert data.problems == []
    assert len(data.articles) == 36
    assert len(data.examples) == 8123
    assert len(paragraph_documents(data)) == 1545
