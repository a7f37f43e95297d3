"""The `--on ssh://...` side of `profile` and `devices` (the CLI's commands call these when --on is given)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..console import console
from ..errors import UsageError
from . import install, run
from .copy import CopyStats
from .target import Target, parse


def profile_on(a: argparse.Namespace, cfg: Any) -> int:
    """`edgeseq profile ARTIFACTS --on URL`: the same protocol, measured on the device."""
    from ..artifact.manifest import read
    from ..profile.report import add_ratios, markdown, text
    from ..profile.runner import check_cases

    if a.auto or a.resume:
        raise UsageError("--auto and --resume run here only", "drop them, or drop --on")
    target = parse(a.on)
    for art in a.artifacts:
        check_cases(read(art), cfg, art)
    argv = run.profile_argv(cfg, a.time_limit, not a.no_bandwidth)
    with connection(target):
        console.say(f"{target.address}: making sure edgeseq {_version()} is installed there")
        remote = install.ensure(target, run.extras_needed(a.artifacts, cfg.engine))
        console.say(f"{target.address}: copying artifacts (once) and profiling")
        report, sent = run.profile(remote, a.artifacts, argv)
    copied = CopyStats(remote.copied.files + sent.files, remote.copied.bytes + sent.bytes)
    console.say(copy_line(target, copied, sent))
    report.header.protocol = cfg.__dict__
    report.header.command = "edgeseq " + shlex.join(sys.argv[1:])
    report.sections["on"] = target.url
    add_ratios(report.results)
    console.result(text(report), stderr=False)
    if a.json_path:
        report.write_json(a.json_path)
        console.result(f"wrote {a.json_path}")
    if a.markdown:
        Path(a.markdown).write_text(markdown(report))
        console.result(f"wrote {a.markdown}")
    return 0 if report.complete else 1


def copy_line(target: Target, copied: CopyStats, artifacts: CopyStats) -> str:
    if not copied.files:
        return f"{target.name}: nothing copied (edgeseq and the artifacts were already there)"
    return (f"{target.name}: copied {copied.files} file(s), {copied.bytes / 1e6:.1f} MB "
            f"({artifacts.files} of them artifact files)")


def devices_on(a: argparse.Namespace) -> int:
    """`edgeseq devices --on URL...`: each device's own table."""
    for url in a.on:
        target = parse(url)
        with connection(target):
            console.result(f"== {target.url}", stderr=False)
            console.result(run.devices(target).rstrip(), stderr=False)
    return 0


def targets(urls: list[str] | None) -> list[Target]:
    """Parsed --on URLs (none: run here); the same device twice would measure two points on it at once."""
    ts = [parse(u) for u in urls or []]
    names = [(t.login, t.port, t.cache) for t in ts]
    if len(set(names)) != len(names):
        raise UsageError("the same --on device is named twice", "name each device once")
    return ts


class connection:
    """Close the target's shared ssh connection when the command ends, however it ends."""

    def __init__(self, *ts: Target) -> None:
        self.ts = ts

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        for t in self.ts:
            t.close()


def _version() -> str:
    from .. import __version__

    return __version__


__all__ = ["profile_on", "devices_on", "targets", "connection"]
