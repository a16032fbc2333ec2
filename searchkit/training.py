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

import hashlib
import json
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from searchkit.config import DEFAULT_MODEL
from searchkit.embedding import resolve_model
from searchkit.device import (
    autocast, cpu_threads, keep_freed_memory, resolve_device, resolve_torch_precision, set_threads,
)
from searchkit.errors import ConfigError, SearchkitError
from searchkit.reader import (
    DEFAULT_MAX_ANSWER_TOKENS,
    READER_INFO_FILE,
    SpanReader,
    check_window,
    clip_question,
    load_qa_model,
    quiet_transformers,
)
from searchkit.squad import SquadData, SquadExample, score_gold_at_lengths

__all__ = [
    "TrainReport",
    "TrainingInterrupted",
    "train_reader",
    "split_held_out",
    "prepare_features",
    "epoch_batches",
    "collate",
    "span_loss",
    "learning_rate_factor",
    "set_dropout",
    "READER_INFO_FILE",
    "CHECKPOINT_FILE",
]

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
MAX_QUESTION_TOKENS = 64
DEFAULT_EPOCHS = 3
# Windows a step. A CPU's 20 minutes were about one epoch, where more, smaller updates learned more: batches of 8
# scored SQuAD EM 55.3 / F1 67.3 against 53.2 / 66.0 for 16 (benchmarks/results/qa.md).
DEFAULT_BATCH_SIZE = 8
DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_EVAL_FRACTION = 0.05
# Dropout while training: off. A CPU's 20 minutes are one or two epochs, too short to overfit; without it a
# float32 step took 988 instead of 1,892 us a token on 2 cores (benchmarks/results/train_step.md: drawing the
# masks is slow on a CPU), and the reader learned more from each question: SQuAD F1 66.0 after 1.15 epochs,
# against 65.0 after 1.46 with dropout 0.1 (benchmarks/results/qa.md).
DEFAULT_DROPOUT = 0.0
# Seconds of training: with the held-out scoring and the rerank fit after it (2 to 3 minutes on 2 cores), the
# command ends in the 20 minutes a user on a laptop CPU waits for a reader (19 min 39 s, benchmarks/results/qa.md).
DEFAULT_TIME_LIMIT = 17 * 60.0
# Held-out questions on which the QA rerank weight is fitted: each reads 20 retrieved chunks.
DEFAULT_RERANK_QUESTIONS = 100
# Steps timed at each thread count when train-reader chooses the count, and the shortest run that measures.
PROBE_STEPS = 3
PROBE_MIN_STEPS = 60

