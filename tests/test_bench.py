"""A smoke run of scripts/bench at tiny sizes: it keeps the benchmarks from rotting.

No assertion on time: the machines are shared and noisy; `scripts/bench` measures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.bench
def test_every_benchmark_runs_at_tiny_sizes():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--tiny"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("idle", "small", "large", "replay", "listing", "startup"):
        assert f"== {name}:" in result.stdout
    assert "wrote" not in result.stdout  # a smoke run never rewrites BENCHMARKS.md
    assert not list(ROOT.glob("ckpt-bench-*"))


def test_an_unknown_benchmark_is_a_usage_error():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown benchmark nope" in result.stderr


@pytest.mark.bench
def test_the_gpu_check_says_there_is_nothing_to_check_without_cuda():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_gpu.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    import torch

    if torch.cuda.is_available():  # a GPU machine runs the check itself
        assert "CUDA tensor, capture throughput vs torch.save" in result.stdout
    else:
        assert result.stdout.startswith("no CUDA device here: nothing to check")
