"""`edgeseq compare --on ssh://A --on ssh://B`: exports run here, once; every point is then measured
on every device. Devices work in parallel (one thread each, waiting on ssh), each one point at a
time, so no two measurements share a device. Rows stream into the same resumable store, keyed by
point and device, so a second run measures only what is missing on each device.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..artifact import manifest as mf
from ..compare import sweep
from ..compare.suite import Suite
from ..console import console
from ..errors import EdgeseqError
from ..profile.result import ProfileResult, RunHeader
from ..profile.store import ResultStore
from . import install, run
from .target import Target


def point_key(suite: Suite, target: Target, source: str, fmt: str, weights: str, n: int) -> str:
    """The local point's key with the device appended: the same point on two devices is two rows."""
    return json.dumps(json.loads(sweep.point_key(suite, source, fmt, weights, n)) + [{"on": target.url}])


def pending(suite: Suite, store: ResultStore, targets: list[Target]) -> int:
    return sum(1 for t in targets for src, f, w in sweep.plan(suite) for n in suite.input_lens
               if not store.finished(point_key(suite, t, src, f, w, n)))


def run_on(targets: list[Target], suite: Suite, out: Path, store: ResultStore, progress: Any = None,
           say: Callable[[str], None] = console.say, bandwidth: bool = True) -> None:
    """Measure every point of `suite` not finished in `store` on each of `targets`."""
    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    per_point = suite.warmup + suite.reps

    def add(r: ProfileResult) -> None:
        with lock:
            store.add(r)
            if progress is not None:
                progress.update(per_point)

    def fail(t: Target, point: sweep.Target, n: int, error: str) -> None:
        row = sweep.failed(suite, point, n, error)
        row.extra["on"] = t.url
        add(row)
        say(f"failed on {t.name}: {point.source} {point.fmt} {point.weights} in={n}: {error}")

    jobs: list[tuple[str, str, str, Path | None, str | None]] = []  # exports first, here, one at a time
    for source, fmt, weights in sweep.plan(suite):
        if all(store.finished(point_key(suite, t, source, fmt, weights, n)) for t in targets
               for n in suite.input_lens):
            continue
        try:
            art = sweep.ensure_artifact(source, fmt, weights, out, suite.parity_steps, say,
                                        (suite.input_lens, suite.output_len), suite.engine)
            mf.read(art)
            jobs.append((source, fmt, weights, art, None))
        except EdgeseqError as e:
            jobs.append((source, fmt, weights, None, e.message))
    arts = [a for *_, a, _ in jobs if a is not None]
    extras = run.extras_needed(arts, suite.engine) if arts else []

    def device(t: Target) -> None:
        remote: install.Remote | None = None
        for source, fmt, weights, art, error in jobs:
            keys = {n: point_key(suite, t, source, fmt, weights, n) for n in suite.input_lens}
            point = sweep.Target(source, fmt, weights, {n: k for n, k in keys.items() if not store.finished(k)})
            todo = list(point.keys)
            if not todo:
                continue
            try:
                if error:
                    raise EdgeseqError(error)
                if remote is None:
                    say(f"{t.name}: checking edgeseq there")
                    remote = install.ensure(t, extras)
                assert art is not None
                argv = run.profile_argv(sweep.config(suite, todo), suite.time_limit, bandwidth)
                say(f"{t.name}: profiling {art.name} at {','.join(map(str, todo))} tokens")
                report, _ = run.profile(remote, [art], argv)
            except EdgeseqError as e:
                for n in todo:
                    fail(t, point, n, e.message)
                continue
            for r in report.results:
                sweep.stamp(r, point)
                if len(targets) > 1:  # the report's series: one per device
                    r.label = f"{r.label} @ {t.name if len({x.name for x in targets}) == len(targets) else t.url}"
                add(r)

    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="edgeseq-on") as pool:
        for f in [pool.submit(device, t) for t in targets]:
            f.result()


def rows_for(suite: Suite, store: ResultStore, targets: list[Target]) -> list[ProfileResult]:
    """The stored rows of this suite's points on each device, device by device in plan order."""
    return [row for t in targets for src, f, w in sweep.plan(suite) for n in suite.input_lens
            if (row := store.rows.get(point_key(suite, t, src, f, w, n))) is not None]


def header(rows: list[ProfileResult], command: str) -> RunHeader:
    """The report's header: the device's host facts (one device), else each device's under `hosts`."""
    from .. import __version__

    hosts = {r.get("on"): r.get("host") for r in rows if r.get("host")}
    if len(hosts) == 1:
        host = dict(next(iter(hosts.values())))
    else:
        host = {"cpu": f"{len(hosts)} devices (see each row's host)", "cores": "-", "hosts": hosts}
    bws = {r.napkin.get("bandwidth_gb_s") for r in rows if r.napkin.get("bandwidth_gb_s")}
    return RunHeader(__version__, host, bws.pop() if len(bws) == 1 else None, command=command)
