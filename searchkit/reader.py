"""Extractive question answering over retrieved passages, and the rerank it allows.

Two readers share one small interface (:class:`Reader`):

- :class:`SentenceReader`, the default, needs nothing beyond the embedding model the
  index already has: it answers with the passage sentence (or clause) closest to the
  question. It works offline and cannot be wrong about *where* the text is, only about
  which sentence is best.
- :class:`SpanReader` runs any transformers question-answering checkpoint (a hub name or
  a local folder, such as one written by :func:`searchkit.training.train_reader`) and
  decodes answer spans from its start/end logits. transformers 5 has no QA pipeline, so
  the decoding (:func:`decode_spans`) and the long-passage windowing live here.

Answers always carry character offsets into the *source document* (the passage's own
offset added), so a caller can highlight them in the original text.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from searchkit.embedding import Embedder, resolve_model
from searchkit.errors import ConfigError, QueryError, ReaderError
from searchkit.retrieval import min_max_scale

__all__ = [
    "Answer",
    "Passage",
    "Reader",
    "SentenceReader",
    "SpanReader",
    "best_answers",
    "decode_spans",
    "load_qa_model",
    "load_reader",
    "looks_like_path",
    "narrow_to_answer",
    "rerank_hits",
    "rerank_weight",
    "split_sentences",
    "ANSWER_MARKERS",
    "DEFAULT_READER",
    "SENTENCE_READER",
    "DEFAULT_RERANK_WEIGHT",
    "READER_INFO_FILE",
    "DEFAULT_MAX_ANSWER_TOKENS",
]

logger = logging.getLogger(__name__)

# The default reader: the sentence reader narrowed to the words that answer (SentenceReader(narrow=True)).
DEFAULT_READER = "phrase"
# The sentence reader answering with whole sentences (or clauses of long ones).
SENTENCE_READER = "sentence"
# What train-reader writes beside a reader's weights: how it was trained, how it scored, its rerank weight.
READER_INFO_FILE = "searchkit-reader.json"
# The QA rerank's share for retrieval scores when nothing was measured for the reader (see rerank_fit.py).
DEFAULT_RERANK_WEIGHT = 0.5
# The longest answer, in tokens, a span reader returns when train-reader fitted none for it (the usual SQuAD limit).
DEFAULT_MAX_ANSWER_TOKENS = 30
_DEFAULT_NAMES = frozenset({"", "default", DEFAULT_READER})
# Guillemets rarely occur in English text, so a marked answer stays unambiguous.
ANSWER_MARKERS = ("«", "»")
_TRAIN_HINT = "train one with `searchkit train-reader`"

# A sentence ends at . ! or ? (plus closing quotes or brackets) before whitespace, or at a
# blank line, so headings and list items without final punctuation stay separate.
_SENTENCE_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|\n\s*\n")
_CLAUSE_BREAK = re.compile(r"[;,]|\s[—–]\s")
# Narrowing a sentence to an answer: its words, the words of the question, and what a question asks for.
_WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
_RUN_BREAKS = frozenset(',;:()"')
_EDGE_WORDS = frozenset(
    "a an the of in on at to for by with from and or is was were are be been as that this which who whom whose what "
    "when where why how did do does its it his her their there than then into over under about after before during".split()
)
_ASKS_NUMBER = re.compile(
    r"\b(when|what year|which year|what date|how many|how much|how long|how old|what percentage|how far|how large|how big)\b"
)
_ASKS_PERSON = re.compile(r"\b(who|whom|whose)\b")
_ASKS_WHY, _ASKS_HOW = re.compile(r"\bwhy\b"), re.compile(r"\bhow\b")
# "What is the transit method?": a definition, which a phrase cannot give.
_ASKS_DEFINITION = re.compile(r"^\s*what\s+(?:is|are|was|were)\s+(?:a |an |the )?[\w'-]+(?:\s+[\w'-]+){0,3}\s*\?*\s*$")
# "Which method ...", "what kind of rock ...": the noun the answer names.
_ASKED_NOUN = re.compile(
    r"^\s*(?:in |on |at |of |for |by |to |from )?(?:which|what)\s+(?:kind of |type of |sort of |form of )?([a-z]+)\b"
)
_NOT_NOUNS = frozenset("is are was were did does do has have had can could would will should year percentage date".split())
# Words that stay with a number in a short answer ("March 1995", "400 million").
_MONTHS = frozenset("january february march april may june july august september october november december".split())
_NUMBER_WORDS = _MONTHS | frozenset("million billion thousand hundred percent % bc ad bce ce km miles years days century centuries".split())

H = TypeVar("H")


@dataclass(frozen=True)
class Passage:
    """A piece of a document to read; ``offset`` is where ``text`` starts in that document."""

    doc_id: str
    chunk_id: int
    title: str
    text: str
    offset: int = 0

    @classmethod
    def from_hit(cls, hit: Any) -> Passage:
        """The passage of a search :class:`~searchkit.index.Hit` (its chunk, at its offset)."""
        return cls(hit.doc_id, hit.chunk_id, hit.title, hit.text, hit.start)


@dataclass(frozen=True)
class Answer:
    """An answer span, located in its source document.

    ``start``/``end`` are character offsets in the source document (``passage_start`` plus
    the offsets within the passage), so ``document_text[start:end] == answer``.
    ``context`` is the passage text with the answer marked by :data:`ANSWER_MARKERS`.
    ``score`` is the reader's raw score (cosine for the sentence reader, start+end logit
    sum for span readers); scores are comparable within one reader, not across readers.
    ``no_answer_score`` is the span model's score for "no answer here" (its CLS token),
    and ``probability`` the span's probability under the model within its window.
    """

    answer: str
    score: float
    doc_id: str
    chunk_id: int
    title: str
    start: int
    end: int
    context: str
    passage_start: int
    no_answer_score: float | None = None
    probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reader(Protocol):
    """What question answering needs from a reader.

    ``read`` returns, for each passage, its best answers (best first, at most ``top_k``;
    empty when a passage has nothing to offer). ``read_batch`` does the same for several
    questions at once, which is how gold-paragraph evaluation stays fast. A reader may
    carry ``rerank_weight``, the share of retrieval scores in its QA rerank (see
    :func:`rerank_weight`).
    """

    name: str

    def read(self, question: str, passages: Sequence[Passage], top_k: int = 1) -> list[list[Answer]]: ...

    def read_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int = 1
    ) -> list[list[list[Answer]]]: ...


class _BatchReader(ABC):
    """``read`` as the one-question case of ``read_batch``, shared by the readers."""

    def read(self, question: str, passages: Sequence[Passage], top_k: int = 1) -> list[list[Answer]]:
        return self.read_batch([question], [passages], top_k)[0]

    @abstractmethod
    def read_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int = 1
    ) -> list[list[list[Answer]]]: ...


def _check_request(questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int) -> None:
    if len(questions) != len(passages):
        raise ValueError(f"{len(questions)} questions but {len(passages)} passage lists")
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            raise QueryError("the question is empty; type a question to answer")
    if not isinstance(top_k, int) or top_k < 1:
        raise QueryError(f"top_k must be a positive integer, got {top_k!r}")


def _answer(
    passage: Passage,
    start: int,
    end: int,
    score: float,
    *,
    no_answer_score: float | None = None,
    probability: float | None = None,
) -> Answer:
    """An :class:`Answer` for ``passage.text[start:end]``, shifted to document offsets."""
    text = passage.text
    opening, closing = ANSWER_MARKERS
    return Answer(
        answer=text[start:end],
        score=float(score),
        doc_id=passage.doc_id,
        chunk_id=passage.chunk_id,
        title=passage.title,
        start=passage.offset + start,
        end=passage.offset + end,
        context=f"{text[:start]}{opening}{text[start:end]}{closing}{text[end:]}",
        passage_start=passage.offset,
        no_answer_score=no_answer_score,
        probability=probability,
    )


def _ranked(answers: list[Answer], top_k: int) -> list[Answer]:
    """Best first; ties go to the earlier, then the shorter, span so results are deterministic."""
    return sorted(answers, key=lambda a: (-a.score, a.start, a.end - a.start))[:top_k]


# Span decoding


def decode_spans(
    start_logits: Sequence[float] | np.ndarray,
    end_logits: Sequence[float] | np.ndarray,
    context_mask: Sequence[bool] | np.ndarray,
    *,
    max_answer_tokens: int = 30,
    top_k: int = 1,
) -> list[tuple[int, int, float]]:
    """The ``top_k`` best ``(start, end, score)`` token spans, score = start + end logit.

    A span is valid when ``start <= end``, it is at most ``max_answer_tokens`` long and both
    ends lie in the context (``context_mask`` True), which keeps answers out of the
    question and the special tokens. Every valid span is scored (a band of width
    ``max_answer_tokens`` over the tokens: a few thousand sums), so the best span is never
    missed the way pruning to the top-n starts and ends can miss it. Ties go to the
    earlier, then the shorter, span.
    """
    start = np.asarray(start_logits, dtype=np.float64)
    end = np.asarray(end_logits, dtype=np.float64)
    mask = np.asarray(context_mask, dtype=bool)
    if start.ndim != 1 or start.shape != end.shape or start.shape != mask.shape:
        raise ValueError(
            f"start logits, end logits and context mask must be 1-d and of one length, "
            f"got shapes {start.shape}, {end.shape}, {mask.shape}"
        )
    if max_answer_tokens < 1 or top_k < 1:
        raise ValueError("max_answer_tokens and top_k must be at least 1")
    count = len(start)
    starts = np.arange(count)[:, None]
    ends = starts + np.arange(min(max_answer_tokens, count))[None, :]
    inside = ends < count
    ends = np.minimum(ends, count - 1)
    valid = inside & mask[:, None] & mask[ends]
    rows, widths = np.nonzero(valid)
    scores = start[rows] + end[ends[rows, widths]]
    best = np.lexsort((widths, rows, -scores))[:top_k]
    return [(int(rows[i]), int(rows[i] + widths[i]), float(scores[i])) for i in best]


def _logsumexp(values: np.ndarray) -> float:
    peak = float(values.max())
    return peak + math.log(float(np.exp(values - peak).sum()))


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (the random-head warning is turned into an error here)."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def check_window(max_length: int, stride: int, max_question_tokens: int) -> None:
    """Refuse window settings the tokenizer would fail on: the stride must fit beside the question."""
    if not 0 <= stride < max_length - max_question_tokens - 3:
        raise ConfigError(
            f"stride {stride} leaves no room for the passage in windows of {max_length} tokens "
            f"with questions of up to {max_question_tokens} tokens; use a smaller stride or longer windows"
        )


def clip_question(tokenizer: Any, question: str, max_tokens: int) -> str:
    """The question cut to its first ``max_tokens`` word pieces, so the passage keeps its room."""
    offsets = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return question if len(offsets) <= max_tokens else question[:offsets[max_tokens - 1][1]]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _locate(model: str | Path) -> str:
    """What transformers should load: a bundled model's folder, a local folder, or a hub name."""
    path = Path(model).expanduser()
    if path.is_file():
        raise ReaderError(f"reader path {str(model)!r} is a file; give the reader model's folder")
    location = resolve_model(str(model))
    folder = Path(location)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ReaderError(
            f"{location} is not a transformers model folder (no config.json); "
            f"give a question-answering model folder or {_TRAIN_HINT}"
        )
    return location


