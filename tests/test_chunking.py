from __future__ import annotations

import pytest

from searchkit import ChunkingConfig
from searchkit.chunking import Span, chunk_spans, embedding_input, title_budget

TEXT = " ".join(
    f"Paragraph {i} explains internationalization, electroencephalography and counterrevolutionary "
    f"photosynthesis in unbelievably tokenizable detail; it is sentence number {i}! Does it end? "
    "Yes. Then comes more filler without any punctuation at all so that some windows must be cut "
    "in the middle of a sentence because no sentence end falls in their final stretch"
    for i in range(12)
)


def spaced(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text of the tokens joined by spaces, with each token's character span."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), offsets


def token_ranges(offsets: list[tuple[int, int]], spans: list[Span]) -> list[tuple[int, int]]:
    """Each span as the half-open range of token indexes it covers."""
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    return [(starts.index(span.start), ends.index(span.end) + 1) for span in spans]


# Hand-made offsets: exact windows


def test_windows_step_by_max_minus_overlap_without_sentence_ends() -> None:
    text, offsets = spaced([f"w{i}" for i in range(25)])
    spans = chunk_spans(text, offsets, max_tokens=10, overlap_tokens=3)
    assert token_ranges(offsets, spans) == [(0, 10), (7, 17), (14, 24), (21, 25)]
    assert spans[0] == Span(0, offsets[9][1]) and spans[-1].end == len(text)


def test_zero_overlap_windows_are_contiguous() -> None:
    text, offsets = spaced([f"w{i}" for i in range(20)])
    assert token_ranges(offsets, chunk_spans(text, offsets, 10, 0)) == [(0, 10), (10, 20)]


@pytest.mark.parametrize(
    ("end_at", "expected_first_window"),
    [
        (9, (0, 10)),  # the window's last token is a sentence end anyway
        (7, (0, 8)),  # inside the last 40%: cut right after it
        (6, (0, 7)),  # the earliest allowed cut (60% of the window)
        (5, (0, 10)),  # too early: the window is filled instead
    ],
)
def test_window_ends_at_a_sentence_end_in_its_last_40_percent(end_at: int, expected_first_window) -> None:
    tokens = [f"w{i}" for i in range(30)]
    tokens[end_at] = "."
    text, offsets = spaced(tokens)
    ranges = token_ranges(offsets, chunk_spans(text, offsets, max_tokens=10, overlap_tokens=2))
    assert ranges[0] == expected_first_window
    assert ranges[1][0] == expected_first_window[1] - 2


@pytest.mark.parametrize("mark", ["!", "?", ";", "\n"])
def test_other_sentence_ends_count_too(mark: str) -> None:
    tokens = [f"w{i}" for i in range(30)]
    tokens[7] = mark
    text, offsets = spaced(tokens)
    assert token_ranges(offsets, chunk_spans(text, offsets, 10, 2))[0] == (0, 8)


def test_latest_sentence_end_wins() -> None:
    tokens = [f"w{i}" for i in range(30)]
    tokens[6] = tokens[8] = "."
    text, offsets = spaced(tokens)
    assert token_ranges(offsets, chunk_spans(text, offsets, 10, 2))[0] == (0, 9)


def test_empty_offsets_give_no_spans() -> None:
    assert chunk_spans("", [], 10, 2) == []
    assert chunk_spans("\x00\x01", [], 10, 2) == []


def test_text_shorter_than_a_window_is_one_span() -> None:
    text = "  Leading space. Short text!  "
    offsets = [(2, 9), (10, 15), (15, 16), (17, 22), (23, 27), (27, 28)]
    assert chunk_spans(text, offsets, 10, 2) == [Span(2, 28)]
    text, offsets = spaced([f"w{i}" for i in range(10)])
    assert chunk_spans(text, offsets, 10, 2) == [Span(0, len(text))]


def test_windows_do_not_split_words_into_pieces() -> None:
    # "cdefgh" is one word in three pieces (cd ##ef ##gh), as WordPiece splits long words
    text = "ab cdefgh ij kl mn op"
    offsets = [(0, 2), (3, 5), (5, 7), (7, 9), (10, 12), (13, 15), (16, 18), (19, 21)]
    spans = chunk_spans(text, offsets, max_tokens=3, overlap_tokens=1)
    assert [text[s.start:s.end] for s in spans] == ["ab", "cdefgh", "ij kl mn", "mn op"]


# The real tokenizer


@pytest.fixture(scope="module")
def offsets(embedder) -> list[tuple[int, int]]:
    return embedder.token_offsets([TEXT])[0]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 4), (32, 8), (64, 16), (128, 0)])