logger = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """What a training run did: steps, the loss curve, time, and held-out scores.

    ``steps`` were done out of ``planned_steps`` (all epochs); ``stopped_by`` says whether
    the epochs or the time limit ended the run; ``resumed_from`` is the step a checkpoint
    gave back, if any.
    """

    out_dir: Path
    steps: int
    planned_steps: int = 0
    stopped_by: str = ""
    resumed_from: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    train_examples: int = 0
    train_features: int = 0
    eval_questions: int = 0
    exact_match: float | None = None
    f1: float | None = None
    rerank: dict[str, Any] | None = None  # the QA rerank weight fitted on held-out questions (rerank_fit.py)
    max_answer_tokens: int | None = None  # the answer length limit fitted on held-out questions
    scores_by_answer_tokens: dict[int, dict[str, float]] | None = None

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
    """Model inputs of every window, with ``start_positions``/``end_positions`` labels.

    The labels are the first gold answer's tokens; ``gold_spans`` holds the tokens of every
    distinct gold answer inside the window (several annotators often marked slightly
    different spans), which :func:`span_loss` trains on all together. ``answerable`` marks
    the tokens an answer may start or end at: the passage's and the CLS token ("no answer
    here"), the positions the reader decodes from.
    """
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
        sequence_ids, offsets = encoded.sequence_ids(window), encoded["offset_mapping"][window]
        spans = [
            _answer_tokens(sequence_ids, offsets, start_char, start_char + len(answer), cls)
            for answer, start_char in zip(example.answers, example.answer_starts)
        ]
        inside = list(dict.fromkeys(span for span in spans if span != (cls, cls))) or [(cls, cls)]
        answerable = [sequence == 1 or i == cls for i, sequence in enumerate(sequence_ids)]
        features.append({**{name: encoded[name][window] for name in names},
                         "start_positions": spans[0][0], "end_positions": spans[0][1],
                         "gold_spans": inside, "answerable": answerable})
    return features


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, pool: int = 50) -> list[list[int]]:
    """One epoch of batches (feature indices), grouped by length so that a batch pads little.

    The features are shuffled, cut into pools of ``pool`` batches, sorted by length inside
    each pool and cut into batches, and the batches are shuffled: each batch holds windows
    of similar length (padded only to its longest), while an epoch still mixes all lengths
    in random order. The same ``seed`` gives the same epoch, which is what lets an
    interrupted run resume exactly where it stopped.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for begin in range(0, len(order), batch_size * pool):
        ranked = sorted(order[begin:begin + batch_size * pool], key=lengths.__getitem__)
        batches += [ranked[i:i + batch_size] for i in range(0, len(ranked), batch_size)]
    rng.shuffle(batches)
    return batches


_LABELS = ("start_positions", "end_positions", "gold_spans", "answerable", "gold_starts", "gold_ends")


def collate(tokenizer: Any, features: Sequence[dict[str, Any]], pad_to: int | None = None) -> dict[str, Any]:
    """Tensors of a batch, padded to its longest window (or to ``pad_to``), with the labels.

    ``gold_starts``/``gold_ends`` mark, a row each, the tokens any gold answer starts or ends at.
    """
    import torch

    inputs = [{k: v for k, v in f.items() if k not in _LABELS} for f in features]
    padding: dict[str, Any] = {"padding": "max_length", "max_length": pad_to} if pad_to else {}
    batch = tokenizer.pad(inputs, return_tensors="pt", **padding)
    width = batch["input_ids"].shape[1]
    answerable = torch.zeros(len(features), width, dtype=torch.bool)
    gold_starts = torch.zeros(len(features), width, dtype=torch.bool)
    gold_ends = torch.zeros(len(features), width, dtype=torch.bool)
    for row, feature in enumerate(features):
        answerable[row, :len(feature["answerable"])] = torch.tensor(feature["answerable"])
        for first, last in feature["gold_spans"]:
            gold_starts[row, first] = gold_ends[row, last] = True
    labels = {key: torch.tensor([f[key] for f in features]) for key in ("start_positions", "end_positions")}
    return {**batch, **labels, "answerable": answerable, "gold_starts": gold_starts, "gold_ends": gold_ends}


def span_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Negative log-likelihood that the reader starts (and ends) where some gold answer does.

    Only the answerable positions compete: transformers' own QA loss takes the softmax over
    every position, padding and question included, so it changes with how far a batch is
    padded and spends effort pushing down positions no answer is ever read from. Masking them
    makes dynamic padding exactly equal to full padding and trains only the choice the reader
    makes. The likelihood sums over the gold answers' tokens, so where annotators disagree on
    a span's edges the reader is not taught to avoid the edges the others chose, and it can
    settle on the one it finds easiest, which exact match rewards.
    """
    import torch

    inputs = {k: v for k, v in batch.items() if k not in _LABELS}
    output = model(**inputs)
    losses = []
    lowest = torch.finfo(torch.float32).min
    for logits, gold in ((output.start_logits, batch["gold_starts"]), (output.end_logits, batch["gold_ends"])):
        masked = logits.float().masked_fill(~batch["answerable"], lowest)
        losses.append(torch.logsumexp(masked, dim=1) - torch.logsumexp(masked.masked_fill(~gold, lowest), dim=1))
    return (losses[0] + losses[1]).mean() / 2