def load_qa_model(model: str | Path, *, device: str = "cpu", allow_untrained_head: bool = False) -> tuple[Any, Any]:
    """Tokenizer and QA model (in eval mode); a checkpoint whose QA head would be random is refused.

    Training starts from such an encoder on purpose and passes ``allow_untrained_head``.
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    location = _locate(model)
    try:
        with quiet_transformers():
            qa_model, info = AutoModelForQuestionAnswering.from_pretrained(location, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(location)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for bad models
        raise ReaderError(
            f"cannot load QA model {str(model)!r} ({_first_line(exc)}); "
            f"give a question-answering model folder or hub name, or {_TRAIN_HINT}"
        ) from exc
    missing = sorted(info["missing_keys"])
    if missing and not allow_untrained_head:
        raise ReaderError(
            f"{str(model)!r} is an encoder without a trained QA head (no weights for "
            f"{', '.join(missing[:2])}); {_TRAIN_HINT}"
        )
    if not tokenizer.is_fast:
        raise ReaderError(f"model {str(model)!r} has no fast tokenizer, which answer offsets need")
    tokenizer.padding_side = "right"
    return tokenizer, qa_model.to(device).eval()


@dataclass
class _Candidate:
    start: int
    end: int
    score: float
    probability: float


class SpanReader(_BatchReader):
    """Answer spans from a transformers ``AutoModelForQuestionAnswering`` checkpoint.

    A passage longer than ``max_length`` tokens is read in overlapping windows (``stride``
    tokens shared between neighbours, the standard SQuAD setting of 384/128); the best
    spans of all its windows compete, and a span seen in two windows keeps its better
    score. Questions are cut to ``max_question_tokens`` so a long one cannot crowd out
    the passage. Answers are at most ``max_answer_tokens`` long: by default the limit
    train-reader fitted on its held-out questions (recorded beside the weights), else 30.

    ``device`` and ``precision`` are ``auto`` by default (see :mod:`searchkit.device`): a GPU
    when torch sees one, and bfloat16 autocast where the hardware runs it natively.

    ``allow_untrained_head`` accepts a plain encoder whose QA head transformers would
    initialise at random: useful to test the plumbing, useless for answers.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 16,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int | None = None,
        max_question_tokens: int = 64,
        device: str | None = None,
        precision: str = "auto",
        allow_untrained_head: bool = False,
    ) -> None:
        from searchkit.device import resolve_device, resolve_torch_precision

        check_window(max_length, stride, max_question_tokens)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_answer_tokens is not None and max_answer_tokens < 1:
            raise ConfigError(f"max_answer_tokens must be at least 1, got {max_answer_tokens}")
        self.name = str(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.stride = stride
        info = _reader_info(model)
        self.max_answer_tokens = max_answer_tokens or _learned_answer_tokens(info, model)
        self.max_question_tokens = max_question_tokens
        self.device = resolve_device(device or os.environ.get("SEARCHKIT_DEVICE", "auto"))
        self.precision = resolve_torch_precision(precision, self.device)
        self.tokenizer, self.model = load_qa_model(model, device=self.device, allow_untrained_head=allow_untrained_head)
        self.rerank_weight = _learned_rerank_weight(info, model)

    def read_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int = 1
    ) -> list[list[list[Answer]]]:
        _check_request(questions, passages, top_k)
        pairs = [
            (clip_question(self.tokenizer, question, self.max_question_tokens), passage)
            for question, group in zip(questions, passages)
            for passage in group
        ]
        answers = self._read_pairs(pairs, top_k) if pairs else []
        grouped, taken = [], 0
        for group in passages:
            grouped.append(answers[taken:taken + len(group)])
            taken += len(group)
        return grouped

    def read_at_lengths(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], lengths: Sequence[int]
    ) -> dict[int, list[list[Answer]]]:
        """The best answer in each question's passages (one passage a question) for each answer length limit.

        The passages are read once and decoded once per limit in ``lengths``: this is how
        train-reader fits ``max_answer_tokens`` on held-out questions at the cost of one reading.
        """
        if any(len(group) != 1 for group in passages):
            raise ValueError("read_at_lengths takes exactly one passage a question")
        pairs = [(clip_question(self.tokenizer, question, self.max_question_tokens), group[0])
                 for question, group in zip(questions, passages)]
        encoded, logits = self._read_windows(pairs)
        return {length: self._decode(pairs, encoded, logits, 1, length) for length in lengths}

    def _read_pairs(self, pairs: list[tuple[str, Passage]], top_k: int) -> list[list[Answer]]:
        encoded, logits = self._read_windows(pairs)
        return self._decode(pairs, encoded, logits, top_k, self.max_answer_tokens)

    def _read_windows(self, pairs: list[tuple[str, Passage]]) -> tuple[Any, tuple[list[np.ndarray], list[np.ndarray]]]:
        encoded = self.tokenizer(
            [question for question, _ in pairs],
            [passage.text for _, passage in pairs],
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        return encoded, self._logits(encoded)

    def _decode(
        self, pairs: list[tuple[str, Passage]], encoded: Any, logits: tuple[list[np.ndarray], list[np.ndarray]],
        top_k: int, max_answer_tokens: int,
    ) -> list[list[Answer]]:
        start_logits, end_logits = logits
        candidates: list[dict[tuple[int, int], _Candidate]] = [{} for _ in pairs]
        no_answer = [math.inf] * len(pairs)
        for window, pair in enumerate(encoded["overflow_to_sample_mapping"]):
            start, end = start_logits[window], end_logits[window]
            mask = np.array([sequence == 1 for sequence in encoded.sequence_ids(window)])
            cls = self._cls_index(encoded["input_ids"][window])
            # Across windows, the most confident "no answer" is the one to compare with.
            no_answer[pair] = min(no_answer[pair], float(start[cls] + end[cls]))
            if not mask.any():
                continue
            log_z = _logsumexp(start[mask]) + _logsumexp(end[mask])
            offsets = encoded["offset_mapping"][window]
            for first, last, score in decode_spans(start, end, mask, max_answer_tokens=max_answer_tokens, top_k=top_k):
                span = (offsets[first][0], offsets[last][1])
                seen = candidates[pair].get(span)
                if seen is None or score > seen.score:
                    candidates[pair][span] = _Candidate(*span, score, math.exp(score - log_z))
        return [
            _ranked([
                _answer(passage, c.start, c.end, c.score, no_answer_score=no_answer[i], probability=c.probability)
                for c in candidates[i].values()
            ], top_k)
            for i, (_, passage) in enumerate(pairs)
        ]

    def _cls_index(self, input_ids: list[int]) -> int:
        cls_id = self.tokenizer.cls_token_id
        return input_ids.index(cls_id) if cls_id in input_ids else 0

    def _logits(self, encoded: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start and end logits of every window, unpadded; windows of similar length are batched."""
        import torch

        from searchkit.device import autocast

        names = [name for name in self.tokenizer.model_input_names if name in encoded]
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        starts: list[np.ndarray] = [np.empty(0)] * len(lengths)
        ends: list[np.ndarray] = [np.empty(0)] * len(lengths)
        with torch.no_grad():
            for begin in range(0, len(order), self.batch_size):
                chunk = order[begin:begin + self.batch_size]
                features = [{name: encoded[name][w] for name in names} for w in chunk]
                batch = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
                with autocast(self.device, self.precision):
                    output = self.model(**batch)
                for row, window in enumerate(chunk):
                    starts[window] = output.start_logits[row, :lengths[window]].float().cpu().numpy()
                    ends[window] = output.end_logits[row, :lengths[window]].float().cpu().numpy()
        return starts, ends


# Sentence reading


def _reader_info(model: str | Path) -> dict[str, Any]:
    """What train-reader recorded beside the reader in folder ``model`` (empty for other models)."""
    try:
        info = json.loads((Path(resolve_model(str(model))) / READER_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _learned_rerank_weight(info: dict[str, Any], model: str | Path) -> float:
    """The rerank weight train-reader measured for the reader, else the default."""
    rerank = info.get("rerank")
    if not isinstance(rerank, dict) or "weight" not in rerank:
        return DEFAULT_RERANK_WEIGHT
    weight = rerank["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        logger.warning("%s in %s has rerank weight %r, not a number in [0, 1]; using %s", READER_INFO_FILE, model,
                       weight, DEFAULT_RERANK_WEIGHT)
        return DEFAULT_RERANK_WEIGHT
    return float(weight)


def _learned_answer_tokens(info: dict[str, Any], model: str | Path) -> int:
    """The answer length limit train-reader fitted for the reader, else the default."""
    if "max_answer_tokens" not in info:
        return DEFAULT_MAX_ANSWER_TOKENS
    tokens = info["max_answer_tokens"]
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        logger.warning("%s in %s has max_answer_tokens %r, not a positive whole number; using %s", READER_INFO_FILE,
                       model, tokens, DEFAULT_MAX_ANSWER_TOKENS)
        return DEFAULT_MAX_ANSWER_TOKENS
    return tokens


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without surrounding whitespace, or None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _pieces(text: str, start: int, end: int, breaks: re.Pattern[str], keep_break: bool) -> list[tuple[int, int]]:
    """Spans of ``text[start:end]`` between matches of ``breaks`` (the break kept or dropped)."""
    spans, begin = [], start
    for match in breaks.finditer(text, start, end):
        spans.append((begin, match.end() if keep_break else match.start()))
        begin = match.end()
    spans.append((begin, end))
    return [span for span in (_trimmed(text, a, b) for a, b in spans) if span]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, whitespace trimmed."""
    return _pieces(text, 0, len(text), _SENTENCE_BREAK, keep_break=True)


@dataclass
class _Segment:
    start: int
    end: int
    row: int
    clauses: list[_Segment]


class SentenceReader(_BatchReader):
    """Answers with the sentence most similar to the question, using the index's embedder.

    Nothing is trained and nothing is downloaded, so it is the default. A sentence longer
    than ``clause_min_words`` words is narrowed to its best clause (split at ``;``, ``,``
    and dashes) when that clause scores within ``clause_margin`` of the whole sentence:
    shorter answers read better, but never at a real cost in similarity. Clauses under
    three words are too short to stand alone and are not considered. ``score`` is the
    cosine similarity of that sentence or clause to the question.

    With ``narrow`` (the default, reader name ``phrase``) the answer is then cut down to the
    words that answer the question, by :func:`narrow_to_answer`: an answer rarely repeats the
    question's words, so the sentence is split at them and the piece that looks like what the
    question asks for is kept; why, how and what-is questions keep the sentence. On SQuAD dev
    articles 29-36 this gives F1 28.3 against 20.1 for whole sentences (reader name
    ``sentence``, ``narrow=False``); the rules were chosen on articles 1-28 (see
    ``benchmarks/results/qa.md``). Narrowing never changes which answer ranks first.
    """

    def __init__(
        self, embedder: Embedder, *, clause_min_words: int = 40, clause_margin: float = 0.02, narrow: bool = True
    ) -> None:
        self.embedder = embedder
        self.clause_min_words = clause_min_words
        self.clause_margin = clause_margin
        self.narrow = narrow
        self.name = DEFAULT_READER if narrow else SENTENCE_READER
        self.rerank_weight = DEFAULT_RERANK_WEIGHT

    def read_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], top_k: int = 1
    ) -> list[list[list[Answer]]]:
        """Embeds the batch in one encode call, each distinct text once.

        Gold-paragraph evaluation reads a paragraph once per question, so deduplicating
        texts saves most of the encoding there.
        """
        _check_request(questions, passages, top_k)
        rows: dict[str, int] = {}
        question_rows = [rows.setdefault(q, len(rows)) for q in questions]
        segments = [[self._segments(p.text, rows) for p in group] for group in passages]
        if not any(s for group in segments for s in group):
            return [[[] for _ in group] for group in passages]
        vectors = self.embedder.encode(list(rows))
        return [
            [self._answers(q, p, segs, vectors @ vectors[row], top_k) for p, segs in zip(group, group_segments)]
            for q, row, group, group_segments in zip(questions, question_rows, passages, segments)
        ]

    def _segments(self, text: str, rows: dict[str, int]) -> list[_Segment]:
        """The passage's sentences (and clauses of long ones), each given its row in ``rows``."""
        segments = []
        for start, end in split_sentences(text):
            clauses = []
            if len(text[start:end].split()) > self.clause_min_words:
                for a, b in _pieces(text, start, end, _CLAUSE_BREAK, keep_break=False):
                    if len(text[a:b].split()) >= 3:
                        clauses.append(_Segment(a, b, rows.setdefault(text[a:b], len(rows)), []))
            segments.append(_Segment(start, end, rows.setdefault(text[start:end], len(rows)), clauses))
        return segments

    def _answers(
        self, question: str, passage: Passage, segments: list[_Segment], scores: np.ndarray, top_k: int
    ) -> list[Answer]:
        answers = []
        for sentence in segments:
            best = max(sentence.clauses, key=lambda c: scores[c.row], default=sentence)
            if scores[best.row] < scores[sentence.row] - self.clause_margin:
                best = sentence
            start, end = best.start, best.end
            if self.narrow:
                start, end = narrow_to_answer(question, passage.text, start, end)
            answers.append(_answer(passage, start, end, float(scores[best.row])))
        return _ranked(answers, top_k)


