"""Huge pages for loaded weights (runtimes/hugepages.py): what is collapsed, what is left alone."""
from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np
import pytest

from edgeseq.runtimes.host import hugepages

MB = 1 << 20


def _anon(size: int) -> tuple[mmap.mmap, np.ndarray]:
    """A private anonymous mapping of its own (as malloc makes for large blocks), seen as bytes."""
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return m, np.frombuffer(m, np.uint8)


def _huge_kb(a: np.ndarray) -> int:
    """AnonHugePages of the mapping holding `a`."""
    addr, inside = a.ctypes.data, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    return 0


def _probe() -> str | None:
    """Why this kernel cannot collapse a mapping into huge pages, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "huge pages are collapsed on Linux only"
    try:
        mode = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "no transparent huge pages in this kernel"
    if "[never]" in mode:
        return "transparent huge pages are set to never"
    m, a = _anon(8 * MB)
    a[:] = 1
    libc = ctypes.CDLL(None, use_errno=True)
    start = -(-a.ctypes.data // hugepages.HUGE) * hugepages.HUGE
    ok = libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(4 * MB), hugepages.MADV_COLLAPSE) == 0
    del a
    m.close()
    return None if ok else "this kernel has no MADV_COLLAPSE (Linux 6.1+)"


NO_COLLAPSE = _probe()


@pytest.mark.skipif(NO_COLLAPSE is not None, reason=str(NO_COLLAPSE))
def test_filled_mapping_collapses_and_keeps_its_contents() -> None:
    before = hugepages.snapshot()
    m, a = _anon(24 * MB)
    a[:] = np.arange(a.size, dtype=np.uint64).astype(np.uint8)  # every page touched, contents to check
    expect = a.copy()
    assert _huge_kb(a) == 0  # THP "madvise": malloc-like mappings start in 4 kB pages
    out = hugepages.collapse(before)
    assert out["status"] == "collapsed" and out["mb"] >= 20, out
    assert _huge_kb(a) >= 20 * 1024
    assert np.array_equal(a, expect)
    del a
    m.close()


@pytest.mark.skipif(NO_COLLAPSE is not None, reason=str(NO_COLLAPSE))
def test_sparse_and_earlier_mappings_are_left_alone() -> None:
    old_m, old = _anon(16 * MB)
    old[:] = 1  # filled before the snapshot: not this load's
    before = hugepages.snapshot()
    sparse_m, sparse = _anon(32 * MB)
    sparse[:: 64 * 1024] = 1  # one page in 16 resident: a huge page would fill the holes
    hugepages.collapse(before)
    assert _huge_kb(old) == 0 and _huge_kb(sparse) == 0
    del old, sparse
    old_m.close()
    sparse_m.close()


def test_switch() -> None:
    """The engine option huge_pages where set, else the engine's default; Linux only."""
    linux = sys.platform.startswith("linux")
    assert hugepages.wanted(None, True) == linux and not hugepages.wanted(None, False)  # the engine's default
    assert not hugepages.wanted(False, True)
    assert hugepages.wanted(True, False) == linux
