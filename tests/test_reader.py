"""Readers: span decoding, long-passage windows and offsets, the sentence reader, loading, rerank."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import squad_question
from searchkit.embedding import resolve_model
from searchkit.errors import ConfigError, QueryError, ReaderError
from searchkit.index import Hit
from searchkit.reader import (
    DEFAULT_MAX_ANSWER_TOKENS,
    READER_INFO_FILE,
    Answer,
    Passage,
    SentenceReader,
    narrow_to_answer,
    SpanReader,
    decode_spans,
    load_reader,
    looks_like_path,
    rerank_hits,
    split_sentences,
)
from searchkit.squad import load_squad, score_gold_at_lengths

BUNDLED = resolve_model("all-MiniLM-L6-v2")
FILLER = " ".join(f"Line {i} of the report lists the figures for week {i} in detail." for i in range(120))
LONG_TEXT = FILLER + " Deep in the appendix a striped zebra appears. " + FILLER


@pytest.fixture(scope="module")
def span_reader() -> SpanReader:
    torch.manual_seed(0)  # the random QA head, so the plumbing test is repeatable
    return SpanReader(BUNDLED, allow_untrained_head=True, batch_size=4)


# decode_spans


def test_decode_spans_finds_the_best_pair() -> None:
    start = [0, 0, 1, 5, 0, 0, 0]
    end = [0, 0, 0, 1, 0, 4, 0]
    assert decode_spans(start, end, [True] * 7) == [(3, 5, 9.0)]


def test_decode_spans_never_ends_before_it_starts() -> None:
    start = [0, 0, 0, 0, 0, 9]
    end = [0, 9, 0, 0, 0, 0]
    spans = decode_spans(start, end, [True] * 6, top_k=10)
    assert spans and all(s <= e for s, e, _ in spans)
    assert (5, 1) not in {(s, e) for s, e, _ in spans}


def test_decode_spans_respects_the_answer_length() -> None:
    start = np.zeros(20)
    end = np.zeros(20)
    start[2], end[15] = 10, 10
    spans = decode_spans(start, end, [True] * 20, max_answer_tokens=5, top_k=50)
    assert all(e - s + 1 <= 5 for s, e, _ in spans)
    assert decode_spans(start, end, [True] * 20, max_answer_tokens=14)[0][:2] == (2, 15)


def test_decode_spans_stays_inside_the_context() -> None:
    start = [9, 9, 0, 1, 0, 9]  # high logits on the CLS token, the question and the padding
    end = [9, 0, 9, 0, 2, 9]
    mask = [False, False, False, True, True, False]
    spans = decode_spans(start, end, mask, top_k=10)
    assert [(s, e, score) for s, e, score in spans] == [(3, 4, 3.0), (4, 4, 2.0), (3, 3, 1.0)]
    assert decode_spans(start, end, [False] * 6) == []


def test_decode_spans_breaks_ties_towards_earlier_and_shorter_spans() -> None:
    spans = decode_spans(np.zeros(6), np.zeros(6), [False, True, True, True, True, False], top_k=4)
    assert [(s, e) for s, e, _ in spans] == [(1, 1), (1, 2), (1, 3), (1, 4)]


def test_decode_spans_orders_top_k_best_first() -> None:
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=40), rng.normal(size=40)
    spans = decode_spans(start, end, [True] * 40, max_answer_tokens=8, top_k=15)
    scores = [score for _, _, score in spans]
    assert len(spans) == 15 and scores == sorted(scores, reverse=True)
    assert all(score == pytest.approx(start[s] + end[e]) for s, e, score in spans)
    assert spans[0][2] == max(start[s] + end[e] for s in range(40) for e in range(s, min(s + 8, 40)))


def test_decode_spans_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="one length"):
        decode_spans([0, 1], [0, 1, 2], [True, True])


# SpanReader: windows and offsets


class PointingHead(torch.nn.Module):
    """A stand-in QA model that points at known word pieces, so the right answer is known."""

    def __init__(self, start_id: int, end_id: int, cls_start: float, cls_end: float) -> None:
        super().__init__()
        self.start_id, self.end_id, self.cls = start_id, end_id, (cls_start, cls_end)

    def forward(self, input_ids: torch.Tensor, **_: torch.Tensor) -> SimpleNamespace:
        start = (input_ids == self.start_id).float() * 10
        end = (input_ids == self.end_id).float() * 10
        start[:, 0], end[:, 0] = self.cls
        return SimpleNamespace(start_logits=start, end_logits=end)


@pytest.fixture
def pointing_reader() -> SpanReader:
    reader = SpanReader(BUNDLED, allow_untrained_head=True, batch_size=3)
    ids = reader.tokenizer.convert_tokens_to_ids(["striped", "zebra"])
    reader.model = PointingHead(*ids, cls_start=1.5, cls_end=2.0)
    return reader


def test_long_passages_are_read_in_windows(pointing_reader: SpanReader) -> None:
    tokens = len(pointing_reader.tokenizer(LONG_TEXT, verbose=False)["input_ids"])
    assert tokens > 3 * 384  # the answer lies in a later window
    passage = Passage("report", 7, "Report", LONG_TEXT, offset=1000)
    [[answer, *others]] = pointing_reader.read("Where is the striped zebra?", [passage], top_k=3)
    where = LONG_TEXT.index("striped zebra")
    assert answer.answer == "striped zebra"
    assert (answer.start, answer.end) == (1000 + where, 1000 + where + len("striped zebra"))
    assert answer.passage_start == 1000
    assert answer.no_answer_score == pytest.approx(3.5)
    assert 0 < answer.probability <= 1
    assert answer.context == LONG_TEXT[:where] + "«striped zebra»" + LONG_TEXT[where + len("striped zebra"):]
    # Overlapping windows see the same spans; each is reported once.
    assert len({(a.start, a.end) for a in [answer, *others]}) == 3
    assert all(LONG_TEXT[a.start - 1000:a.end - 1000] == a.answer for a in others)


def test_passages_and_questions_keep_their_order(pointing_reader: SpanReader) -> None:
    plain = Passage("plain", 0, "", "Nothing to see in this short passage.")
    zebra = Passage("zebra", 3, "", "A striped zebra grazes.", offset=50)
    results = pointing_reader.read_batch(["first?", "second?"], [[plain, zebra], [zebra]], top_k=1)
    assert [[a[0].doc_id for a in per_question] for per_question in results] == [["plain", "zebra"], ["zebra"]]
    assert results[0][1][0].answer == results[1][0][0].answer == "striped zebra"
    assert results[1][0][0].start == 52
    assert pointing_reader.read("anything?", []) == []


def test_read_at_lengths_decodes_one_reading_at_each_answer_length_limit(pointing_reader: SpanReader) -> None:
    passage = Passage("zebra", 0, "", "A striped and spotted zebra grazes.")
    found = pointing_reader.read_at_lengths(["what?", "which?"], [[passage], [passage]], [1, 4])
    assert [a[0].answer for a in found[4]] == ["striped and spotted zebra"] * 2
    assert found[1][0][0].answer in {"striped", "zebra"}  # four tokens do not fit in one
    for limit, answers in found.items():
        pointing_reader.max_answer_tokens = limit
        assert pointing_reader.read("what?", [passage]) == [answers[0]]
    with pytest.raises(ValueError, match="one passage"):
        pointing_reader.read_at_lengths(["what?"], [[passage, passage]], [4])


def test_score_gold_at_lengths_scores_each_limit(pointing_reader: SpanReader, tmp_path: Path) -> None:
    context = "A striped and spotted zebra grazes."
    path = tmp_path / "squad.json"
    paragraph = {"context": context, "qas": [squad_question("q1", "What grazes?", context, "striped and spotted zebra")]}
    path.write_text(json.dumps({"data": [{"title": "Zebras", "paragraphs": [paragraph]}]}))
    scores = score_gold_at_lengths(pointing_reader, load_squad(path), [1, 4])
    assert scores[4]["exact_match"] == 100.0 and scores[4]["f1"] == 100.0
    assert scores[1]["exact_match"] == 0.0 and 0 < scores[1]["f1"] < 100  # one of the answer's words


def test_span_reader_takes_its_answer_length_limit_from_the_reader_folder(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "reader"
    folder.mkdir()
    for item in Path(BUNDLED).iterdir():
        (folder / item.name).symlink_to(item)
    assert SpanReader(folder, allow_untrained_head=True).max_answer_tokens == DEFAULT_MAX_ANSWER_TOKENS
    (folder / READER_INFO_FILE).write_text(json.dumps({"max_answer_tokens": 9}))
    assert SpanReader(folder, allow_untrained_head=True).max_answer_tokens == 9
    assert SpanReader(folder, allow_untrained_head=True, max_answer_tokens=12).max_answer_tokens == 12
    (folder / READER_INFO_FILE).write_text(json.dumps({"max_answer_tokens": -2}))
    assert SpanReader(folder, allow_untrained_head=True).max_answer_tokens == DEFAULT_MAX_ANSWER_TOKENS
    assert "not a positive whole number" in caplog.text
    with pytest.raises(ConfigError, match="max_answer_tokens"):
        SpanReader(folder, allow_untrained_head=True, max_answer_tokens=0)


def test_the_untrained_head_yields_spans_that_slice_the_document(span_reader: SpanReader) -> None:
    document = "Preface. " * 40 + LONG_TEXT
    passages = [Passage("doc", 1, "Doc", LONG_TEXT, offset=len("Preface. " * 40)),
                Passage("short", 2, "Short", "The Eiffel Tower is in Paris.", offset=0)]
    results = span_reader.read("Where does the zebra appear?", passages, top_k=5)
    assert [len(answers) for answers in results] == [5, 5]
    for passage, answers in zip(passages, results):
        scores = [a.score for a in answers]
        assert scores == sorted(scores, reverse=True)
        for answer in answers:
            assert answer.doc_id == passage.doc_id
            source = document if passage.doc_id == "doc" else passage.text
            assert source[answer.start:answer.end] == answer.answer
            assert f"«{answer.answer}»" in answer.context
            assert answer.no_answer_score is not None
    assert Answer(**results[1][0].to_dict()) == results[1][0]


def test_span_reader_rejects_empty_questions(span_reader: SpanReader) -> None:
    with pytest.raises(QueryError, match="empty"):
        span_reader.read("  ", [Passage("d", 0, "", "text")])


def test_span_reader_rejects_a_stride_that_leaves_no_room() -> None:
    with pytest.raises(ConfigError, match="stride"):
        SpanReader(BUNDLED, allow_untrained_head=True, max_length=128, stride=100)


# SentenceReader

EIFFEL = ("The Eiffel Tower is in Paris. The Colosseum stands in Rome!\n"
          "Mount Fuji is the highest mountain in Japan. Is the Danube long? It flows through ten countries.")
MUSEUM = ("The museum has many rooms, a large garden with old trees, a cafe that serves coffee and cake, "
          "a gift shop that sells postcards and maps of the city, a library full of rare books about art, "
          "a cinema that shows documentaries every weekend, and the tallest clock tower in the whole "
          "region of northern Bavaria.")


def test_split_sentences_keeps_offsets() -> None:
    spans = split_sentences("  First one. Second!  Third?\n\nHeading\n\nLast line without stop")
    text = "  First one. Second!  Third?\n\nHeading\n\nLast line without stop"
    assert [text[a:b] for a, b in spans] == ["First one.", "Second!", "Third?", "Heading", "Last line without stop"]


def test_sentence_reader_picks_the_answering_sentence(embedder) -> None:
    reader = SentenceReader(embedder, narrow=False)
    passage = Passage("geo", 4, "Places", EIFFEL, offset=200)
    calls = embedder.encode_calls
    [[best, second]] = reader.read("Which is the tallest mountain in Japan?", [passage], top_k=2)
    assert embedder.encode_calls == calls + 1  # question and all sentences in one call
    assert best.answer == "Mount Fuji is the highest mountain in Japan."
    assert best.start == 200 + EIFFEL.index("Mount Fuji")
    assert EIFFEL[best.start - 200:best.end - 200] == best.answer
    assert best.score > second.score
    assert best.no_answer_score is None
    [[paris]] = reader.read("Where is the Eiffel Tower?", [passage])
    assert paris.answer == "The Eiffel Tower is in Paris."
    phrase, notice = load_reader("phrase", embedder)
    assert notice is None and phrase.name == "phrase" and reader.name == "sentence"
    [[narrowed]] = phrase.read("Where is the Eiffel Tower?", [passage])
    assert narrowed.answer == "Paris" and EIFFEL[narrowed.start - 200:narrowed.end - 200] == "Paris"
    assert narrowed.score == paris.score  # the sentence's similarity: narrowing never changes the ranking


@pytest.mark.parametrize(
    ("question", "sentence", "answer"),
    [
        ("Which is the tallest mountain in Japan?", "Mount Fuji is the highest mountain in Japan.", "Mount Fuji"),
        ("When did the first Super Bowl take place?", "The first Super Bowl was played on January 15, 1967, in Los "
         "Angeles.", "January 15"),
        ("Who designed the Eiffel Tower?", "It was designed by Gustave Eiffel's company, in Paris.",
         "Gustave Eiffel's company"),
        ("How many moons does Mars have?", "Mars has two small moons, Phobos and Deimos, and 2 of them are tiny.",
         "2"),
        ("In which year was 51 Pegasi b discovered?", "In 1995 Mayor and Queloz used this technique to discover 51 Pegasi "
         "b, the first planet found orbiting a Sun-like star, earning a share of the 2019 Nobel Prize.", "1995"),
        ("Which method detects exoplanets by watching a star dim?", "The transit method detects planets orbiting other "
         "stars by watching for tiny, regular dips in a star's brightness.", "transit method"),
        ("What is the transit method?", "The transit method detects planets by watching for dips in a star's brightness.",
         "The transit method detects planets by watching for dips in a star's brightness."),
        ("Why do leaves change colour?", "Leaves change colour because chlorophyll breaks down.",
         "Leaves change colour because chlorophyll breaks down."),
        ("Is the Danube long?", "Is the Danube long?", "Is the Danube long?"),
    ],
)
def test_narrow_to_answer_keeps_the_piece_the_question_asks_for(question: str, sentence: str, answer: str) -> None:
    text = f"Before. {sentence} After."
    start, end = narrow_to_answer(question, text, 8, 8 + len(sentence))
    assert text[start:end] == answer


def test_sentence_reader_embeds_each_distinct_text_once(embedder) -> None:
    passage = Passage("geo", 4, "Places", EIFFEL)
    before = embedder.texts_encoded
    results = SentenceReader(embedder, narrow=False).read_batch(
        ["Where is Fuji?", "How long is the Danube?"], [[passage], [passage]]
    )
    assert embedder.texts_encoded - before == 2 + len(split_sentences(EIFFEL)) == 7
    assert [r[0][0].answer for r in results] == ["Mount Fuji is the highest mountain in Japan.", "Is the Danube long?"]


def test_sentence_reader_narrows_long_sentences_to_a_clause(embedder) -> None:
    [[answer]] = SentenceReader(embedder, narrow=False).read("Where can I buy postcards?", [Passage("m", 0, "", MUSEUM)])
    assert answer.answer == "a gift shop that sells postcards and maps of the city"
    assert MUSEUM[answer.start:answer.end] == answer.answer
    [[whole]] = SentenceReader(embedder, clause_min_words=100, narrow=False).read("Where can I buy postcards?",
                                                                    [Passage("m", 0, "", MUSEUM)])
    assert whole.answer == MUSEUM


def test_sentence_reader_handles_empty_input(embedder) -> None:
    reader = SentenceReader(embedder)
    assert reader.read("Anything?", []) == []
    assert reader.read("Anything?", [Passage("blank", 0, "", "   ")]) == [[]]


# load_reader


def test_load_reader_defaults_to_the_phrase_reader(embedder) -> None:
    for spec in (None, "", "default", "phrase"):
        reader, notice = load_reader(spec, embedder)
        assert isinstance(reader, SentenceReader) and reader.narrow and reader.name == "phrase" and notice is None
    whole, notice = load_reader("sentence", embedder)
    assert isinstance(whole, SentenceReader) and not whole.narrow and notice is None


def test_load_reader_falls_back_when_a_hub_model_is_unavailable(embedder) -> None:
    reader, notice = load_reader("no-such-org/no-such-qa-model", embedder)
    assert isinstance(reader, SentenceReader)
    assert notice.startswith("reader 'no-such-org/no-such-qa-model' is not available (")
    assert notice.endswith("using the default phrase reader")
    assert "\n" not in notice


@pytest.mark.parametrize("spec", ["/no/such/reader", "./no-such-reader", "~/no-such-reader", "runs/2024/reader"])
def test_load_reader_refuses_a_missing_path_naming_it(spec: str, embedder) -> None:
    with pytest.raises(ReaderError, match=f"reader folder {re.escape(spec)} does not exist"):
        load_reader(spec, embedder)


@pytest.mark.parametrize(("spec", "is_path"), [
    ("/abs/reader", True), ("./reader", True), ("../reader", True), ("~/reader", True), ("a/b/c", True),
    ("C:\\readers\\mine", True), ("org/model", False), ("distilbert-base-cased-distilled-squad", False),
])
def test_looks_like_path(spec: str, is_path: bool) -> None:
    assert looks_like_path(spec) is is_path


def test_load_reader_refuses_folders_that_are_not_qa_models(tmp_path: Path, embedder) -> None:
    with pytest.raises(ReaderError, match="no config.json"):
        load_reader(str(tmp_path), embedder)
    (tmp_path / "config.json").write_text(json.dumps({"hello": "world"}), encoding="utf-8")
    with pytest.raises(ReaderError, match="cannot load QA model"):
        load_reader(str(tmp_path), embedder)


@pytest.mark.parametrize("spec", [BUNDLED, "all-MiniLM-L6-v2"])
def test_a_plain_encoder_is_not_a_reader(spec: str, embedder) -> None:
    with pytest.raises(ReaderError, match="encoder without a trained QA head.*searchkit train-reader"):
        load_reader(spec, embedder)


# rerank_hits


def hit(rank: int, score: float, doc_id: str) -> Hit:
    return Hit(rank, score, doc_id, rank, doc_id.title(), f"text of {doc_id}", 0, 10, {})


def answer(score: float) -> Answer:
    return Answer("x", score, "d", 0, "", 0, 1, "«x»", 0)


def test_rerank_combines_normalised_scores() -> None:
    hits = [hit(1, 0.9, "a"), hit(2, 0.8, "b"), hit(3, 0.7, "c")]
    answers = [[answer(1.0)], [answer(5.0), answer(0.5)], []]
    reranked = rerank_hits(hits, answers, weight=0.5)
    # retrieval a 1, b 0.5, c 0; answers a 0, b 1, c (none) 0 -> a 0.5, b 0.75, c 0.
    assert [(h.doc_id, h.rank) for h in reranked] == [("b", 1), ("a", 2), ("c", 3)]
    assert [h.score for h in reranked] == pytest.approx([0.75, 0.5, 0.0])
    assert reranked[0].text == "text of b"
    assert [h.doc_id for h in rerank_hits(hits, answers, weight=1.0)] == ["a", "b", "c"]
    assert [h.doc_id for h in rerank_hits(hits, answers, weight=0.0)] == ["b", "a", "c"]


def test_rerank_edge_cases() -> None:
    assert rerank_hits([], []) == []
    [only] = rerank_hits([hit(4, 0.3, "a")], [[answer(2.0)]])
    assert (only.rank, only.score) == (1, 1.0)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        rerank_hits([hit(1, 0.3, "a")], [[]], weight=1.5)
    with pytest.raises(ValueError, match="answer lists"):
        rerank_hits([hit(1, 0.3, "a")], [])


def test_passage_from_hit() -> None:
    found = Hit(1, 0.5, "doc", 12, "Title", "chunk text", 300, 310, {})
    assert Passage.from_hit(found) == Passage("doc", 12, "Title", "chunk text", 300)