def narrow_to_answer(question: str, text: str, start: int, end: int) -> tuple[int, int]:
    """The part of ``text[start:end]`` (a sentence) most likely to be the answer to ``question``.

    The sentence is cut at every word of the question and at commas, semicolons, colons,
    brackets and quotes; each piece loses function words at its edges. Among the pieces,
    short ones (at most 12 words, best about 3) are preferred, with a number when the
    question asks for one (when, how many...), a capitalised word for who, else the more
    capitalised words the better, and the piece right after the question's last word ("what
    can parrots imitate?": "human speech") a little; for a number, the piece is then cut to the number with
    its months and units. Question words are matched by a crude stem ("discover" is cut at
    as "discovered" would be). A "which N" or "what N" question names the kind of thing
    it wants: the piece right before N in the sentence ("the *transit* method") is
    preferred, and kept together with N. Why and how questions want an explanation and
    "what is X?" a definition, not a phrase, so their sentence is kept whole, as is one
    that leaves no piece.
    """
    asked = question.lower()
    kind = "number" if _ASKS_NUMBER.search(asked) else "person" if _ASKS_PERSON.search(asked) else "other"
    if _ASKS_WHY.search(asked) or (_ASKS_HOW.search(asked) and kind != "number") or _ASKS_DEFINITION.match(asked):
        return start, end
    named = _ASKED_NOUN.match(asked)
    noun = named.group(1).rstrip("s") if named and named.group(1) not in _NOT_NOUNS else None
    words = re.findall(r"\w+", asked)
    question_words = set(words)
    question_stems = {_stem(word) for word in question_words}
    content = [word for word in words if word not in _EDGE_WORDS]
    last_word = _stem(content[-1]) if content and kind == "other" else None
    pieces: list[list[re.Match[str]]] = [[]]
    cuts: list[re.Match[str] | None] = [None]  # cuts[i]: the token before pieces[i]; cuts[i + 1] the one after
    for token in _WORD.finditer(text, start, end):
        word = token.group()
        if word.lower() in question_words or _stem(word) in question_stems or word in _RUN_BREAKS:
            pieces.append([])
            cuts.append(token)
        else:
            pieces[-1].append(token)
    cuts.append(None)
    best: tuple[float, int, int, list[re.Match[str]]] | None = None
    for piece, before, cut in zip(pieces, cuts, cuts[1:]):
        while piece and (piece[0].group().lower() in _EDGE_WORDS or not piece[0].group()[0].isalnum()):
            piece = piece[1:]
        while piece and (piece[-1].group().lower() in _EDGE_WORDS or not piece[-1].group()[0].isalnum()):
            piece = piece[:-1]
        if not piece:
            continue
        first, last = piece[0].start(), piece[-1].end()
        score = _piece_score(len(piece), text[first:last], kind)
        if noun and cut is not None and cut.group().lower().rstrip("s") == noun and cut.start() - last <= 1:
            score += 1.0
            last = cut.end()
        if last_word and before is not None and _stem(before.group()) == last_word:
            score += 0.5  # "what can parrots imitate?": what follows the question's last word
        if best is None or score > best[0]:
            best = (score, first, last, piece)
    if best is None:
        return start, end
    return _number_in(best[3]) if kind == "number" else (best[1], best[2])


