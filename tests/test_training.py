"""Training a span reader: a short CPU run must learn, and its folder must load as a reader."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import squad_question
import torch

from searchkit.errors import ConfigError
from searchkit.reader import Passage, SpanReader, load_qa_model
from searchkit.squad import SquadData, load_squad
from searchkit.training import (
    CHECKPOINT_FILE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DROPOUT,
    DEFAULT_TIME_LIMIT,
    READER_INFO_FILE,
    TrainingInterrupted,
    collate,
    epoch_batches,
    learning_rate_factor,
    prepare_features,
    set_dropout,
    span_loss,
    split_held_out,
    train_reader,
)

PEOPLE = [
    ("Alice", "Lyon", "painter"), ("Bruno", "Porto", "baker"), ("Chen", "Dalian", "pilot"),
    ("Dana", "Haifa", "surgeon"), ("Emil", "Bergen", "carpenter"), ("Fatou", "Dakar", "chemist"),
    ("Greta", "Graz", "librarian"), ("Hugo", "Ghent", "plumber"), ("Ines", "Cadiz", "architect"),
    ("Jonas", "Tartu", "farmer"), ("Keiko", "Sendai", "journalist"), ("Luis", "Cusco", "drummer"),
    ("Mira", "Split", "dentist"), ("Nils", "Umea", "welder"), ("Olga", "Minsk", "tailor"),
    ("Pavel", "Brno", "chef"),
]


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> SquadData:
    """4 articles of 4 people, two questions each: 32 questions whose answers are easy to learn."""
    articles = []
    for number in range(4):
        paragraphs = []
        for name, city, job in PEOPLE[number * 4:number * 4 + 4]:
            context = f"{name} was born in {city} and later worked as a {job} for many years."
            paragraphs.append({"context": context, "qas": [
                squad_question(f"{name}-city", f"Where was {name} born?", context, city),
                squad_question(f"{name}-job", f"What did {name} work as?", context, job),
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
    assert all(f["gold_spans"] == [(f["start_positions"], f["end_positions"])] for f in features)


def test_every_distinct_gold_answer_is_a_target(people: SquadData) -> None:
    """Annotators marked "Lyon" and "in Lyon": both are targets, and the loss is their joint likelihood."""
    tokenizer, model = load_qa_model("all-MiniLM-L6-v2", allow_untrained_head=True)
    example = people.examples[0]
    start = example.answer_starts[0]
    both = replace(example, answers=("Lyon", "in Lyon", "Lyon"), answer_starts=(start, start - 3, start))
    [feature] = prepare_features(tokenizer, [both])
    spans = feature["gold_spans"]
    assert [tokenizer.decode(feature["input_ids"][a:b + 1]) for a, b in spans] == ["lyon", "in lyon"]
    batch = collate(tokenizer, [feature])
    assert batch["gold_starts"][0].nonzero().flatten().tolist() == sorted({a for a, _ in spans})
    assert batch["gold_ends"][0].nonzero().flatten().tolist() == [spans[0][1]]  # both end at "lyon"
    with torch.no_grad():
        output = model(**{k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
        loss = span_loss(model, batch)
        first_only = span_loss(model, collate(tokenizer, prepare_features(tokenizer, [example])))
    start_p = torch.softmax(output.start_logits[0].masked_fill(~batch["answerable"][0], -1e9), 0)
    end_p = torch.softmax(output.end_logits[0].masked_fill(~batch["answerable"][0], -1e9), 0)
    (a, b), (c, _) = spans
    expected = -(torch.log(start_p[a] + start_p[c]) + torch.log(end_p[b])) / 2
    assert loss == pytest.approx(expected.item(), abs=1e-4)
    assert loss < first_only  # another acceptable start only adds likelihood


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
    # The rerank weight was fitted on the 8 held-out questions and travels with the reader.
    assert info["rerank"]["questions"] == 8 and info["rerank"] == report.rerank
    assert any("QA rerank weight" in m for m in messages)
    # The answer length limit was fitted on them too: the best exact match plus F1 of every limit up to 30.
    scores = report.scores_by_answer_tokens
    assert sorted(scores) == list(range(1, 31)) and info["max_answer_tokens"] == report.max_answer_tokens
    best = max(s["exact_match"] + s["f1"] for s in scores.values())
    assert scores[report.max_answer_tokens]["exact_match"] + scores[report.max_answer_tokens]["f1"] == best
    assert report.exact_match == scores[report.max_answer_tokens]["exact_match"]

    reader = SpanReader(tmp_path / "reader")  # no allow_untrained_head: the head is trained
    assert reader.rerank_weight == info["rerank"]["weight"]
    assert reader.max_answer_tokens == report.max_answer_tokens
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
        "train-reader", str(people.path), "--out", str(out), "--eval-fraction", "0", "--max-examples", "4", "--epochs", "1",
        "--batch-size", "4",
    ])
    assert result.exit_code == 0, result.output
    assert "trained 1 steps on 4 questions" in result.output
    assert "nothing held out" in result.output and "None" not in result.output
    assert (out / READER_INFO_FILE).is_file()


def test_epoch_batches_cover_every_window_once_and_group_lengths() -> None:
    lengths = [(7 * i) % 97 + 20 for i in range(400)]
    batches = epoch_batches(lengths, batch_size=8, seed=3, pool=10)
    assert sorted(i for batch in batches for i in batch) == list(range(400))
    assert epoch_batches(lengths, batch_size=8, seed=3, pool=10) == batches  # a seed gives one epoch
    assert epoch_batches(lengths, batch_size=8, seed=4, pool=10) != batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    unsorted = epoch_batches(lengths, batch_size=8, seed=3, pool=1)  # pools of one batch: no grouping
    assert padded < 0.8 * sum(len(b) * max(lengths[i] for i in b) for b in unsorted)


def test_dynamic_padding_gives_the_loss_and_logits_of_full_padding(people: SquadData) -> None:
    """Padding a batch only to its longest window changes nothing the model computes."""
    tokenizer, model = load_qa_model("all-MiniLM-L6-v2", allow_untrained_head=True)
    features = prepare_features(tokenizer, people.examples[:6], max_length=384, stride=128)
    short, full = collate(tokenizer, features), collate(tokenizer, features, pad_to=384)
    assert short["input_ids"].shape[1] < 40 and full["input_ids"].shape[1] == 384
    inputs = ("input_ids", "token_type_ids", "attention_mask")
    with torch.no_grad():
        a, b = (model(**{k: batch[k] for k in inputs}) for batch in (short, full))
        losses = span_loss(model, short), span_loss(model, full)
    width = short["input_ids"].shape[1]
    assert torch.allclose(a.start_logits, b.start_logits[:, :width], atol=1e-4)
    assert torch.allclose(a.end_logits, b.end_logits[:, :width], atol=1e-4)
    assert torch.allclose(*losses, atol=1e-5) and 0 < losses[0] < 10
    with torch.no_grad():  # transformers' own loss softmaxes over the padding too: it changes with the padding
        assert abs(model(**{k: short[k] for k in inputs}, start_positions=short["start_positions"],
                         end_positions=short["end_positions"]).loss
                   - model(**{k: full[k] for k in inputs}, start_positions=full["start_positions"],
                           end_positions=full["end_positions"]).loss) > 0.5


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    assert learning_rate_factor(0.0, 0.1) == 0.0
    assert learning_rate_factor(0.05, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(0.1, 0.1) == pytest.approx(1.0)
    assert learning_rate_factor(0.55, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(1.0, 0.1) == 0.0 and learning_rate_factor(1.2, 0.1) == 0.0


class Interrupt:
    """A log callback that presses Ctrl-C once the given step is logged."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0

    def __call__(self, message: str) -> None:
        if message.startswith("step "):
            self.seen += 1
            if self.seen == self.step:
                raise KeyboardInterrupt


