"""Cutting documents into passages the embedding model reads whole.

Chunks are measured in the model's own word pieces, because that is what the model
truncates at: a chunk cut by characters or words either wastes the window or loses its
tail silently. Each chunk is a character span of the source text, so a hit can show
exactly where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from searchkit.config import ChunkingConfig

__all__ = ["Span", "chunk_spans", "embedding_input", "title_budget"]

_SENTENCE_END = frozenset(".!?;\n")
# A window may end early, at a sentence end, but never before this share of its length.
_MIN_FILL = 0.6


@dataclass(frozen=True)
class Span:
    """A chunk as a half-open character range ``[start, end)`` of the source text."""

    start: int
    end: int


def chunk_spans(
    text: str, offsets: Sequence[tuple[int, int]], max_tokens: int, overlap_tokens: int, max_chunks: int = 0
) -> list[Span]:
    """Overlapping windows of at most ``max_tokens`` word pieces, as character spans.

    A window that would cut mid-sentence ends instead at the last sentence end in its
    final stretch, so chunks read as whole sentences where the text allows; the next
    window starts ``overlap_tokens`` pieces before the cut so no context is lost at
    the seam. Windows start and end between words, never inside one, so a chunk's text
    re-tokenizes into the same pieces and stays within ``max_tokens``. With
    ``max_chunks``, the last window kept is cut at the token limit, as the model would
    truncate it, and the rest of the text is not chunked.
    """
    count = len(offsets)
    if count == 0:
        return []
    spans: list[Span] = []
    first = 0
    while True:
        last = min(first + max_tokens, count)
        final = max_chunks and len(spans) + 1 == max_chunks
        if final:
            last = _word_boundary_before(text, offsets, last, first + 1) if last < count else last
        elif last < count:
            last = _sentence_cut(text, offsets, first, last, max_tokens)
            last = _word_boundary_before(text, offsets, last, first + 1)
        spans.append(Span(offsets[first][0], offsets[last - 1][1]))
        if last >= count or final:
            return spans
        start = max(last - overlap_tokens, first + 1)
        first = _word_boundary_before(text, offsets, start, first + 1)
        if not _starts_word(text, offsets, first):  # less (or no) overlap rather than half a word
            first = next((i for i in range(start, last + 1) if _starts_word(text, offsets, i)), start)


def _starts_word(text: str, offsets: Sequence[tuple[int, int]], index: int) -> bool:
    """False for a piece that continues a word (``##ing``): cutting there would make
    the chunk's text re-tokenize into different, and usually more, word pieces."""
    if index <= 0 or index >= len(offsets):
        return True
    start = offsets[index][0]
    return not (
        start == offsets[index - 1][1] and 0 < start < len(text)
        and text[start - 1].isalnum() and text[start].isalnum()
    )


def _word_boundary_before(text: str, offsets: Sequence[tuple[int, int]], index: int, lowest: int) -> int:
    """``index`` moved back to the first piece of its word, but not below ``lowest``."""
    moved = index
    while moved > lowest and not _starts_word(text, offsets, moved):
        moved -= 1
    return moved if _starts_word(text, offsets, moved) else index


def _sentence_cut(
    text: str, offsets: Sequence[tuple[int, int]], first: int, last: int, max_tokens: int
) -> int:
    earliest = first + max(1, int(max_tokens * _MIN_FILL))
    for index in range(last - 1, earliest - 1, -1):
        start, end = offsets[index]
        if text[start:end] in _SENTENCE_END:
            return index + 1
    return last


def title_budget(config: ChunkingConfig, title_tokens: int) -> int:
    """Word pieces left for the body once the title is prepended to each chunk.

    The title is embedded with every chunk (as retrieval benchmarks embed documents),
    so it takes part of the window; it never takes more than half.
    """
    return max(config.max_tokens - title_tokens, config.max_tokens // 2)


def embedding_input(title: str, chunk_text: str) -> str:
    """The text the model embeds for a chunk: title and body joined by a space."""
    return f"{title} {chunk_text}" if title else chunk_text