def _stem(word: str) -> str:
    """A crude English stem (a common suffix cut off), so "discover" in a sentence matches "discovered" in the question."""
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _number_in(piece: list[re.Match[str]]) -> tuple[int, int]:
    """The first number of the piece with the months and units around it ("In 1995 Mayor ..." gives "1995")."""
    has_digit = [any(char.isdigit() for char in token.group()) for token in piece]
    if True not in has_digit or len(piece) == 1:
        return piece[0].start(), piece[-1].end()
    first = last = has_digit.index(True)
    while first > 0 and (has_digit[first - 1] or piece[first - 1].group().lower() in _MONTHS):
        first -= 1
    while last + 1 < len(piece) and (
        has_digit[last + 1] or piece[last + 1].group().lower() in _NUMBER_WORDS or piece[last + 1].group() in ",."
    ):
        last += 1
    while last > first and not piece[last].group()[0].isalnum():
        last -= 1
    return piece[first].start(), piece[last].end()


def _piece_score(length: int, piece: str, kind: str) -> float:
    """How much a piece of ``length`` tokens looks like the answer to a question of this kind."""
    words = re.findall(r"\w+", piece)
    capitalised = sum(1 for word in words if word[0].isupper())
    score = 2.0 * (length <= 12) - 0.1 * abs(length - 3)
    if kind == "number":
        return score + 2.0 * any(char.isdigit() for word in words for char in word)
    if kind == "person":
        return score + 1.0 * (capitalised > 0)
    return score + 0.5 * capitalised