def test_real_chunks_retokenize_within_the_window(embedder, offsets, max_tokens: int, overlap: int) -> None:
    spans = chunk_spans(TEXT, offsets, max_tokens, overlap)
    assert len(spans) > len(offsets) // max_tokens
    texts = [TEXT[s.start:s.end] for s in spans]
    counts = [len(pieces) for pieces in embedder.token_offsets(texts)]
    assert max(counts) <= max_tokens
    assert min(counts) >= int(max_tokens * 0.6) or len(spans) == 1 or counts[-1] == min(counts)
    assert spans[0].start == offsets[0][0] == 0
    assert spans[-1].end == offsets[-1][1] == len(TEXT)
    for before, after in zip(spans, spans[1:]):
        assert before.start < after.start
        if overlap:
            assert after.start < before.end, "consecutive chunks overlap"
        else:
            assert TEXT[before.end:after.start].strip() == "", "no gap without overlap"
    # where a sentence end falls in a window's last 40%, the window ends right after the last one
    cut_at_sentence = 0
    for first, last in token_ranges(offsets, spans)[:-1]:
        stretch = range(first + int(max_tokens * 0.6), first + max_tokens)
        ends = [i for i in stretch if TEXT[offsets[i][0]:offsets[i][1]] in {".", "!", "?", ";"}]
        if ends:
            assert last == ends[-1] + 1
            cut_at_sentence += 1
        else:
            cut = offsets[last][0]
            assert last <= first + max_tokens
            assert cut > offsets[last - 1][1] or not (TEXT[cut - 1].isalnum() and TEXT[cut].isalnum()), \
                "windows are cut between words"
    assert cut_at_sentence >= 3


def test_real_text_shorter_than_a_window_is_one_span(embedder) -> None:
    text = "Cats purr. Dogs bark!"
    (offsets,) = embedder.token_offsets([text])
    assert chunk_spans(text, offsets, 254, 32) == [Span(0, len(text))]
    assert embedder.token_offsets([""]) == [[]] and chunk_spans("", [], 254, 32) == []


# Titles


def test_title_budget_leaves_the_rest_of_the_window_but_at_least_half() -> None:
    config = ChunkingConfig(max_tokens=64, overlap_tokens=8)
    assert title_budget(config, 0) == 64
    assert title_budget(config, 10) == 54
    assert title_budget(config, 32) == 32
    assert title_budget(config, 50) == 32
    assert title_budget(ChunkingConfig(max_tokens=9, overlap_tokens=0), 9) == 4


def test_embedding_input_prepends_the_title() -> None:
    assert embedding_input("Cats", "They purr.") == "Cats They purr."
    assert embedding_input("", "They purr.") == "They purr."


def test_title_and_chunk_fit_the_window_together(embedder, offsets) -> None:
    config = ChunkingConfig(max_tokens=48, overlap_tokens=8)
    title = "Electroencephalography overview"
    (title_offsets,) = embedder.token_offsets([title])
    budget = title_budget(config, len(title_offsets))
    assert budget == 48 - len(title_offsets)
    inputs = [embedding_input(title, TEXT[s.start:s.end]) for s in chunk_spans(TEXT, offsets, budget, 8)]
    assert all(text.startswith(title + " ") for text in inputs)
    assert max(len(pieces) for pieces in embedder.token_offsets(inputs)) <= config.max_tokens


def test_max_chunks_one_keeps_the_opening_window_cut_at_the_limit() -> None:
    text, offsets = spaced([f"w{i}" for i in range(7)] + ["."] + [f"v{i}" for i in range(20)])
    assert token_ranges(offsets, chunk_spans(text, offsets, 10, 2, max_chunks=1)) == [(0, 10)]
    # without the cap the first window would end at the sentence end instead
    assert token_ranges(offsets, chunk_spans(text, offsets, 10, 2))[0] == (0, 8)
    assert len(chunk_spans(text, offsets, 10, 2, max_chunks=2)) == 2
    assert len(chunk_spans(text, offsets, 10, 2)) > 2
