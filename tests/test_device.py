"""Where torch models run: a GPU when there is one, bf16 where native, threads the load leaves free."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

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


# Run in a fresh process: in a long one (the test suite) the heap is fragmented, and where a large block lands
# depends on what came before.
_FREED_MEMORY_CHECK = """
import numpy as np
from pathlib import Path
import os
from searchkit.device import keep_freed_memory

def resident():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

before = resident()
np.ones(256 << 20, dtype=np.uint8)  # written, so resident, and freed at once
default = resident() - before
assert keep_freed_memory()
np.ones(256 << 20, dtype=np.uint8)
print(default >> 20, (resident() - before) >> 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not Path("/proc/self/statm").is_file(),
                    reason="glibc's setting, observed through /proc")
def test_keep_freed_memory_keeps_a_freed_block_for_reuse() -> None:
    result = subprocess.run([sys.executable, "-c", _FREED_MEMORY_CHECK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    default_mib, kept_mib = map(int, result.stdout.split())
    assert default_mib < 64  # glibc's default: a block this large is unmapped when freed
    assert kept_mib > 200  # kept for the next step's tensors
