"""`edgeseq compare`'s sweep: export each model in each format, profile each input length, and keep
every finished point in `OUT/results.jsonl` as it comes, so a second run resumes where one stopped.

Exports run in child processes (their log in OUT/logs/): torch and the source model stay out of
this process, whose peak memory is what the profile reports. A point that fails (an export, a
parity check, a length the model cannot take, an engine error) is recorded with its error and the
sweep goes on; a failed or timed-out point is tried again by the next run, a finished one is not.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..artifact import manifest as mf
from ..console import console
from ..errors import EdgeseqError, ExportError
from ..export import source_only
from ..export.formats import spec as format_spec
from ..profile.result import ProfileResult
from ..profile.runner import ProfileConfig, check_cases, iter_profile
from ..profile.store import ResultStore
from ..reference import NAMES as PYTORCH
from .suite import Suite

RESULTS = "results.jsonl"


def point_key(suite: Suite, source: str, fmt: str, weights: str, in_len: int) -> str:
    """Everything that changes a point's figures; a point with the same key is not measured again."""
    key: list[Any] = [source, fmt, weights, suite.device, suite.engine, suite.precision, suite.threads,
                      suite.warmup, suite.reps, in_len, suite.output_len]
    if suite.delegate or suite.engine_options:  # only when set: the keys of earlier stores stay valid
        key += [suite.delegate, sorted(suite.engine_options.items())]
    return json.dumps(key)


def open_store(out: Path) -> ResultStore:
    """OUT/results.jsonl, the profile's resumable store keyed by point: the latest line per point wins."""
    return ResultStore(out / RESULTS, key_field="point")


def is_artifact(source: str) -> bool:
    return (Path(source) / mf.MANIFEST).is_file()


def plan(suite: Suite) -> list[tuple[str, str, str]]:
    """(source, format, weights) per artifact to measure; an artifact directory stands for itself."""
    out = []
    for source in suite.models:
        if is_artifact(source):
            m = mf.read(source, check_files=False)
            out.append((source, m.format, m.quantization or "fp32"))
        else:
            out += [(source, f, w) for f, w in suite.pairs()]
    return out


def slug(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", source.removeprefix("preset:")).strip("-") or "model"


def artifact_dir(out: Path, source: str, fmt: str, weights: str, engine: str | None = None) -> Path:
    """Where the sweep keeps its export of (source, format, weights); for a PyTorch `engine`, the
    source-only artifact every format and weights share; for a native runtime's, an export with its files."""
    if engine in PYTORCH:
        return out / "artifacts" / f"{slug(source)}-{source_only.FORMAT}"
    if engine in native_runtimes():  # an export with that runtime's files (--native)
        return out / "artifacts" / f"{slug(source)}-{fmt}-{weights}-{engine}"
    return out / "artifacts" / f"{slug(source)}-{fmt}-{weights}"


def native_runtimes() -> list[str]:
    from ..export import native

    return native.names()


def ensure_artifact(source: str, fmt: str, weights: str, out: Path, parity_steps: int,
                    say: Callable[[str], None], lengths: tuple[list[int], int] | None = None,
                    engine: str | None = None) -> Path:
    """The artifact for (source, format, weights): an artifact directory as given, a finished
    export under OUT/artifacts reused, or a new export in a child process. `lengths` (input
    lengths, output length) sizes a static-shape format: each input length becomes a bucket, so
    no point is padded. For a PyTorch `engine` (which reads no graphs), a source-only artifact
    (export/source_only.py) instead of an export."""
    if is_artifact(source):
        return Path(source)
    pytorch = engine in PYTORCH
    target = artifact_dir(out, source, fmt, weights, engine)
    try:
        mf.read(target)
        return target
    except EdgeseqError:
        pass
    if pytorch:
        assert engine is not None
        say(f"writing the manifest of {source} for {engine} (no graphs: it rebuilds the model from the source)")
        shutil.rmtree(target, ignore_errors=True)
        source_only.write(source, target, engine)
        return target
    log = out / "logs" / f"{target.name}.export.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting {source} to {fmt} ({weights}); log: {log}")
    cmd = [sys.executable, "-m", "edgeseq", "--verbose", "export", source, "--format", fmt, "--weights", weights,
           "--out", str(target), "--overwrite", "--parity-steps", str(parity_steps)]
    if engine in native_runtimes():
        cmd += ["--native", engine]
    if lengths and format_spec(fmt).static:
        ins, n_out = lengths
        cmd += ["--max-input", str(max(ins)), "--max-output", str(n_out),
                "--prefill-buckets", ",".join(str(n) for n in sorted(ins))]
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
        reason = " ".join(ln for ln in lines if ln.startswith(("error:", "hint:"))) or (lines[-1] if lines else "")
        raise ExportError(f"export of {source} to {fmt} ({weights}) failed (exit {code}): {reason} [log: {log}]",
                          f"see {log}")
    return target


