"""Run edgeseq on a device over SSH: `profile` with the same protocol as here (its JSON report comes
back and its rows join the local report, the device's host facts included) and `devices`."""
from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path
from typing import Callable

from ..artifact import manifest as mf
from ..errors import UsageError
from ..profile.result import RunReport
from ..profile.runner import ProfileConfig, case_key
from . import artifacts, install
from .copy import CopyStats
from .target import Target


def profile_argv(cfg: ProfileConfig, time_limit: float | None = None, bandwidth: bool = True) -> list[str]:
    """`edgeseq profile`'s flags for the protocol `cfg` (run there exactly as it would run here)."""
    if cfg.audio is not None:
        raise UsageError("--audio names a file on this machine, which --on does not copy",
                         "use --audio-seconds N (a synthetic signal made on the device), or profile here")
    if cfg.speculate and cfg.speculate != "lookup":
        raise UsageError("--speculate with a draft artifact does not run with --on yet", "use --speculate lookup")
    argv = ["--input-len", _ints(cfg.input_lens), "--output-len", _ints(cfg.output_lens), "--batch",
            _ints(cfg.batch_sizes), "--warmup", str(cfg.warmup), "--reps", str(cfg.reps), "--device", cfg.device,
            "--precision", cfg.precision]
    for flag, value in (("--threads", cfg.threads), ("--engine", cfg.engine), ("--delegate", cfg.delegate),
                        ("--max-memory", cfg.max_memory_mb), ("--audio-seconds", cfg.audio_seconds),
                        ("--speculate", cfg.speculate), ("--time-limit", time_limit)):
        if value is not None:
            argv += [flag, str(value)]
    if cfg.speculate:
        argv += ["--draft-tokens", str(cfg.draft_tokens)]
    for k, v in (cfg.engine_options or {}).items():
        argv += ["--engine-option", f"{k}={int(v) if isinstance(v, bool) else v}"]
    return argv + ([] if bandwidth else ["--no-bandwidth"])


def _ints(vals: list[int]) -> str:
    return ",".join(str(v) for v in vals)


def extras_needed(arts: list[str | Path], engine: str | None) -> list[str]:
    """The engine extras the artifacts need on the device: the named engine's, else each artifact's own."""
    names = {engine} if engine else {mf.read(a, check_files=False).engine for a in arts}
    return sorted({x for e in names for x in install.extras_for(e)})


def profile(remote: install.Remote, arts: list[str | Path], argv: list[str],
            progress: Callable[[int], None] | None = None) -> tuple[RunReport, CopyStats]:
    """Copy `arts` to the device (where not there yet), run `edgeseq profile` there with `argv` and bring
    its report back: each row's artifact is the local path again, with the device (`on`) and its `host`
    facts. Also what was copied."""
    stats = CopyStats()
    where: dict[str, Path] = {}
    for a in arts:
        there, sent = artifacts.ensure(remote, a, progress)
        stats += sent
        where[there] = Path(a)
    out = f"{remote.cache}/runs/{uuid.uuid4().hex}.json"
    cmd = [remote.python, "-m", "edgeseq", "--quiet", "profile", *where, *argv, "--json", out]
    line = (f"mkdir -p {shlex.quote(remote.cache + '/runs')} && {shlex.join(cmd)} >&2 && cat {shlex.quote(out)}; "
            f"s=$?; rm -f {shlex.quote(out)}; exit $s")
    text = remote.target.shell(line, what="edgeseq profile")
    report = RunReport.from_dict(json.loads(text))
    for r in report.results:
        local = where.get(str(r.artifact), Path(str(r.artifact)))
        r.artifact = str(local)
        if r.input_len and r.output_len and r.batch:
            r.key = case_key(local, r.input_len, r.output_len, r.batch)
        r.extra.update(on=remote.target.url, host=report.header.host)
    return report, stats


def devices(target: Target) -> str:
    """`edgeseq devices` as the device prints it (after making sure edgeseq is installed there)."""
    remote = install.ensure(target)
    return remote.target.run([remote.python, "-m", "edgeseq", "devices"], what="edgeseq devices")