TINY = {"epochs": 2, "batch_size": 8, "learning_rate": 2e-4, "eval_fraction": 0.0, "max_length": 96, "stride": 16,
        "log_every": 1, "progress": False, "time_limit": None}


@pytest.mark.usefixtures("one_thread")
def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(people: SquadData, tmp_path: Path) -> None:
    """With dropout on, so the random generators' state must travel in the checkpoint too."""
    settings = {**TINY, "dropout": 0.1}
    whole = train_reader(people, tmp_path / "whole", **settings)
    assert whole.steps == whole.planned_steps == 8 and whole.stopped_by == "epochs"
    assert not (tmp_path / "whole" / CHECKPOINT_FILE).exists()  # removed once the reader is saved

    with pytest.raises(TrainingInterrupted, match="at step 5.*run the same command again"):
        train_reader(people, tmp_path / "split", **{**settings, "log": Interrupt(5)})
    assert (tmp_path / "split" / CHECKPOINT_FILE).is_file()
    with pytest.raises(ConfigError, match="other settings.*learning_rate.*--restart"):
        train_reader(people, tmp_path / "split", **{**settings, "learning_rate": 1e-4})
    resumed = train_reader(people, tmp_path / "split", **settings)
    assert resumed.resumed_from == 5 and resumed.steps == 8
    assert resumed.losses == pytest.approx(whole.losses)
    a = SpanReader(tmp_path / "whole", precision="fp32").model.state_dict()
    b = SpanReader(tmp_path / "split", precision="fp32").model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_set_dropout_reaches_every_dropout_layer_attention_included(people: SquadData) -> None:
    tokenizer, model = load_qa_model("all-MiniLM-L6-v2", allow_untrained_head=True)
    batch = collate(tokenizer, prepare_features(tokenizer, people.examples[:4], 96, 16))
    inputs = {k: v for k, v in batch.items() if k in tokenizer.model_input_names}
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(**inputs).start_logits, model(**inputs).start_logits)
        set_dropout(model, 0.0)
        assert torch.equal(model(**inputs).start_logits, model(**inputs).start_logits)
    for layer in model.bert.encoder.layer:  # attention reads its rate from its dropout layer: on alone, it shows
        layer.attention.self.dropout.p = 0.1
    with torch.no_grad():
        assert not torch.equal(model(**inputs).start_logits, model(**inputs).start_logits)


