"""What runs on a Ray node for `edgeseq compare --ray` (compare/ray_sweep.py drives it): the host
facts, an export, and one profile point, each a plain function that the driver wraps as a Ray task.

An artifact travels as its directory packed into bytes (the Ray object store carries them) and is
checked against the SHA-256 of every file in its manifest on arrival; a node that already sees the
driver's directory (shared storage) or holds the same artifact in its cache copies nothing.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ..artifact import manifest as mf
from ..errors import ArtifactError, EdgeseqError
from ..profile.result import ProfileResult
from ..profile.runner import case_key, iter_profile
from .suite import Suite
from .sweep import Target, config, ensure_artifact, failed, stamp

CACHE_ENV = "EDGESEQ_RAY_CACHE"  # where a node keeps arrived artifacts and its exports (default: the temp dir)


def node_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "edgeseq-ray")


def digest(art: Path) -> str | None:
    """SHA-256 of the artifact's manifest, which holds every file's SHA-256: the artifact's identity."""
    try:
        return mf.identity(art)
    except OSError:
        return None


def pack(art: Path) -> bytes:
    """The artifact directory as an uncompressed tar (graphs barely compress)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(art.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(art)), recursive=False)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Write a packed artifact to `dest` through a sibling folder renamed when whole and verified,
    so a kill mid-write never leaves a directory that looks finished."""
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(part, filter="data")
    mf.verify(part)  # every file's size and full SHA-256
    if dest.exists():
        shutil.rmtree(dest)
    part.rename(dest)
    return dest


class NeedsBytes(Exception):
    """The node has no copy of the artifact and none was sent: the driver sends the point again with one."""


def arrive(path: str, want: str, box: list[Any], shared: bool) -> tuple[Path, str]:
    """The artifact on this node and how it came: the driver's own directory where this node sees it
    (`shared`), else this node's cache, else the packed bytes from the object store (box[0]; an empty
    box raises NeedsBytes)."""
    import ray

    here = Path(path)
    if shared and digest(here) == want:
        mf.verify(here)
        return here, "shared storage"
    cached = node_cache() / "artifacts" / want[:16]
    if digest(cached) == want:
        try:
            mf.verify(cached)
            return cached, "node cache"
        except ArtifactError:
            pass  # altered since: fetch it again
    if not box:
        raise NeedsBytes(path)
    unpack(ray.get(box[0]), cached)
    if digest(cached) != want:
        raise ArtifactError(f"the artifact that reached {socket.gethostname()} is not the one sent",
                            "run the sweep again; if it repeats, check the node's disk")
    return cached, "object store"


def host_facts(bandwidth_threads: int | None) -> dict[str, Any]:
    """This node's host facts (profile/runner.py host_info) and, unless None, the copy bandwidth
    measured here with that many threads."""
    import ray

    from .. import __version__
    from ..profile.runner import host_info

    facts = dict(host_info(), hostname=socket.gethostname(), node_id=ray.get_runtime_context().get_node_id(),
                 edgeseq_version=__version__)
    if bandwidth_threads:
        from ..profile.bandwidth import copy_gb_s

        facts["bandwidth_gb_s"] = round(copy_gb_s(threads=bandwidth_threads), 2)
    return facts


def export(source: str, fmt: str, weights: str, parity_steps: int, lengths: tuple[list[int], int],
           engine: str | None = None) -> tuple[bytes | None, str | None]:
    """Export on this node (in a child process, as the local sweep does) and return the packed
    artifact, or None and the one-line error."""
    try:
        art = ensure_artifact(source, fmt, weights, node_cache() / "exports", parity_steps, lambda _: None, lengths,
                              engine)
        return pack(art), None
    except EdgeseqError as e:
        return None, e.message


def point(suite: Suite, t: Target, n: int, path: str, want: str, box: list[Any], shared: bool,
          facts: dict[str, Any]) -> ProfileResult | None:
    """Profile input length `n` of target `t` on this node: the stored row, measured or failed, with
    this node's host facts (its artifact named by the driver's `path`, so rows match a local sweep's);
    None when the node needs the artifact's bytes (`box` empty and no copy here)."""
    try:
        art, via = arrive(path, want, box, shared)
        rows = list(iter_profile(art, config(suite, [n]), None, facts.get("bandwidth_gb_s"),
                                 time_limit_s=suite.time_limit))
        if not rows:
            raise ArtifactError(f"{path} gave no result for input length {n}", "profile it alone to see why")
        r = stamp(rows[0], t)
        r.artifact, r.key = path, case_key(path, n, suite.output_len, 1)
        r.extra["artifact_via"] = via
    except EdgeseqError as e:
        r = failed(suite, t, n, e.message)
    except MemoryError:
        r = failed(suite, t, n, "out of memory")
    except NeedsBytes:
        return None
    r.extra["host"] = facts
    return r
