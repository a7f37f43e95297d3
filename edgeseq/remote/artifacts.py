"""An artifact copied once into a device's cache, CACHE/artifacts/<key>, keyed by its manifest's
SHA-256 (the manifest holds every file's hash, so the same key means the same files); the copy is
resumable and every file is checked against the manifest's SHA-256 on arrival (copy.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..artifact import manifest as mf
from ..errors import ArtifactError
from .copy import CopyStats, push
from .install import Remote, check_space


def key(artifact: str | Path) -> str:
    """The cache key of an artifact: its manifest's SHA-256, shortened."""
    return mf.identity(artifact)[:24]


def ensure(remote: Remote, artifact: str | Path,
           progress: Callable[[int], None] | None = None) -> tuple[str, CopyStats]:
    """The artifact's folder on the device, copied there unless it already is; and what was sent."""
    d = Path(artifact)
    m = mf.read(d)
    files: dict[str, tuple[Path, str]] = {}
    for name, info in m.files.items():
        if not info.get("sha256"):
            raise ArtifactError(f"{d}'s manifest has no SHA-256 for {name}, so its copy could not be checked",
                                "re-export the artifact with this edgeseq")
        files[name] = (d / name, info["sha256"])
    files[mf.MANIFEST] = (d / mf.MANIFEST, mf.identity(d))
    final = f"{remote.cache}/artifacts/{key(d)}"
    size = sum(p.stat().st_size for p, _ in files.values())
    check_space(remote.target, remote.probe, size, f"copying {d.name}")
    return final, push(remote.target, files, final, progress, what=f"artifact {d.name}")
