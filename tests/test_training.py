"""Training a span reader: a short CPU run must learn, and its folder must load as a reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from searchkit.reader import Passage, SpanReader
from searchkit.squad import SquadData, load_squad
from searchkit.training import READER_INFO_FILE, prepare_features, split_held_out, train_reader

PEOPLE = [
    ("Alice", "Lyon", "painter"), ("Bruno", "Porto", "baker"), ("Chen", "Dalian", "pilot"),
    ("Dana", "Haifa", "surgeon"), ("Emil", "Bergen", "carpenter"), ("Fatou", "Dakar", "chemist"),
    ("Greta", "Graz", "librarian"), ("Hugo", "Ghent", "plumber"), ("Ines", "Cadiz", "architect"),
    ("Jonas", "Tartu", "farmer"), ("Keiko", "Sendai", "journalist"), ("Luis", "Cusco", "drummer"),
    ("Mira", "Split", "dentist"), ("Nils", "Umea", "welder"), ("Olga", "Minsk", "tailor"),
    ("Pavel", "Brno", "chef"),
]


def qa(qid: str, question: str, context: str, answer: str) -> dict:
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> SquadData:
    """4 articles of 4 people, two questions each: 32 questions whose answers are easy to learn."""
    articles = []
    for number in range(4):
        paragraphs = []
        for name, city, job in PEOPLE[number * 4:number * 4 + 4]:
            context = f"{name} was born in {city} and later worked as a {job} for many years."
            paragraphs.append({"context": context, "qas": [
                qa(f"{name}-city", f"Where was {name} born?", context, city),
                qa(f"{name}-job", f"What did {name} work as?", context, job),
            ]})
        articles.append({"title": f"People {number}", "paragraphs": paragraphs})
    path = tmp_path_factory.mktemp("squad") / "people.json"
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return load_squad(path)


def test_held_out_split_is_by_article_then_by_question(people: SquadData) -> None:
    fit, held = split_held_out(people.examples, 0.25, seed=0)
    assert len(fit) == 24 and len(held) == 8
    assert len({e.article for e in held}) == 1 and not {e.article for e in held} & {e.article for e in fit}
    one_article = people.examples[:8]
    fit, held = split_held_out(one_article, 0.25, seed=0)
    assert (len(fit), len(held)) == (6, 2)
    assert split_held_out(one_article, 0.0, seed=0) == (one_article, [])


def test_features_label_the_answer_tokens_in_every_window(people: SquadData) -> None:
    from transformers import AutoTokenizer

    from searchkit.embedding import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    example = people.examples[0]
    padding = "Filler words fill this sentence. " * 60
    long_example = replace(example, context=padding + example.context,
                           answer_starts=(len(padding) + example.answer_starts[0],))
    features = prepare_features(tokenizer, [long_example], max_length=128, stride=32)
    assert len(features) > 3
    labelled = [f for f in features if f["start_positions"] != 0]
    assert labelled  # windows holding the answer point at it, the others at CLS (0)
    for feature in labelled:
        tokens = feature["input_ids"][feature["start_positions"]:feature["end_positions"] + 1]
        assert tokenizer.decode(tokens) == "lyon"
    assert all(f["end_positions"] == 0 for f in features if f["start_positions"] == 0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one thread: on a busy 2-core machine two spinning torch threads run 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_a_short_training_run_learns_and_saves_a_reader(people: SquadData, tmp_path: Path) -> None:
    messages: list[str] = []
    report = train_reader(
        people, tmp_path / "reader", epochs=10, batch_size=8, learning_rate=2e-4, eval_fraction=0.25,
        max_length=96, stride=16, log_every=3, progress=False, log=messages.append,
    )
    assert report.train_examples == 24 and report.steps == 30
    assert len(report.losses) == 10
    first, last = sum(report.losses[:2]) / 2, sum(report.losses[-2:]) / 2
    assert last < 0.6 * first, report.losses
    assert report.eval_questions == 8 and report.exact_match is not None
    assert any("loss" in m for m in messages)

    info = json.loads((tmp_path / "reader" / READER_INFO_FILE).read_text(encoding="utf-8"))
    assert info["settings"]["learning_rate"] == 2e-4
    assert info["report"]["f1"] == report.f1

    reader = SpanReader(tmp_path / "reader")  # no allow_untrained_head: the head is trained
    context = "Quentin was born in Nantes and later worked as a sculptor for many years."
    [[answer]] = reader.read("Where was Quentin born?", [Passage("q", 0, "", context)])
    assert context[answer.start:answer.end] == answer.answer


@pytest.mark.usefixtures("one_thread")
def test_train_reader_command_without_held_out_questions(people: SquadData, tmp_path: Path) -> None:
    """--eval-fraction 0 holds nothing out: the summary says so instead of printing missing scores."""
    from typer.testing import CliRunner

    from searchkit.cli import app

    out = tmp_path / "reader"
    result = CliRunner().invoke(app, [
        "train-reader", str(people.path), "--out", str(out), "--eval-fraction", "0", "--max-examples", "4",
        "--batch-size", "4",
    ])
    assert result.exit_code == 0, result.output
    assert "trained 1 steps on 4 questions" in result.output
    assert "nothing held out" in result.output and "None" not in result.output
    assert (out / READER_INFO_FILE).is_file()
