"""Make sure a remote device has a runtime-only install of this edgeseq (the same files, by SHA-256 of
its wheel) with the engine extras a run needs, in a venv under the device's cache folder.

The venv (CACHE/venv-pyXY) records what it holds in a marker file; when that matches, nothing is
gathered or copied. Otherwise the wheels (wheels.py) are copied into CACHE/wheels/ (copy.py:
resumable, verified) and installed with pip from those files only, never from an index.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact.manifest import sha256
from ..errors import RemoteError
from . import wheels
from .copy import CopyStats, push
from .target import Target

MIN_PYTHON = (3, 10)  # pyproject's requires-python
FREE_FACTOR = 4  # installed packages take about this many times their wheels' bytes


@dataclass
class Remote:
    """A device ready to run edgeseq: its Python (the venv's), what the probe found, what was copied."""
    target: Target
    python: str
    probe: dict[str, Any]
    copied: CopyStats = field(default_factory=CopyStats)

    @property
    def cache(self) -> str:
        return str(self.probe["cache"])


def check_python(target: Target, probe: dict[str, Any]) -> None:
    """Refuse a Python edgeseq cannot run on, naming the fix."""
    version = tuple(probe.get("python") or ())
    if version < MIN_PYTHON or probe.get("implementation", "CPython") != "CPython":
        found = ".".join(str(x) for x in version) or "?"
        raise RemoteError(f"{target.name}'s {target.python} is {probe.get('implementation', 'Python')} {found}; "
                          f"edgeseq needs CPython >= {'.'.join(map(str, MIN_PYTHON))}",
                          f"install a newer Python there and name it: {target.address}?python=/usr/bin/python3.12")


def check_space(target: Target, probe: dict[str, Any], need: int, what: str) -> None:
    """Refuse, before copying, a copy that would fill the device's disk."""
    if probe["free"] < need:
        raise RemoteError(f"{target.name} has {probe['free'] / 2**20:.0f} MiB free under {probe['cache']}; "
                          f"{what} needs about {need / 2**20:.0f} MiB", "free space there, or use another folder: "
                          f"{target.address}?cache=/path/with/space")


def extras_for(engine: str) -> list[str]:
    """The pip extra that brings `engine` (none for the base install's engines)."""
    from ..runtimes import registry

    try:
        found = re.search(r"edgeseq\[([\w,-]+)\]", registry.spec(engine).install)
    except Exception:  # an unknown engine: the run there names the engines
        return []
    return found.group(1).split(",") if found else []


def ensure(target: Target, extras: list[str] = ()) -> Remote:  # type: ignore[assignment]
    """Probe `target` and install this edgeseq with `extras` there unless its venv already has them."""
    probe = target.agent("probe", target.cache)
    check_python(target, probe)
    wheel = wheels.edgeseq_wheel()
    sha = sha256(wheel)
    have = probe.get("installed") or {}
    venv_python = f"{probe['venv']}/bin/python"
    if have.get("sha256") == sha and set(extras) <= set(have.get("extras", [])):
        return Remote(target, venv_python, probe)
    extras = sorted(set(extras) | (set(have.get("extras", [])) if have.get("sha256") else set()))
    house = wheels.gather(probe, extras, target.name)
    files = {p.name: (p, sha256(p)) for p in sorted(house.glob("*.whl"))}
    size = sum(p.stat().st_size for p, _ in files.values()) + wheel.stat().st_size
    check_space(target, probe, size * FREE_FACTOR, "installing edgeseq")
    stats = push(target, files, f"{probe['cache']}/wheels/{wheels.platform_tag(probe['python'], probe['platform'])}-"
                 f"{_digest(files)}", what="wheels")
    own = f"{probe['cache']}/wheels/edgeseq-{sha[:16]}"
    stats += push(target, {wheel.name: (wheel, sha)}, own, what="edgeseq's wheel")
    marker = json.dumps({"edgeseq": __version__, "sha256": sha, "extras": extras})
    tag = wheels.platform_tag(probe["python"], probe["platform"])
    got = target.agent("install", probe["venv"], f"{probe['cache']}/wheels/{tag}-{_digest(files)}",
                       f"{own}/{wheel.name}", ",".join(extras), marker)
    if "error" in got:
        raise _install_error(target, probe, got, extras)
    return Remote(target, str(got["python"]), probe, stats)


def _install_error(target: Target, probe: dict[str, Any], got: dict[str, Any], extras: list[str]) -> RemoteError:
    out = str(got.get("output", ""))
    if "No space left on device" in out or "Disk quota exceeded" in out:
        return RemoteError(f"{target.name} ran out of disk space installing edgeseq under {probe['cache']}",
                           f"free space there, or use another folder: {target.address}?cache=/path/with/space")
    if got["error"] == "venv":
        last = [ln for ln in out.splitlines() if ln.strip()][-1:] or ["?"]
        return RemoteError(f"{target.name}'s {target.python} cannot make a virtual environment: {last[0][:200]}",
                           "install its venv module there (Debian/Ubuntu: apt install python3-venv)")
    py = ".".join(str(x) for x in probe["python"][:2])
    return wheels.wheel_error(out, extras, target.name, probe["platform"], py)


def _digest(files: dict[str, tuple[Path, str]]) -> str:
    """One name for a set of files: the same wheels, the same remote folder (copied once)."""
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, (_, d) in sorted(files.items())).encode()).hexdigest()[:16]