@pytest.mark.usefixtures("one_thread")
def test_training_is_without_dropout_by_default_and_the_saved_config_keeps_the_base_values(
    people: SquadData, tmp_path: Path
) -> None:
    train_reader(people, tmp_path / "reader", **TINY)
    info = json.loads((tmp_path / "reader" / READER_INFO_FILE).read_text(encoding="utf-8"))
    assert info["settings"]["dropout"] == 0.0
    config = json.loads((tmp_path / "reader" / "config.json").read_text(encoding="utf-8"))
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.1
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1.0"):
        train_reader(people, tmp_path / "other", **{**TINY, "dropout": 1.0})


@pytest.mark.usefixtures("one_thread")
def test_the_time_limit_ends_the_run_with_the_schedule_decayed(people: SquadData, tmp_path: Path) -> None:
    report = train_reader(people, tmp_path / "reader", **{**TINY, "epochs": 50, "time_limit": 1.0})
    assert report.stopped_by == "time limit" and 0 < report.steps < report.planned_steps == 200
    assert 1.0 <= report.train_seconds < 5.0
    info = json.loads((tmp_path / "reader" / READER_INFO_FILE).read_text(encoding="utf-8"))
    assert info["report"]["stopped_by"] == "time limit" and info["settings"]["time_limit"] == 1.0


@pytest.mark.usefixtures("one_thread")
def test_train_reader_command_shows_loss_and_eta_then_held_out_scores_and_the_folder(
    people: SquadData, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from searchkit.cli import app

    out = tmp_path / "reader"
    result = CliRunner().invoke(app, [
        "train-reader", str(people.path), "--out", str(out), "--eval-fraction", "0.25", "--epochs", "2",
        "--batch-size", "8", "--time-limit", "0",
    ])
    assert result.exit_code == 0, result.output
    assert "loss=" in result.stderr and re.search(r"\d\d:\d\d<\d\d:\d\d", result.stderr)  # elapsed<remaining
    assert re.search(r"trained 6 steps on 24 questions in \d+ s \(\d+ CPU threads?\)", result.stdout)
    assert re.search(r"held-out 8 questions: exact match \d+\.\d, F1 \d+\.\d", result.stdout)
    assert re.search(r"QA rerank weight [01](\.\d)? \(nDCG@10 [+-]\d\.\d{4} over retrieval alone on 8 held-out",
                     result.stdout)
    assert f"saved to {out}" in result.stdout

    side_by_side = CliRunner().invoke(app, ["eval-qa", str(people.path), "--reader", "sentence", "--reader", str(out),
                                            "--json"])
    assert side_by_side.exit_code == 0, side_by_side.output
    scores = json.loads(side_by_side.stdout)
    assert list(scores) == ["sentence", str(out)]
    versus = scores[str(out)]["against_first"]
    assert versus["f1"] == pytest.approx(scores[str(out)]["f1"] - scores["sentence"]["f1"])
    assert versus["better"] + versus["worse"] <= 32 and scores["sentence"]["questions"] == 32
    text = CliRunner().invoke(app, ["eval-qa", str(people.path), "--reader", "sentence", "--reader", "sentence"])
    assert text.exit_code == 0, text.output
    assert "reader sentence #2" in text.stdout and "F1 +0.00  (F1 better on 0 questions, worse on 0)" in text.stdout


def test_left_to_choose_the_threads_are_measured_on_the_first_steps(people: SquadData, tmp_path: Path) -> None:
    """One thread and all cores are each timed on a few steps; the faster is kept and recorded."""
    import os

    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: there is no thread count to choose")
    previous = torch.get_num_threads()
    messages: list[str] = []
    try:
        report = train_reader(people, tmp_path / "reader", **{**TINY, "epochs": 3, "batch_size": 1, "log": messages.append})
    finally:
        torch.set_num_threads(previous)
    assert report.planned_steps == 96 and report.steps == 96
    assert any(f"threads measured on the first steps: 1 or {cores}" in m for m in messages)
    [chosen] = [m for m in messages if m.startswith("threads: ")]
    assert re.fullmatch(rf"threads: 1: \d+ us per token, {cores}: \d+ us per token; keeping (1|{cores})", chosen)
    assert report.threads == int(chosen.rsplit(" ", 1)[1])
    info = json.loads((tmp_path / "reader" / READER_INFO_FILE).read_text(encoding="utf-8"))
    assert info["settings"]["threads"] == report.threads


def test_the_command_line_defaults_are_the_library_defaults() -> None:
    from typer.main import get_command

    from searchkit.cli import app

    options = {p.name: p.default for p in get_command(app).commands["train-reader"].params}
    assert options["time_limit"] * 60 == DEFAULT_TIME_LIMIT
    assert options["batch_size"] == DEFAULT_BATCH_SIZE and options["dropout"] == DEFAULT_DROPOUT