# Choosing a reader


def load_reader(spec: str | None, embedder: Embedder) -> tuple[Reader, str | None]:
    """The reader named by ``spec``, and a one-line notice when it had to fall back.

    ``None``, ``""``, ``"default"`` and ``"phrase"`` give the :class:`SentenceReader`
    narrowing its answers (:func:`narrow_to_answer`), ``"sentence"`` the same reader
    answering with whole sentences.
    An existing folder (or a bundled model name) must be a QA model, and a spec written
    as a path (see :func:`looks_like_path`) must exist: anything else is a
    :class:`ReaderError`, since the user pointed at it on purpose. Any other string is
    tried as a hub name; when it cannot be loaded (typically offline) the default reader
    is used and the notice says why, so ``ask`` still answers.
    """
    if spec is None or spec.strip().lower() in _DEFAULT_NAMES:
        return SentenceReader(embedder), None
    if spec.strip().lower() == SENTENCE_READER:
        return SentenceReader(embedder, narrow=False), None
    if Path(spec).expanduser().exists() or Path(resolve_model(spec)).exists():
        return SpanReader(spec), None
    if looks_like_path(spec):
        raise ReaderError(f"reader folder {spec} does not exist; give a folder written by train-reader")
    try:
        return SpanReader(spec), None
    except ReaderError as exc:
        reason = _first_line(exc.__cause__) if exc.__cause__ else str(exc)
        notice = f"reader {spec!r} is not available ({reason}); using the default phrase reader"
        return SentenceReader(embedder), notice


