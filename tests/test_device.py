"""Where torch models run: a GPU when there is one, bf16 where native, threads the load leaves free."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from searchkit import device
from searchkit.errors import ConfigError


def test_auto_picks_a_gpu_only_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == device.resolve_device(None) == "cpu"
    with pytest.raises(ConfigError, match="no GPU.*--device cpu"):
        device.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == "cuda" and device.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        device.resolve_device("tpu")


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "bf16_cpu_flags", lambda: ["avx512_bf16"])
    assert device.resolve_torch_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(device, "bf16_cpu_flags", lambda: [])
    assert device.resolve_torch_precision("auto", "cpu") == "fp32"
    assert device.resolve_torch_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        device.resolve_torch_precision("fp16", "cpu")


def test_threads_are_the_cores_the_load_leaves_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (5.2, 1.0, 1.0))
    assert device.cpu_threads() == 3
    monkeypatch.setattr(device.os, "getloadavg", lambda: (30.0, 1.0, 1.0))
    assert device.cpu_threads() == 1
    assert device.cpu_threads(6) == 6
    with pytest.raises(ConfigError):
        device.cpu_threads(0)


GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_keep_freed_memory_keeps_a_freed_block_for_reuse() -> None:
    if not Path("/proc/self/statm").is_file() or not device.keep_freed_memory(GLIBC_DEFAULT_THRESHOLD):
        pytest.skip("needs glibc and /proc to observe")
    try:
        before = _resident_bytes()
        buffer = np.ones(256 << 20, dtype=np.uint8)
        del buffer
        still_held = _resident_bytes() - before  # the default: a block this large is unmapped when freed
        assert still_held < 64 << 20
        assert device.keep_freed_memory()
        buffer = np.ones(256 << 20, dtype=np.uint8)
        del buffer
        assert _resident_bytes() - before > 200 << 20  # kept for the next step's tensors
    finally:
        device.keep_freed_memory(GLIBC_DEFAULT_THRESHOLD)
