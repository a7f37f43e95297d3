"""The compute side of the napkin math: the fp32 rate a large matrix product reaches on this machine.

A prefill of fp32 weights is mostly matrix products of the prompt with the weights, so the TTFT of a
model can hardly be shorter than its FLOPs to the first token (`cost.flops`) / this rate. Measured with
numpy's BLAS on a square product big enough that its packing and edges cost little (2048: 17 GFLOP),
best of `reps`, on `threads` threads (set through threadpoolctl where installed, else numpy's default).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np


def gemm_gflops(n: int = 2048, threads: int = 2, reps: int = 5) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    best = float("inf")
    with _threads(threads):
        a @ b  # the BLAS's threads and buffers start before timing
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _threads(threads: int) -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the runtime install: numpy's own thread count
        return contextlib.nullcontext()
    return threadpool_limits(threads)
