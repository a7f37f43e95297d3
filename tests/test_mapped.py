"""host/mapped.py: resident pages of read-only file mappings are given back, their content kept."""
from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from edgeseq.runtimes.host import mapped

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")
PAGE = mmap.PAGESIZE


def _resident(start: int) -> int:
    """Rss (bytes) of this process's mapping that begins at `start`."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                inside = int(head.split("-")[0], 16) == start
            elif inside and head == "Rss:":
                return int(line.split()[1]) << 10
    raise AssertionError("mapping not found")


def _start(path: Path) -> int:
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith(str(path)):
                return int(line.split("-")[0], 16)
    raise AssertionError("mapping not found")


def test_release_drops_resident_pages_and_keeps_content(tmp_path: Path) -> None:
    data = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert sum(m[i] for i in range(0, len(data), PAGE)) >= 0  # touch every page
        start = _start(path.resolve())
        assert _resident(start) >= len(data) // 2
        assert mapped.release([str(tmp_path.resolve())]) >= len(data)
        assert _resident(start) < len(data) // 8
        assert m[:] == data  # faulted back from the page cache, unchanged
        assert mapped.release([str(tmp_path / "elsewhere")]) == 0  # other folders' mappings are left alone


def test_writable_mappings_are_never_released(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * (1 << 20))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        m[:4] = b"kept"  # a private change: dropping the page would lose it
        assert mapped.mappings([str(tmp_path.resolve())]) == []
        assert mapped.release([str(tmp_path.resolve())]) == 0
        assert m[:4] == b"kept"


def test_released_block_releases_on_exit(tmp_path: Path) -> None:
    data = b"\1" * (2 << 20)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        with mapped.Released([tmp_path], interval=60) as r:
            assert sum(m[i] for i in range(0, len(data), PAGE)) == len(data) // PAGE
        assert r.released >= len(data)
        assert _resident(_start(path.resolve())) < len(data) // 4