def set_dropout(model: Any, probability: float) -> None:
    """Set every dropout layer of ``model`` to ``probability``, attention dropout included.

    Done on the modules rather than the config, so it holds for any architecture, and the
    saved config keeps the base model's values.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = probability


def learning_rate_factor(progress: float, warmup_fraction: float) -> float:
    """The share of the peak rate at ``progress`` (0 to 1): linear warm-up, then linear decay to zero."""
    if progress < warmup_fraction:
        return progress / warmup_fraction
    return max(0.0, (1.0 - progress) / (1.0 - warmup_fraction)) if warmup_fraction < 1 else 0.0


def _check_settings(
    epochs: int, batch_size: int, learning_rate: float, eval_fraction: float, max_length: int, stride: int,
    warmup_fraction: float, dropout: float, time_limit: float | None,
) -> None:
    check_window(max_length, stride, MAX_QUESTION_TOKENS)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if not learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive, got {learning_rate}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ConfigError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if time_limit is not None and not time_limit > 0:
        raise ConfigError(f"time_limit must be a positive number of seconds, got {time_limit}")


def train_reader(
    train: SquadData,
    out_dir: str | Path,
    *,
    base: str = DEFAULT_MODEL,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    warmup_fraction: float = 0.1,
    dropout: float = DEFAULT_DROPOUT,
    max_length: int = 384,
    stride: int = 128,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    max_examples: int | None = None,
    seed: int = 0,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    device: str | None = "auto",
    precision: str = "auto",
    threads: int | None = None,
    checkpoint_every: float = 300.0,
    resume: bool = True,
    rerank_questions: int = DEFAULT_RERANK_QUESTIONS,
    log_every: int = 20,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainReport:
    """Fine-tune ``base`` for extractive QA on ``train`` and save a reader in ``out_dir``.

    The recipe is made for a small data set and a CPU: every window of every question,
    batches of windows of similar length padded only to their longest (:func:`epoch_batches`),
    no ``dropout`` (the runs are too short to overfit, and its masks cost a third of a CPU step),
    bfloat16 autocast where the hardware runs it natively (``precision="auto"``), a GPU when
    there is one (``device="auto"``), and several epochs under one schedule: linear warm-up
    over ``warmup_fraction`` of the run, then linear decay to zero, AdamW with weight decay
    0.01. ``time_limit`` (seconds of training, default 17 minutes) bounds the run: the
    schedule's progress is the larger of the share of steps done and the share of the time
    used, so a run that cannot finish its epochs in time still decays to zero and ends on
    time rather than being cut off at a high rate. ``None`` trains all ``epochs``.

    ``learning_rate`` defaults to 2e-4, above the 3e-5 to 5e-5 usual for BERT-base: the
    6-layer, 384-wide MiniLM starts with a random QA head and trains fast and stably at
    the higher rate (use 3e-5 for base-size models). ``threads`` left to None on a CPU is
    measured: the first steps are timed on one thread and on all cores, and the faster kept.

    Every ``checkpoint_every`` seconds, at the end of each epoch and on Ctrl-C, the state
    (weights, optimiser, schedule, random generators) goes to ``out_dir/checkpoint.pt``;
    the same call again resumes from it (``resume=False`` starts over), and a checkpoint of
    other settings is an error rather than a silent mix. ``max_examples`` keeps the first
    examples in file order, before the held-out split (see :func:`split_held_out`), whose
    questions are read by the saved reader at the end. Up to ``rerank_questions`` of them
    (0: none) then fit the weight of the reader's QA rerank (:mod:`searchkit.rerank_fit`),
    recorded with the reader so that ``search(rerank="qa")`` uses it. ``losses`` holds the
    mean loss of every ``log_every`` steps, each also passed to ``log``.
    """
    import torch

    _check_settings(
        epochs, batch_size, learning_rate, eval_fraction, max_length, stride, warmup_fraction, dropout, time_limit
    )
    say = log or logger.info
    examples = train.examples[:max_examples] if max_examples is not None else train.examples
    fit, held_out = split_held_out(examples, eval_fraction, seed)
    if not fit:
        raise ConfigError("no training examples; give a SQuAD file with questions, or raise max_examples")
    device = resolve_device(device)
    arithmetic = resolve_torch_precision(precision, device)
    used_threads = cpu_threads(threads) if device == "cpu" else torch.get_num_threads()
    # Left to choose on a multi-core CPU, the thread count is measured on the first steps (see _Loop).
    probe = [1, os.cpu_count() or 1] if device == "cpu" and threads is None and (os.cpu_count() or 1) > 1 else []
    settings = {
        "base": base, "base_location": resolve_model(base), "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "warmup_fraction": warmup_fraction, "dropout": dropout, "max_length": max_length,
        "stride": stride, "eval_fraction": eval_fraction, "max_examples": max_examples, "seed": seed,
        "time_limit": time_limit, "precision": arithmetic,
        "questions": _fingerprint(fit),
    }
    previous_threads = set_threads(used_threads)
    keep_freed_memory()
    try:
        torch.manual_seed(seed)
        tokenizer, model = load_qa_model(base, device=device, allow_untrained_head=True)
        set_dropout(model, dropout)
        features = prepare_features(tokenizer, fit, max_length, stride)
        report = TrainReport(
            Path(out_dir), 0, planned_steps=epochs * math.ceil(len(features) / batch_size), train_examples=len(fit),
            train_features=len(features), device=device, precision=arithmetic, threads=used_threads,
        )
        loop_probe = probe if report.planned_steps >= PROBE_MIN_STEPS else []
        threads_said = "" if device != "cpu" else (
            f", threads measured on the first steps: {' or '.join(map(str, loop_probe))}" if loop_probe
            else f", {used_threads} threads")
        say(f"training {base} on {len(fit)} questions ({len(features)} windows), up to {report.planned_steps} steps"
            f"{f' or {time_limit / 60:g} minutes' if time_limit else ''} on {device} ({arithmetic}"
            f"{threads_said}); {len(held_out)} questions held out")
        loop = _Loop(model, tokenizer, features, report, settings, say, device, arithmetic,
                     checkpoint_every, log_every, progress,
                     loop_probe)
        loop.run(resume)
        _save(model, tokenizer, report.out_dir)
        loop.checkpoint_path.unlink(missing_ok=True)
        if held_out:
            reader = _evaluate(report, train.subset(held_out), max_length, stride, device, arithmetic, say)
            if rerank_questions:
                _fit_rerank(report, reader, train, spread_questions(held_out, rerank_questions), say)
    finally:
        set_threads(previous_threads)
    _write_info(report, {
        **{k: v for k, v in settings.items() if k != "questions"}, "device": device, "threads": report.threads,
        "source": str(train.path) if train.path else None,
        "held_out": {"articles": sorted({e.article for e in held_out}), "questions": len(held_out)},
    })
    return report


def _fingerprint(examples: Sequence[SquadExample]) -> str:
    """A short hash of the training questions, so a checkpoint is only resumed on the same data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.id}\0{example.question}\0{example.answer_starts[0]}\0".encode())
    return digest.hexdigest()[:16]