def pending(suite: Suite, store: ResultStore) -> int:
    """How many of the suite's points are not finished in `store`."""
    return sum(len(t.keys) for t in targets(suite, store))


@dataclass
class Target:
    """One artifact to measure and its points not finished yet (input length -> point key)."""
    source: str
    fmt: str
    weights: str
    keys: dict[int, str]


def targets(suite: Suite, store: ResultStore) -> list[Target]:
    """The plan's artifacts that still have points to measure, in plan order (shared by the local and
    the Ray sweep, so both measure the same points under the same keys)."""
    out = []
    for source, fmt, weights in plan(suite):
        keys = {n: point_key(suite, source, fmt, weights, n) for n in suite.input_lens}
        todo = {n: k for n, k in keys.items() if not store.finished(k)}
        if todo:
            out.append(Target(source, fmt, weights, todo))
    return out


def failed(suite: Suite, t: Target, n: int, error: str) -> ProfileResult:
    """The stored row of a point that did not run; the next run tries it again."""
    return ProfileResult(status="failed", input_len=n, output_len=suite.output_len, format=t.fmt, weights=t.weights,
                         extra={"source": t.source, "point": t.keys[n], "error": error})


def screen(suite: Suite, art: Path, m: mf.Manifest, t: Target) -> tuple[list[int], dict[int, str]]:
    """The target's input lengths that can run on this artifact, and why each other one cannot."""
    if m.audio:  # one window of audio in, whatever the input length: no sweep to make
        return [], {n: "a speech model's input is audio, not --input-lens tokens: profile it with "
                       f"`edgeseq profile {art} --audio FILE`" for n in t.keys}
    runnable, refused = [], {}
    for n in t.keys:
        try:
            check_cases(m, config(suite, [n]), str(art))
            runnable.append(n)
        except EdgeseqError as e:
            refused[n] = e.message
    return runnable, refused


def stamp(r: ProfileResult, t: Target) -> ProfileResult:
    """A measured row as the sweep stores it: format and weights as planned (an artifact directory's
    own, read from it; a source-only artifact's stay `source`), the model source and the point key."""
    n = int(r.input_len or 0)
    r.weights = t.weights
    if r.format != source_only.FORMAT:  # a source-only artifact's rows say so
        r.format = t.fmt
    r.extra.update(source=t.source, point=t.keys[n])
    return r


def run(suite: Suite, out: Path, store: ResultStore, bandwidth_gb_s: float | None, progress: Any = None,
        say: Callable[[str], None] = console.say) -> None:
    """Measure every point of `suite` not already finished in `store` (OUT/results.jsonl); each
    finished point is added to it at once."""
    out.mkdir(parents=True, exist_ok=True)
    for t in targets(suite, store):
        def fail(n: int, error: str) -> None:
            store.add(failed(suite, t, n, error))
            if progress is not None:
                progress.update(suite.warmup + suite.reps)
            say(f"failed: {t.source} {t.fmt} {t.weights} in={n}: {error}")

        try:
            art = ensure_artifact(t.source, t.fmt, t.weights, out, suite.parity_steps, say,
                                  (suite.input_lens, suite.output_len), suite.engine)
            m = mf.read(art)
        except EdgeseqError as e:
            for n in t.keys:
                fail(n, e.message)
            continue
        runnable, refused = screen(suite, art, m, t)
        for n, why in refused.items():
            fail(n, why)
        if not runnable:
            continue
        tick = (lambda: progress.update(1)) if progress is not None else None
        measured: set[int] = set()
        try:
            for r in iter_profile(art, config(suite, runnable), tick, bandwidth_gb_s, time_limit_s=suite.time_limit):
                measured.add(int(r.input_len or 0))
                store.add(stamp(r, t))  # status: ok or timeout
        except EdgeseqError as e:
            for n in runnable:
                if n not in measured:
                    fail(n, e.message)
        except MemoryError:
            for n in runnable:
                if n not in measured:
                    fail(n, "out of memory")


def config(suite: Suite, lens: list[int]) -> ProfileConfig:
    """The profile protocol of `suite` for these input lengths."""
    return ProfileConfig(input_lens=lens, output_lens=[suite.output_len], warmup=suite.warmup, reps=suite.reps,
                         threads=suite.threads, device=suite.device, engine=suite.engine,
                         precision=suite.precision, delegate=suite.delegate,
                         engine_options=dict(suite.engine_options)).validate()


def rows_for(suite: Suite, store: ResultStore) -> list[ProfileResult]:
    """The stored rows of this suite's points, in plan order (rows of other runs' points are left out)."""
    rows = []
    for source, fmt, weights in plan(suite):
        for n in suite.input_lens:
            row = store.rows.get(point_key(suite, source, fmt, weights, n))
            if row is not None:
                rows.append(row)
    return rows
