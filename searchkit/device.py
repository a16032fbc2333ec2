"""Where a torch model runs (CPU or GPU), in which arithmetic, and on how many CPU threads.

Training and span reading share these choices. ``auto`` picks a GPU when torch sees one,
and bfloat16 autocast wherever it is native: on a GPU that supports it, and on CPUs with
AVX512-BF16 or AMX, where training a MiniLM reader ran about 2x faster per step than
float32 (see ``benchmarks/results/qa.md``). Without native support bfloat16 is emulated and
slower, so float32 is kept.

On a CPU shared with other work, torch's threads spin-wait for each other: with the other
processes already filling the cores, one thread ran a training step 2-3x faster than two.
:func:`cpu_threads` therefore uses only the cores the load average leaves free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from searchkit.errors import ConfigError
from searchkit.precision import bf16_cpu_flags

__all__ = [
    "DEVICE_CHOICES", "TORCH_PRECISIONS", "autocast", "cpu_threads", "keep_freed_memory", "resolve_device",
    "resolve_torch_precision", "set_threads",
]

DEVICE_CHOICES = ("auto", "cpu", "cuda")
TORCH_PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | None) -> str:
    """``cuda`` for ``auto`` (or None) when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    chosen = (device or "auto").strip().lower()
    base = chosen.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {device!r}; use {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if base == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no GPU here; use --device cpu or auto")
    return chosen


def resolve_torch_precision(precision: str, device: str) -> str:
    """``bf16`` or ``fp32``: ``auto`` is bf16 where ``device`` runs it natively."""
    import torch

    if precision not in TORCH_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(TORCH_PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_cpu_flags() else "fp32"


@contextmanager
def autocast(device: str, precision: str) -> Iterator[None]:
    """bfloat16 autocast on ``device`` when ``precision`` is bf16 (weights and optimiser stay float32)."""
    import torch

    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def cpu_threads(requested: int | None = None) -> int:
    """Threads for torch on the CPU: ``requested``, or the cores the 1-minute load average leaves free (at least 1)."""
    cores = os.cpu_count() or 1
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"threads must be at least 1, got {requested}")
        return requested
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, round(cores - busy)))


def set_threads(threads: int) -> Any:
    """Set torch's CPU threads and return the previous count, to put back afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Have glibc keep up to ``limit`` bytes of freed memory for reuse; False where it is not glibc.

    A training step's tensors change size with every batch of windows, and glibc maps each
    large one afresh and hands it back when freed: the page faults took a quarter of the CPU
    time, and keeping the memory made a float32 step 7% faster on 2 cores (1,010 against 944
    us a token, ``benchmarks/results/train_step.md``). Process-wide, so only for a process
    that trains.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