def looks_like_path(spec: str) -> bool:
    """Whether ``spec`` is written as a file-system path rather than a hub name.

    Absolute paths, paths starting with ``.`` or ``~``, backslashes, and more than one
    ``/`` are paths; a single ``/`` is how hub names read (``org/model``), so a relative
    ``folder/reader`` that does not exist is tried on the hub.
    """
    return (
        Path(spec).is_absolute()
        or spec.startswith((".", "~"))
        or "\\" in spec
        or spec.count("/") > 1
    )


# Reranking


def rerank_weight(reader: Reader) -> float:
    """The share of retrieval scores in ``reader``'s QA rerank: measured for a trained reader, else 0.5."""
    return float(getattr(reader, "rerank_weight", DEFAULT_RERANK_WEIGHT))


def rerank_hits(
    hits: Sequence[H], answers_per_hit: Sequence[Sequence[Answer]], weight: float = DEFAULT_RERANK_WEIGHT
) -> list[H]:
    """Hits reordered by ``weight * retrieval + (1 - weight) * answer`` score.

    Retrieval and answer scores live on different scales (cosine vs logits), so each is
    min-max normalised over this candidate list first; a hit's answer score is that of its
    best answer, and a hit without any answer gets the lowest (0). ``weight=1`` keeps the
    retrieval order, ``weight=0`` orders by answers alone; ties keep the retrieval order.
    Hits must be dataclasses with a ``score`` (and optionally a ``rank``, renumbered from
    1); the returned copies carry the combined score.
    """
    if len(hits) != len(answers_per_hit):
        raise ValueError(f"{len(hits)} hits but {len(answers_per_hit)} answer lists")
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"rerank weight must be between 0 and 1, got {weight}")
    if not hits:
        return []
    retrieval = min_max_scale([float(hit.score) for hit in hits])
    best = [answers[0].score if answers else None for answers in answers_per_hit]
    present = [score for score in best if score is not None]
    scaled = iter(min_max_scale(present))
    answer = [next(scaled) if score is not None else 0.0 for score in best]
    combined = [weight * r + (1.0 - weight) * a for r, a in zip(retrieval, answer)]
    order = sorted(range(len(hits)), key=lambda i: -combined[i])
    return [
        replace(hits[i], score=combined[i], **({"rank": rank} if hasattr(hits[i], "rank") else {}))
        for rank, i in enumerate(order, start=1)
    ]


def best_answers(
    hits: Sequence[Any], answers_per_hit: Sequence[Sequence[Answer]], k: int, weight: float = DEFAULT_RERANK_WEIGHT
) -> list[Answer]:
    """The ``k`` best answers over the hits, ordered and scored as :func:`rerank_hits` orders hits.

    Each hit contributes its best answer; ``Answer.score`` becomes the combined
    retrieval-and-answer score, in [0, 1].
    """
    best = {hit.chunk_id: answers[0] for hit, answers in zip(hits, answers_per_hit) if answers}
    ranked = rerank_hits(hits, answers_per_hit, weight)
    return [replace(best[hit.chunk_id], score=hit.score) for hit in ranked if hit.chunk_id in best][:k]
