"""Resident memory of this process: current RSS, the peak over a span, and a profile's breakdown of it.

The peak comes from the kernel's high-water mark (VmHWM), reset at the start of the span through
/proc/self/clear_refs, so a short spike (an engine reading a graph file while it builds a session)
is never missed; where that is not available a thread polls the current RSS every 10 ms.
"""
from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:  # not Linux: fall back to the process-lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5 = reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


class PeakRSS:
    """`peak_mb` is the highest RSS inside the block (readable while the block runs).

    Unlike ru_maxrss (a lifetime peak), each artifact of a multi-artifact profile gets its own peak."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self._polled = interval, 0.0
        self._exact = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @property
    def peak_mb(self) -> float:
        hwm = _hwm_mb() if self._exact else None
        return max(self._polled, hwm or 0.0, rss_mb())

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._polled = max(self._polled, rss_mb())

    def __enter__(self) -> "PeakRSS":
        self._exact = _reset_hwm() and _hwm_mb() is not None
        self._polled = rss_mb()
        if not self._exact:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self._final = self.peak_mb


@dataclass(frozen=True)
class Loaded:
    """RSS (MB) around an artifact's load: before it (interpreter and engine library), its peak, after it."""
    before_mb: float
    peak_mb: float
    after_mb: float

    def breakdown(self, generate_peak_mb: float, cache_bytes: int, estimate: Any) -> dict[str, Any]:
        """A case's memory: the load's peak apart from the generation's, and the generation's peak split into
        runtime (before the load), weights (what the load left resident: the weights as the engine holds them
        and anything else it built), the KV cache at the case's longest length (computed: one float32 copy)
        and the workspace (the rest, measured); beside it the estimate --max-memory checks (MB)."""
        cache = cache_bytes / 2**20
        return {"peak_mb": round(max(self.peak_mb, generate_peak_mb), 1), "load_peak_mb": round(self.peak_mb, 1),
                "generate_peak_mb": round(generate_peak_mb, 1), "runtime_mb": round(self.before_mb, 1),
                "weights_mb": round(self.after_mb - self.before_mb, 1), "kv_cache_mb": round(cache, 1),
                "workspace_mb": round(max(0.0, generate_peak_mb - self.after_mb - cache), 1),
                "estimate_mb": estimate.as_mb()}
