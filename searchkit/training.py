"""Training an extractive QA reader on SQuAD-format data, on the CPU if need be.

No PyPI package ships a trained QA model and the machines searchkit targets may be
offline, so a span reader has to be trained locally: by default on top of the bundled
all-MiniLM-L6-v2 encoder, whose QA head starts random. The result is an ordinary
transformers folder (``save_pretrained``) plus ``searchkit-reader.json`` recording how it
was trained and how it scored on held-out questions, and :class:`~searchkit.reader.SpanReader`
loads it like any QA checkpoint.

Features follow the standard SQuAD recipe: question and paragraph are tokenised together
in overlapping windows; a window holding the (first) gold answer is labelled with its
first and last token, a window without it points at the CLS token (index 0 for BERT-like
models), which teaches the model to say "not here" for windows that miss the answer.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from searchkit.config import DEFAULT_MODEL
from searchkit.embedding import resolve_model
from searchkit.errors import ConfigError
from searchkit.reader import SpanReader, check_window, clip_question, load_qa_model, quiet_transformers
from searchkit.squad import SquadData, SquadExample, read_gold

__all__ = ["TrainReport", "train_reader", "split_held_out", "prepare_features", "READER_INFO_FILE"]

READER_INFO_FILE = "searchkit-reader.json"
MAX_QUESTION_TOKENS = 64

logger = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """What a training run did: steps, the loss curve, time, and held-out scores."""

    out_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    train_examples: int = 0
    train_features: int = 0
    eval_questions: int = 0
    exact_match: float | None = None
    f1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}


def split_held_out(
    examples: Sequence[SquadExample], fraction: float, seed: int
) -> tuple[list[SquadExample], list[SquadExample]]:
    """(train, held-out) examples; whole articles are held out when there are several.

    Questions about one paragraph share most of their evidence, so holding out whole
    articles measures generalisation; with a single article, questions are held out.
    At least one unit stays on each side when possible.
    """
    articles = sorted({e.article for e in examples})
    by_article = len(articles) > 1
    units = articles if by_article else [e.id for e in examples]
    count = min(max(1, round(len(units) * fraction)), len(units) - 1) if fraction > 0 else 0
    held = set(random.Random(seed).sample(units, count))
    key = (lambda e: e.article) if by_article else (lambda e: e.id)
    return [e for e in examples if key(e) not in held], [e for e in examples if key(e) in held]


def _answer_tokens(
    sequence_ids: list[int | None], offsets: list[tuple[int, int]], start_char: int, end_char: int, cls: int
) -> tuple[int, int]:
    """First and last token of the answer in this window, or (cls, cls) if it is not all inside."""
    context = [i for i, sequence in enumerate(sequence_ids) if sequence == 1]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return cls, cls
    first = next(i for i in context if offsets[i][1] > start_char)
    last = next(i for i in reversed(context) if offsets[i][0] < end_char)
    return first, last


def prepare_features(
    tokenizer: Any, examples: Sequence[SquadExample], max_length: int = 384, stride: int = 128
) -> list[dict[str, Any]]:
    """Model inputs of every window, with ``start_positions``/``end_positions`` labels."""
    encoded = tokenizer(
        [clip_question(tokenizer, e.question.lstrip(), MAX_QUESTION_TOKENS) for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    names = [name for name in tokenizer.model_input_names if name in encoded]
    features = []
    for window, sample in enumerate(encoded["overflow_to_sample_mapping"]):
        example = examples[sample]
        input_ids = encoded["input_ids"][window]
        cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        start_char = example.answer_starts[0]
        first, last = _answer_tokens(
            encoded.sequence_ids(window), encoded["offset_mapping"][window],
            start_char, start_char + len(example.answers[0]), cls,
        )
        features.append({**{name: encoded[name][window] for name in names},
                         "start_positions": first, "end_positions": last})
    return features


def _batches(features: list[dict[str, Any]], batch_size: int, tokenizer: Any, generator: Any) -> list[dict[str, Any]]:
    """One epoch of shuffled, padded batches as tensors."""
    import torch

    order = torch.randperm(len(features), generator=generator).tolist()
    batches = []
    for begin in range(0, len(order), batch_size):
        chunk = [features[i] for i in order[begin:begin + batch_size]]
        labels = {key: torch.tensor([f[key] for f in chunk]) for key in ("start_positions", "end_positions")}
        inputs = [{k: v for k, v in f.items() if k not in labels} for f in chunk]
        batches.append({**tokenizer.pad(inputs, return_tensors="pt"), **labels})
    return batches


def _check_settings(
    epochs: int, batch_size: int, learning_rate: float, eval_fraction: float, max_length: int, stride: int
) -> None:
    check_window(max_length, stride, MAX_QUESTION_TOKENS)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if not learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive, got {learning_rate}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")


def train_reader(
    train: SquadData,
    out_dir: str | Path,
    *,
    base: str = DEFAULT_MODEL,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    warmup_fraction: float = 0.1,
    max_length: int = 384,
    stride: int = 128,
    eval_fraction: float = 0.1,
    max_examples: int | None = None,
    seed: int = 0,
    log_every: int = 20,
    progress: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> TrainReport:
    """Fine-tune ``base`` for extractive QA on ``train`` and save a reader in ``out_dir``.

    ``learning_rate`` defaults to 1e-4, above the 3e-5 to 5e-5 usual for BERT-base: small
    encoders such as the 6-layer, 384-wide MiniLM start with a random QA head and train
    fast and stably at the higher rate (use 3e-5 for base-size models). It warms up
    linearly over ``warmup_fraction`` of the steps, then decays linearly to zero (AdamW,
    weight decay 0.01). ``max_examples`` keeps the first examples in file order, before
    the held-out split (see :func:`split_held_out`). ``losses`` holds the mean loss of
    every ``log_every`` steps, each also passed to ``log``.
    """
    import torch

    _check_settings(epochs, batch_size, learning_rate, eval_fraction, max_length, stride)
    say = log or logger.info
    examples = train.examples[:max_examples] if max_examples is not None else train.examples
    fit, held_out = split_held_out(examples, eval_fraction, seed)
    if not fit:
        raise ConfigError("no training examples; give a SQuAD file with questions, or raise max_examples")
    torch.manual_seed(seed)
    tokenizer, model = load_qa_model(base, device=device, allow_untrained_head=True)
    features = prepare_features(tokenizer, fit, max_length, stride)
    report = TrainReport(
        Path(out_dir), epochs * math.ceil(len(features) / batch_size), train_examples=len(fit),
        train_features=len(features),
    )
    say(f"training {base} on {len(fit)} questions ({len(features)} windows), {report.steps} steps; "
        f"{len(held_out)} questions held out")
    optimise = _Optimisation(epochs, batch_size, learning_rate, warmup_fraction, seed, log_every, progress, device)
    _fit(model, tokenizer, features, report, optimise, say)
    _save(model, tokenizer, report.out_dir)
    if held_out:
        _evaluate(report, train.subset(held_out), max_length, stride, device, say)
    _write_info(report, {
        "base": base, "base_location": resolve_model(base), "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_fraction": warmup_fraction, "max_length": max_length,
        "stride": stride, "eval_fraction": eval_fraction, "max_examples": max_examples, "seed": seed,
        "source": str(train.path) if train.path else None,
        "held_out": {"articles": sorted({e.article for e in held_out}), "questions": len(held_out)},
    })
    return report


@dataclass(frozen=True)
class _Optimisation:
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_fraction: float
    seed: int
    log_every: int
    progress: bool
    device: str


def _fit(
    model: Any, tokenizer: Any, features: list[dict[str, Any]], report: TrainReport, settings: _Optimisation,
    say: Callable[[str], None],
) -> None:
    """The training loop: AdamW with linear warmup and decay, losses averaged per interval."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_fraction * report.steps), report.steps
    )
    started = time.perf_counter()
    model.train()
    interval: list[float] = []
    step = 0
    with tqdm(total=report.steps, unit="step", desc="training", disable=not settings.progress) as bar:
        for _ in range(settings.epochs):
            for batch in _batches(features, settings.batch_size, tokenizer, generator):
                loss = model(**{k: v.to(settings.device) for k, v in batch.items()}).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                interval.append(loss.item())
                step += 1
                bar.update(1)
                if len(interval) == settings.log_every or step == report.steps:
                    report.losses.append(sum(interval) / len(interval))
                    say(f"step {step}/{report.steps} loss {report.losses[-1]:.4f}")
                    bar.set_postfix(loss=f"{report.losses[-1]:.3f}")
                    interval = []
    model.eval()
    report.train_seconds = time.perf_counter() - started


def _save(model: Any, tokenizer: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def _evaluate(
    report: TrainReport, held_out: SquadData, max_length: int, stride: int, device: str, say: Callable[[str], None]
) -> None:
    """Score the saved reader on the held-out questions, loading it back as users will."""
    reader = SpanReader(
        report.out_dir, max_length=max_length, stride=stride, max_question_tokens=MAX_QUESTION_TOKENS, device=device
    )
    metrics = read_gold(reader, held_out).metrics
    report.eval_questions = len(held_out.examples)
    report.exact_match, report.f1 = metrics["exact_match"], metrics["f1"]
    say(f"held out {report.eval_questions} questions: exact match {report.exact_match:.1f}, F1 {report.f1:.1f}")


def _write_info(report: TrainReport, settings: dict[str, Any]) -> None:
    info = {"settings": settings, "report": report.to_dict()}
    (report.out_dir / READER_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
