"""Memory-bandwidth estimates for the napkin math: a numpy copy (bytes read + written / best time) and a
read-only stream (bytes read / best time)."""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


def copy_gb_s(size_mib: int = 1024, threads: int = 2, reps: int = 5) -> float:
    n = size_mib * 2**20 // 4
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    np.copyto(dst, src)  # fault every page in before timing
    edges = np.linspace(0, n, threads + 1).astype(np.int64)

    def part(i: int) -> None:
        np.copyto(dst[edges[i]:edges[i + 1]], src[edges[i]:edges[i + 1]])

    return 2 * n * 4 / _best_time(part, threads, reps) / 1e9


def read_gb_s(size_mib: int = 1024, threads: int = 2, reps: int = 5) -> float:
    """Bytes read / best time when the threads only read (a max over disjoint slices): what a decode step,
    which streams its weights and writes little, can hope for. On a machine whose writes are cheap the
    copy figure (read + written bytes) is higher than any read stream."""
    n = size_mib * 2**20 // 4
    data = np.ones(n, np.float32)
    edges = np.linspace(0, n, threads + 1).astype(np.int64)

    def part(i: int) -> None:
        data[edges[i]:edges[i + 1]].max()

    return n * 4 / _best_time(part, threads, reps) / 1e9


def _best_time(part: Any, threads: int, reps: int) -> float:
    """Best wall time over `reps` of running part(0) .. part(threads - 1) on their own threads at once."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        workers = [threading.Thread(target=part, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t)
    return best
