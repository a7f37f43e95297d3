"""Memory-bandwidth estimate for the napkin math: a numpy copy, bytes read + written / best time."""
from __future__ import annotations

import threading
import time

import numpy as np


def copy_gb_s(size_mib: int = 1024, threads: int = 2, reps: int = 5) -> float:
    n = size_mib * 2**20 // 4
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    np.copyto(dst, src)  # fault every page in before timing
    edges = np.linspace(0, n, threads + 1).astype(np.int64)

    def part(i: int) -> None:
        np.copyto(dst[edges[i]:edges[i + 1]], src[edges[i]:edges[i + 1]])

    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        workers = [threading.Thread(target=part, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t)
    return 2 * n * 4 / best / 1e9
