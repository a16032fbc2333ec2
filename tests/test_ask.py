"""Asking questions of an index: answers, the QA rerank, and the QA commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT
from searchkit import Document, QueryError
from searchkit.cli import app
from searchkit.evaluation import evaluate_open_domain
from searchkit.reader import ANSWER_MARKERS
from searchkit.sources import read_sources
from searchkit.squad import load_squad, paragraph_documents

DEMO_CORPUS = REPO_ROOT / "corpora" / "demo" / "corpus.jsonl"
runner = CliRunner()

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Eiffel_Tower",
            "paragraphs": [
                {
                    "context": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889 "
                    "for the World's Fair. Gustave Eiffel's company designed and built it.",
                    "qas": [
                        {"id": "q1", "question": "In which city is the Eiffel Tower?",
                         "answers": [{"text": "Paris", "answer_start": 52}]},
                        {"id": "q2", "question": "When was the Eiffel Tower completed?",
                         "answers": [{"text": "1889", "answer_start": 81}]},
                    ],
                }
            ],
        },
        {
            "title": "Photosynthesis",
            "paragraphs": [
                {
                    "context": "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen. "
                    "It takes place in the chloroplasts of plant cells.",
                    "qas": [
                        {"id": "q3", "question": "Where in plant cells does photosynthesis happen?",
                         "answers": [{"text": "in the chloroplasts", "answer_start": 93}]},
                        {"id": "bad", "question": "Broken answer?", "answers": [{"text": "zebra", "answer_start": 3}]},
                    ],
                }
            ],
        },
    ],
}


for _article in SQUAD["data"]:  # answer offsets computed, not counted by hand
    for _paragraph in _article["paragraphs"]:
        for _qa in _paragraph["qas"]:
            for _answer in _qa["answers"]:
                if _qa["id"] != "bad":
                    _answer["answer_start"] = _paragraph["context"].index(_answer["text"])


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory, embedder):
    from searchkit import Index

    index = Index.create(tmp_path_factory.mktemp("ask") / "demo", model=embedder)
    index.add(list(read_sources([DEMO_CORPUS])))
    yield index
    index.close()


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("squad") / "squad.json"
    path.write_text(json.dumps(SQUAD))
    return path


@pytest.mark.parametrize(
    ("question", "doc_id", "words"),
    [
        ("Which method detects exoplanets by watching a star dim?", "as-017", "transit method"),
        ("Why does sourdough need a starter?", None, "starter"),
    ],
)
def test_ask_returns_located_answers_from_the_right_document(demo_index, question, doc_id, words) -> None:
    answers = demo_index.ask(question, k=3)
    assert 1 <= len(answers) <= 3
    best = answers[0]
    if doc_id:
        assert best.doc_id == doc_id
    assert words in best.answer.lower()
    document = next(d for d in read_sources([DEMO_CORPUS]) if d.id == best.doc_id)
    assert document.text[best.start:best.end] == best.answer, "offsets point into the source document"
    assert f"{ANSWER_MARKERS[0]}{best.answer}{ANSWER_MARKERS[1]}" in best.context
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert 0.0 <= answers[-1].score <= best.score <= 1.0


def test_qa_rerank_reorders_hits_and_keeps_them_valid(demo_index) -> None:
    query = "What does the transit method measure when a planet passes its star?"
    plain = demo_index.search(query, k=5)
    reranked = demo_index.search(query, k=5, rerank="qa")
    assert [h.rank for h in reranked] == [1, 2, 3, 4, 5]
    assert reranked[0].doc_id == "as-017"
    assert all(0.0 <= h.score <= 1.0 for h in reranked)
    assert {h.chunk_id for h in reranked} <= {h.chunk_id for h in demo_index.search(query, k=20)}
    assert plain[0].score != reranked[0].score  # the combined score replaces the cosine
    with pytest.raises(QueryError, match="unknown rerank 'magic'"):
        demo_index.search(query, rerank="magic")


def test_ask_on_an_empty_index_has_no_answers(make_index) -> None:
    assert make_index().ask("anything at all?") == []


def test_open_domain_evaluation_reports_retrieval_recall(make_index, squad_file) -> None:
    data = load_squad(squad_file)
    assert [p.where for p in data.problems] == ["data[1].paragraphs[0].qas[1].answers[0]", "data[1].paragraphs[0].qas[1]"]
    assert len(data.examples) == 3
    index = make_index(paragraph_documents(data) + [Document("noise", "Bananas are yellow fruit rich in potassium.")])
    result = evaluate_open_domain(index, data, k=2)
    assert result.questions == 3 and result.retrieval_recall == 100.0
    assert result.predictions["q1"].count("Paris") == 1 and 0 <= result.exact_match <= result.f1 <= 100
    assert result.f1 > 20


def test_cli_ask_text_and_json(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    assert runner.invoke(app, ["index", str(DEMO_CORPUS), "--index", str(index), "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["ask", "How do heart rate training zones work?", "--index", str(index), "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(" 1. ") and "sp-004" in lines[1] and "chars" in lines[1]
    data = json.loads(runner.invoke(app, ["ask", "When was 51 Pegasi b discovered?", "-i", str(index), "--json"]).stdout)
    assert {"answer", "score", "doc_id", "start", "end", "context"} <= set(data[0])
    assert data[0]["doc_id"] == "as-018" and "1995" in data[0]["answer"]
    missing = runner.invoke(app, ["ask", "Where?", "-i", str(index), "--reader", "nobody/no-such-qa-model"])
    assert missing.exit_code == 0 and "using the default phrase reader" in missing.output
    not_qa = tmp_path / "not-a-model"
    not_qa.mkdir()
    result = runner.invoke(app, ["ask", "Where?", "-i", str(index), "--reader", str(not_qa)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(app, ["ask", "  ", "-i", str(index)])
    assert result.exit_code == 2 and "query is empty" in result.output


def test_cli_eval_qa_gold_and_open_domain(squad_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval-qa", str(squad_file), "--index", str(tmp_path / "paragraphs"), "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["questions"] == 3 and scores["reader"] == "phrase"
    assert 0 <= scores["exact_match"] <= scores["f1"] <= 100 and scores["f1"] > 10
    assert scores["open_domain"]["retrieval_recall@1"] == 100.0
    assert "bad" in result.output or "answer_start" in result.output  # the malformed answer is reported
    result = runner.invoke(app, ["eval-qa", str(squad_file), "--articles", "2"])
    assert result.exit_code == 0 and "1 questions" in result.output
    result = runner.invoke(app, ["eval-qa", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(app, ["eval-qa", str(squad_file), "--articles", "3-1"])
    assert result.exit_code == 2 and "--articles" in result.output


def test_cli_train_reader_writes_a_reader_that_ask_loads(squad_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "reader"
    result = runner.invoke(app, ["train-reader", str(squad_file), "--out", str(out), "--eval-fraction", "0.3",
                                 "--batch-size", "2", "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["steps"] >= 1 and (out / "config.json").exists()
    index = tmp_path / "idx"
    runner.invoke(app, ["index", str(DEMO_CORPUS), "--index", str(index), "--quiet"])
    result = runner.invoke(app, ["ask", "When was 51 Pegasi b discovered?", "-i", str(index), "--reader", str(out), "--json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert answers and all(a["doc_id"] for a in answers)