class TrainingInterrupted(SearchkitError):
    """Training stopped by Ctrl-C; the message says where the checkpoint is and how to resume."""


class _Loop:
    """The optimisation loop, with its state saved to and restored from a checkpoint."""

    def __init__(
        self, model: Any, tokenizer: Any, features: list[dict[str, Any]], report: TrainReport,
        settings: dict[str, Any], say: Callable[[str], None], device: str, precision: str,
        checkpoint_every: float, log_every: int, progress: bool, probe: Sequence[int] = (),
    ) -> None:
        import torch

        self.model, self.tokenizer, self.features, self.report = model, tokenizer, features, report
        self.settings, self.say, self.device, self.precision = settings, say, device, precision
        self.checkpoint_every, self.log_every, self.progress = checkpoint_every, log_every, progress
        self.lengths = [len(f["input_ids"]) for f in features]
        # The fused kernel updates all parameters in one pass instead of a loop per tensor: 905 against 824 us a
        # token in an ad hoc float32 run on 2 cores, within noise in benchmarks/results/train_step.md.
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings["learning_rate"], weight_decay=0.01,
            fused=device.split(":")[0] in ("cpu", "cuda"),
        )
        self.checkpoint_path = report.out_dir / CHECKPOINT_FILE
        self.epoch = self.batch = 0
        self.elapsed = 0.0
        self.interval: list[float] = []
        self.session_steps, self.session_seconds = 0, 0.0  # this process's pace, for the ETA
        # Thread counts to time on the first steps, PROBE_STEPS each in turn, before keeping the fastest.
        self.probe = list(probe)
        self.probed: dict[int, list[float]] = {threads: [] for threads in self.probe}
        self._updating = False

    def progress_share(self) -> float:
        limit = self.settings["time_limit"]
        share = self.report.steps / self.report.planned_steps
        return max(share, self.elapsed / limit) if limit else share

    def run(self, resume: bool) -> None:
        if resume and self.checkpoint_path.is_file():
            self._restore()
        elif self.checkpoint_path.is_file():
            self.checkpoint_path.unlink()
        self.model.train()
        per_epoch = math.ceil(len(self.features) / self.settings["batch_size"])
        saved_at = self.elapsed
        with tqdm(total=self.report.planned_steps, initial=self.report.steps, unit="step", desc="training",
                  disable=not self.progress, dynamic_ncols=True) as bar:
            try:
                while self.epoch < self.settings["epochs"] and self.progress_share() < 1.0:
                    batches = epoch_batches(self.lengths, self.settings["batch_size"],
                                            self.settings["seed"] * 1_000_003 + self.epoch)
                    while self.batch < per_epoch and self.progress_share() < 1.0:
                        self._step(batches[self.batch], bar)
                        if self.elapsed - saved_at >= self.checkpoint_every:
                            self._checkpoint()
                            saved_at = self.elapsed
                    if self.batch >= per_epoch:
                        self.epoch, self.batch = self.epoch + 1, 0
                        if self.epoch < self.settings["epochs"] and self.progress_share() < 1.0:
                            self._checkpoint()
                            saved_at = self.elapsed
            except KeyboardInterrupt:
                self._interrupted()
            if self.interval:
                self._log_interval(bar)
            bar.total = self.report.steps
            bar.refresh()
        self.report.stopped_by = "epochs" if self.epoch >= self.settings["epochs"] else "time limit"
        self.report.train_seconds = self.elapsed
        self.model.eval()

    def _step(self, indices: list[int], bar: Any) -> None:
        import torch

        probing = self._probe_threads()
        started = time.perf_counter()
        batch = collate(self.tokenizer, [self.features[i] for i in indices])
        factor = learning_rate_factor(self.progress_share(), self.settings["warmup_fraction"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings["learning_rate"] * max(factor, 1e-3)
        with autocast(self.device, self.precision):
            loss = span_loss(self.model, {k: v.to(self.device) for k, v in batch.items()})
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self._updating = True
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.batch += 1
        self.report.steps += 1
        self.interval.append(loss.item())
        self._updating = False
        seconds = time.perf_counter() - started
        if probing is not None:
            self.probed[probing].append(seconds / batch["input_ids"].numel())
        self.elapsed += seconds
        self.session_steps, self.session_seconds = self.session_steps + 1, self.session_seconds + seconds
        self._show(bar)

    def _probe_threads(self) -> int | None:
        """The thread count this step is timed at while the counts are measured, else None.

        The load average says little about what two threads get: on a quiet 2-core machine
        the 1-minute average of about 1 chose one thread, and a step took 1.35 s against
        0.84 s on two; under load one thread was 2-3x faster. So each count is timed on a
        few steps (per padded token, as batches differ in length) and the fastest is kept.
        """
        if not self.probe:
            return None
        pending = [threads for threads in self.probe if len(self.probed[threads]) < PROBE_STEPS]
        if pending:
            threads = min(pending, key=lambda t: len(self.probed[t]))
            set_threads(threads)
            return threads
        best = min(self.probe, key=lambda t: statistics.median(self.probed[t]))
        set_threads(best)
        self.report.threads = best
        self.say("threads: " + ", ".join(
            f"{t}: {statistics.median(self.probed[t]) * 1e6:.0f} us per token" for t in self.probe) + f"; keeping {best}")
        self.probe = []
        return None

    def _show(self, bar: Any) -> None:
        report, limit = self.report, self.settings["time_limit"]
        if limit:
            # The bar's total (and so its ETA): the steps this pace reaches before the time limit, if fewer.
            reachable = report.steps + max(0.0, limit - self.elapsed) * self.session_steps / self.session_seconds
            bar.total = max(report.steps, min(report.planned_steps, math.ceil(reachable)))
        bar.update(report.steps - bar.n)
        if len(self.interval) == self.log_every:
            self._log_interval(bar)

    def _log_interval(self, bar: Any) -> None:
        report = self.report
        report.losses.append(sum(self.interval) / len(self.interval))
        self.interval = []
        bar.set_postfix(loss=f"{report.losses[-1]:.3f}", epoch=self.epoch + 1)
        self.say(f"step {report.steps}/{bar.total} epoch {self.epoch + 1} loss {report.losses[-1]:.4f}")

    def _checkpoint(self) -> None:
        import torch

        self.report.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "version": CHECKPOINT_VERSION, "settings": self.settings, "epoch": self.epoch, "batch": self.batch,
            "steps": self.report.steps, "elapsed": self.elapsed, "losses": self.report.losses,
            "interval": self.interval, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        temporary = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.checkpoint_path)

    def _restore(self) -> None:
        import torch

        try:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        except Exception as exc:  # a truncated or foreign file: say so instead of a torch traceback
            raise ConfigError(
                f"cannot read the checkpoint {self.checkpoint_path} ({type(exc).__name__}); "
                "delete it or pass --restart to train from the start"
            ) from exc
        if state.get("version") != CHECKPOINT_VERSION or state.get("settings") != self.settings:
            theirs = state.get("settings") or {}
            differ = sorted(k for k in set(theirs) | set(self.settings) if theirs.get(k) != self.settings.get(k))
            raise ConfigError(
                f"{self.checkpoint_path} is from a run with other settings ({', '.join(differ) or 'version'}); "
                "pass --restart to start over, or give another --out"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.batch, self.elapsed = state["epoch"], state["batch"], state["elapsed"]
        self.report.steps, self.report.losses, self.interval = state["steps"], state["losses"], state["interval"]
        self.report.resumed_from = self.report.steps
        self.say(f"resuming from step {self.report.steps} (epoch {self.epoch + 1}, {self.elapsed:.0f} s trained)")

    def _interrupted(self) -> None:
        if not self._updating:  # weights are consistent between updates: keep this step
            self._checkpoint()
        if not self.checkpoint_path.is_file():
            raise TrainingInterrupted("training interrupted before its first checkpoint; nothing was kept") from None
        raise TrainingInterrupted(
            f"training interrupted at step {self.report.steps}; the checkpoint in {self.checkpoint_path} "
            "resumes it: run the same command again"
        ) from None


def _save(model: Any, tokenizer: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def _evaluate(
    report: TrainReport, held_out: SquadData, max_length: int, stride: int, device: str, precision: str,
    say: Callable[[str], None],
) -> SpanReader:
    """Score the saved reader on the held-out questions, loading it back as users will.

    The questions are read once and decoded with every answer length limit up to 30
    tokens, and the reader keeps the limit with the best exact match plus F1 (the longer
    on a tie): the head learns where answers start and end, but not how long they
    usually are, and too long a limit lets a confident start pair with a distant end.
    """
    reader = SpanReader(
        report.out_dir, max_length=max_length, stride=stride, max_question_tokens=MAX_QUESTION_TOKENS, device=device,
        precision=precision,
    )
    lengths = range(1, DEFAULT_MAX_ANSWER_TOKENS + 1)
    scores = score_gold_at_lengths(reader, held_out, lengths)
    best = max(lengths, key=lambda length: (scores[length]["exact_match"] + scores[length]["f1"], length))
    reader.max_answer_tokens = report.max_answer_tokens = best
    report.scores_by_answer_tokens = {
        length: {key: scores[length][key] for key in ("exact_match", "f1")} for length in lengths
    }
    report.eval_questions = len(held_out.examples)
    report.exact_match, report.f1 = scores[best]["exact_match"], scores[best]["f1"]
    default = scores[DEFAULT_MAX_ANSWER_TOKENS]
    say(f"held out {report.eval_questions} questions: exact match {report.exact_match:.1f}, F1 {report.f1:.1f} "
        f"with answers of up to {best} tokens, fitted on them ({default['exact_match']:.1f} and "
        f"{default['f1']:.1f} with up to {DEFAULT_MAX_ANSWER_TOKENS})")
    return reader


def spread_questions(examples: Sequence[SquadExample], count: int) -> list[SquadExample]:
    """At most ``count`` of ``examples``, taken evenly across them (so across every held-out article)."""
    if len(examples) <= count:
        return list(examples)
    return [examples[i * len(examples) // count] for i in range(count)]


def _fit_rerank(
    report: TrainReport, reader: SpanReader, data: SquadData, questions: list[SquadExample], say: Callable[[str], None]
) -> None:
    from searchkit.rerank_fit import fit_rerank_weight

    say(f"fitting the QA rerank weight on {len(questions)} held-out questions over {len(data.paragraphs)} paragraphs")
    fit = fit_rerank_weight(reader, data, questions)
    report.rerank = fit.to_dict()
    retrieval = fit.ndcg_at_10[str(1.0)]
    say(f"QA rerank weight {fit.weight:g}: nDCG@10 {retrieval:.4f} by retrieval alone, "
        f"{retrieval + fit.gain:.4f} with the rerank")


def _write_info(report: TrainReport, settings: dict[str, Any]) -> None:
    info = {
        "settings": settings, "report": report.to_dict(),
        **({"rerank": report.rerank} if report.rerank else {}),
        **({"max_answer_tokens": report.max_answer_tokens} if report.max_answer_tokens else {}),
    }
    (report.out_dir / READER_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
