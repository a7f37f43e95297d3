"""Where engines keep what they compile for later loads, kept under a size cap and a free-space margin."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_root() -> Path:
    """The folder that holds every engine's cache (XDG cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "edgeseq"


def cache_dir(engine: str) -> Path:
    """Where an engine keeps what it compiles or packs for reuse by later loads."""
    return cache_root() / engine


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


CACHE_MARGIN = 1 << 30  # free bytes kept beyond what a cache entry needs
_LOW_DISK_SAID: set[str] = set()


def cache_cap() -> int:
    """Bytes an engine's cache may hold (EDGESEQ_CACHE_GB, default 4): OpenVINO writes a blob of about
    the model's size per model, precision and edgeseq graph form, so an uncapped cache keeps growing."""
    try:
        return int(float(os.environ.get("EDGESEQ_CACHE_GB", "4")) * 2**30)
    except ValueError:
        return 4 << 30


def evict(folder: Path, room: int) -> list[Path]:
    """Delete the least recently used files of `folder` (last access or change, whichever is later)
    until it holds at most cache_cap() - room bytes; return what was deleted. A file another process
    has open stays readable by it until closed."""
    if not folder.is_dir():
        return []
    entries = sorted((max(st.st_atime, st.st_mtime), st.st_size, f)
                     for f in folder.rglob("*") if f.is_file() for st in (f.stat(),))
    total, limit, gone = sum(size for _, size, _ in entries), cache_cap() - room, []
    for _, size, f in entries:
        if total <= limit:
            break
        try:
            f.unlink()
        except OSError:
            continue
        total -= size
        gone.append(f)
    return gone


def cache_room(engine: str, need_bytes: int) -> Path | None:
    """`cache_dir(engine)` when its disk has room for an entry of about `need_bytes` plus a margin, else
    None (and a note on stderr): the engine then runs uncached (engines read a blob back without
    checking it, so one cut short by a full disk must not be written). Least recently used entries
    are evicted first so that the cache stays under `cache_cap()`."""
    folder = cache_dir(engine)
    evict(folder, need_bytes)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return None
    if free >= need_bytes + CACHE_MARGIN:
        return folder
    if engine in _LOW_DISK_SAID:  # once per engine and process, not once per graph
        return None
    _LOW_DISK_SAID.add(engine)
    from ...console import console

    console.result(f"edgeseq: {free / 2**20:.0f} MiB free under {probe}; not caching {engine}'s compiled graphs "
                   f"(needs ~{need_bytes / 2**20:.0f} MiB + {CACHE_MARGIN >> 20} MiB spare)")
    return None
