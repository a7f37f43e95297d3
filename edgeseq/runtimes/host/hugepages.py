"""Transparent huge pages for the memory an engine loads its weights into (Linux; elsewhere a no-op).

A decode step reads every weight once. In 4 kB pages SmolLM2-135M's fp32 weights span ~130k pages,
far more than the TLB holds, so each step walks page tables all the way through; in 2 MB pages they
span ~270. Engines allocate weights with malloc, which on a kernel whose THP mode is "madvise"
(Ubuntu's default) gets 4 kB pages only. `collapse` asks for huge pages for the anonymous mappings a
load filled (their resident size in /proc/self/smaps grew by 8 MB or more) that are mostly resident:
madvise(MADV_HUGEPAGE), so that later faults in them get huge pages, then MADV_COLLAPSE (Linux 6.1+),
which moves what is already there into huge pages now. The move lengthens the load, and only
some engines decode faster for it (benchmarks/huge_pages.py; figures in docs/performance.md), so
engines opt in (`huge_pages_help`): ONNX Runtime's dynamic-shape backend does.

The engine option `huge_pages` (every engine has it) turns it off or on; unset, the engine's default.
"""
from __future__ import annotations

import ctypes
import sys
import time
from typing import Any

MADV_HUGEPAGE, MADV_COLLAPSE = 14, 25
HUGE = 2 << 20
MIN_BYTES = 4 * HUGE  # smaller mappings are not worth a system call
RESIDENT = 0.9  # collapse a mapping only when this share of it is in memory: a huge page fills holes


def wanted(asked: bool | None, engine_default: bool) -> bool:
    """The engine option `huge_pages` where set (True / False), else the engine's default; Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    return engine_default if asked is None else bool(asked)


def snapshot() -> dict[tuple[int, int], int]:
    """Anonymous writable mappings of this process: (start, end) -> resident bytes."""
    out: dict[tuple[int, int], int] = {}
    try:
        with open("/proc/self/smaps") as f:
            key = None
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):  # a mapping's first line
                    parts = line.split()
                    anon = len(parts) < 6 or parts[5] == "[heap]"
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    key = (lo, hi) if anon and "w" in parts[1] and hi - lo >= MIN_BYTES else None
                elif key is not None and head == "Rss:":
                    out[key] = int(line.split()[1]) << 10
    except OSError:
        return {}
    return out


def collapse(before: dict[tuple[int, int], int]) -> dict[str, Any]:
    """Back the mostly resident mappings filled since `before` with huge pages; say what was done."""
    t = time.perf_counter()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return {"status": "no madvise here", "mb": 0}
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = failed = 0
    for (lo, hi), rss in snapshot().items():
        if rss - before.get((lo, hi), 0) < MIN_BYTES or rss < RESIDENT * (hi - lo):
            continue  # not filled by this load (a mapping reused from an earlier one may be), or sparse
        a, b = -(-lo // HUGE) * HUGE, hi // HUGE * HUGE  # whole huge pages inside the mapping
        if b - a < HUGE or madvise(a, b - a, MADV_HUGEPAGE) != 0:
            continue
        if madvise(a, b - a, MADV_COLLAPSE) == 0:
            done += b - a
        else:  # kernel before 6.1, THP "never", or no huge page free: later faults may still get them
            failed += b - a
    status = "collapsed" if done else ("not collapsed (kernel or THP settings)" if failed else "nothing to do")
    return {"status": status, "mb": done >> 20, "not_collapsed_mb": failed >> 20,
            "ms": round((time.perf_counter() - t) * 1e3, 1)}
