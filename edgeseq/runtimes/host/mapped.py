"""Pages of read-only file mappings given back while an engine loads (Linux; elsewhere a no-op).

Some engines map their weight files (OpenVINO maps an IR's .bin and a compiled blob) and, while they
compile, copy every weight into a layout of their own, then keep the mapping open. Each page of the
file read during that copy stays in the process's resident set, so a load's peak and the resident
size after it count the weights twice although the engine only reads a few of the mapped pages
again (an embedding table's rows, say). madvise(MADV_PAGEOUT) reclaims those pages: a clean page of
a file is dropped and a page read later faults back in from the file with the same content.
`Released` does that for the mappings of given folders while a block runs (a thread, every
`interval` seconds, so that the peak during the copy stays low too) and once more when it ends.

MADV_PAGEOUT, not MADV_DONTNEED: the engine maps and unmaps while the thread runs, so a range read
from /proc/self/maps may hold anonymous memory (a buffer of the engine's) by the time madvise runs.
DONTNEED would zero such memory under the engine; PAGEOUT never changes what memory holds (anonymous
pages are swapped out, or left where there is no swap). Kernels before 5.4 lack it: nothing is released.
"""
from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

MADV_PAGEOUT = 21  # Linux 5.4+: reclaim the pages, content kept whatever the range holds
INTERVAL = 0.02  # seconds between releases while the block runs


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def mappings(folders: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of this process's read-only mappings of files under `folders`."""
    prefixes = tuple(f.rstrip("/") + "/" for f in folders)
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or "w" in parts[1] or not parts[5].startswith(prefixes):
                    continue  # a writable mapping may hold changes only this process has: never dropped
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    except OSError:
        return []
    return out


def release(folders: Iterable[str]) -> int:
    """Drop this process's resident pages of read-only mappings of files under `folders`; the bytes
    of the mappings released (0 where madvise is not available)."""
    madvise = _madvise()
    if madvise is None:
        return 0
    done = 0
    for lo, hi in mappings(folders):
        if madvise(lo, hi - lo, MADV_PAGEOUT) == 0:
            done += hi - lo
    return done


class Released:
    """Within the block, pages of read-only mappings of files under `folders` are released every
    `interval` seconds (a daemon thread: the engine's load must release the GIL, as OpenVINO's
    compile does); released once more on exit."""

    def __init__(self, folders: Iterable[str | Path], interval: float = INTERVAL) -> None:
        self.folders = [str(Path(f).resolve()) for f in folders]
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.released = 0  # bytes of mappings released at exit

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            release(self.folders)

    def __enter__(self) -> Released:
        if _madvise() is not None and self.folders:
            self._thread = threading.Thread(target=self._run, name="edgeseq-release-mapped", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
                 ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.released = release(self.folders)
