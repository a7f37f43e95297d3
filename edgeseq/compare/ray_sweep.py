"""`edgeseq compare --ray [ADDRESS]`: the sweep of compare/sweep.py (same plan, point keys, store and
report) with each export and each profile point a Ray task (the node side is compare/ray_nodes.py).

Exports run once per model x format x weights, on any node, with Ray's own retries; the packed
artifact goes through the object store to the nodes that profile it and into OUT/artifacts here.
A profile point holds every CPU of its node (one point per node at a time, so timings are not
shared) and is placed on a node whose host facts were measured there first. A point whose worker or
node dies is sent again, to another node where one is idle; each finished point is in the store at
once, so Ctrl-C keeps them and the next run measures only what is missing.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import manifest as mf
from ..console import console
from ..errors import EdgeseqError, MissingDependencyError, UsageError
from ..profile.result import ProfileResult
from ..profile.store import ResultStore
from . import ray_nodes, sweep
from .suite import Suite

LOST_TRIES = 3  # a point whose worker or node died is sent this many times before it is recorded failed
NO_NODE_S = 60.0  # points left with no live node for this long are recorded failed
REST_S = 15.0  # a node that lost a point gets no other for this long (the cluster may not know it is dead yet)
PROBE_WAIT_S = 30.0  # the first points wait this long at most for every node's facts, so all nodes share the sweep
Item = tuple[sweep.Target, int]  # a point: its target and input length


def connect(address: str | None) -> Callable[[], None]:
    """Join the Ray cluster at `address`, or start a local Ray runtime (this machine, loopback only)
    when None; returns the function that disconnects (and stops a local runtime)."""
    if address is None:
        # Ray's own switch for single-machine runtimes (read when ray is imported): every server on the
        # loopback address; and no usage report leaves the machine
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError("--ray needs Ray, which is not installed",
                                     "pip install 'edgeseq[ray]' (here and on every node)") from e
    quiet: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        ray.init(include_dashboard=False, **quiet)
    else:
        _reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"cannot join the Ray cluster at {address}: {first}",
                             "start one with `ray start --head` on the head node and pass its HOST:PORT "
                             "(or `auto` on a node of it), or drop the address for a local runtime") from e
    return ray.shutdown


def nodes() -> dict[str, int]:
    """Live nodes that can run a point: node id -> its CPU count."""
    import ray

    return {n["NodeID"]: int(n["Resources"]["CPU"]) for n in ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1}


def run(suite: Suite, out: Path, store: ResultStore, bandwidth: bool = True, progress: Any = None,
        say: Callable[[str], None] = console.say, shared: bool = True,
        dispatched: Callable[[str, sweep.Target, int], None] | None = None) -> None:
    """Measure every point of `suite` not finished in `store` on the connected Ray cluster.

    `bandwidth`: measure each node's copy bandwidth (the napkin math's share of it). `shared`: a
    node that sees the driver's artifact directory (shared storage) reads it there instead of
    fetching it. `dispatched(node_id, target, n)` is told of each point sent to a node."""
    _Sweep(suite, out, store, bandwidth, progress, say, shared, dispatched).run()


class _Sweep:
    def __init__(self, suite: Suite, out: Path, store: ResultStore, bandwidth: bool, progress: Any,
                 say: Callable[[str], None], shared: bool,
                 dispatched: Callable[[str, sweep.Target, int], None] | None) -> None:
        import ray

        self.ray, self.suite, self.out, self.store = ray, suite, out, store
        self.progress, self.say, self.shared, self.dispatched = progress, say, shared, dispatched
        self.threads = (suite.threads or 2) if bandwidth else None
        self.queue: deque[Item] = deque()
        self.started = time.monotonic()
        self.lost: Counter[str] = Counter()  # point key -> times its worker or node died under it
        self.arts: dict[int, tuple[str, str, Any]] = {}  # id(target) -> driver path, digest, packed ref or None
        self.pending: dict[Any, tuple[str, Any]] = {}  # ref -> what it is ("export" | "facts" | "point") and its item
        self.facts: dict[str, dict[str, Any] | None] = {}  # node id -> its facts (None while measured)
        self.busy: dict[str, Any] = {}  # node id -> the ref of its point
        self.resting: dict[str, float] = {}  # node id -> when it may get a point again, after it lost one
        self.export_fn = ray.remote(num_cpus=1, max_retries=2, num_returns=2)(ray_nodes.export)
        self.facts_fn = ray.remote(max_retries=0)(ray_nodes.host_facts)
        self.point_fn = ray.remote(max_retries=0, max_calls=1)(ray_nodes.point)  # a fresh process per point

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            for t in sweep.targets(self.suite, self.store):
                self._start(t)
            alone_since: float | None = None
            while self.queue or self.pending:
                live = nodes()
                self._probe(live)
                self._dispatch(live)
                if self.queue and not live:
                    alone_since = alone_since or time.monotonic()
                    if time.monotonic() - alone_since > NO_NODE_S:
                        while self.queue:
                            self._fail(self.queue.popleft(), "no live Ray node was left to run it")
                else:
                    alone_since = None
                if not self.pending:  # points wait for a node to rest or to appear
                    time.sleep(0.5)
                    continue
                done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
                for ref in done:
                    self._finished(ref)
        finally:
            for ref, (kind, _) in self.pending.items():  # Ctrl-C or an error: what finished is in the store
                # an export is interrupted, not killed, so that its child process is ended with it
                self.ray.cancel(ref, force=kind != "export")

    def _start(self, t: sweep.Target) -> None:
        """Queue the target's points: its artifact here already, or after its export task."""
        here = Path(t.source) if sweep.is_artifact(t.source) else sweep.artifact_dir(self.out, t.source, t.fmt,
                                                                                       t.weights, self.suite.engine)
        try:
            mf.read(here)
        except EdgeseqError:  # not exported yet, or an export that did not finish
            lengths = (self.suite.input_lens, self.suite.output_len)
            data, err = self.export_fn.remote(t.source, t.fmt, t.weights, self.suite.parity_steps, lengths,
                                              self.suite.engine)
            self.pending[err] = ("export", (t, data))
            self.say(f"exporting {t.source} to {t.fmt} ({t.weights}) on the cluster")
            return
        self._ready(t, here, None)  # packed into the object store only when a node cannot see it

    def _ready(self, t: sweep.Target, art: Path, packed: Any) -> None:
        m = mf.read(art)
        runnable, refused = sweep.screen(self.suite, art, m, t)
        for n, why in refused.items():
            self._fail((t, n), why)
        self.arts[id(t)] = (str(art), ray_nodes.digest(art) or "", packed)
        self.queue.extend((t, n) for n in runnable)

    def _probe(self, live: dict[str, int]) -> None:
        """Measure the host facts of each node seen for the first time, holding all its CPUs."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node, cpus in live.items():
            if node not in self.facts:
                self.facts[node] = None
                ref = self.facts_fn.options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node, soft=False)).remote(self.threads)
                self.pending[ref] = ("facts", node)

    def _dispatch(self, live: dict[str, int]) -> None:
        """One point to each idle node whose facts are in, holding every CPU of that node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if time.monotonic() - self.started < PROBE_WAIT_S and any(self.facts.get(n) is None for n in live):
            return
        for node, cpus in live.items():
            facts = self.facts.get(node)
            if not self.queue or facts is None or node in self.busy or self.resting.get(node, 0) > time.monotonic():
                continue
            t, n = item = self.queue.popleft()
            path, want, packed = self.arts[id(t)]
            ref = self.point_fn.options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(
                node, soft=False)).remote(self.suite, t, n, path, want, [] if packed is None else [packed],
                                          self.shared, facts)
            self.pending[ref], self.busy[node] = ("point", (node, item)), ref
            if self.dispatched:
                self.dispatched(node, t, n)

    def _finished(self, ref: Any) -> None:
        kind, what = self.pending.pop(ref)
        errors = self.ray.exceptions
        if kind == "export":
            t, data = what
            err = self._get(ref)
            if err is not None:  # the export's one-line error, or the Ray error it ended with
                for n in t.keys:
                    self._fail((t, n), f"export failed: {_line(err)}")
                return
            art = ray_nodes.unpack(self.ray.get(data), sweep.artifact_dir(self.out, t.source, t.fmt, t.weights,
                                                                          self.suite.engine))
            self._ready(t, art, data)
        elif kind == "facts":
            got = self._get(ref)
            if isinstance(got, errors.RayTaskError):
                raise UsageError(f"a Ray node cannot run edgeseq: {_line(got)}",
                                 f"install edgeseq[ray]=={__version__} with the engine extras on every node")
            if isinstance(got, BaseException):
                self.facts.pop(what, None)  # the node went away: probed again if it comes back
                return
            if got.get("edgeseq_version") != __version__:
                raise UsageError(f"Ray node {got.get('hostname')} runs edgeseq {got.get('edgeseq_version')}, "
                                 f"this machine {__version__}",
                                 f"install edgeseq[ray]=={__version__} on every node")
            self.facts[what] = got
        else:
            node, item = what
            self.busy.pop(node, None)
            got = self._get(ref)
            if isinstance(got, errors.RayTaskError):
                self._fail(item, _line(got))
            elif isinstance(got, BaseException):  # the worker or the node died: the point goes again
                t, n = item
                self.lost[t.keys[n]] += 1
                self.resting[node] = time.monotonic() + REST_S
                if self.lost[t.keys[n]] < LOST_TRIES:
                    self.queue.appendleft(item)
                    self.say(f"lost {t.source} {t.fmt} {t.weights} in={n} ({type(got).__name__}): sent again")
                else:
                    self._fail(item, f"its Ray worker died {LOST_TRIES} times ({type(got).__name__})")
            elif got is None:  # the node cannot see the driver's directory: send it the bytes
                path, want, packed = self.arts[id(item[0])]
                if packed is None:
                    self.arts[id(item[0])] = (path, want, self.ray.put(ray_nodes.pack(Path(path))))
                self.queue.appendleft(item)
            else:
                self._add(got)

    def _get(self, ref: Any) -> Any:
        """The task's value, or the Ray error it ended with."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            return e

    def _add(self, r: ProfileResult) -> None:
        self.store.add(r)
        if self.progress is not None:
            self.progress.update(self.suite.warmup + self.suite.reps)
        if r.status != "ok":
            self.say(f"{r.status}: {r.extra.get('source')} {r.format} {r.weights} in={r.input_len}"
                     + (f": {r.extra['error']}" if r.extra.get("error") else ""))

    def _fail(self, item: Item, error: str) -> None:
        t, n = item
        self._add(sweep.failed(self.suite, t, n, error))


def _line(e: Any) -> str:
    """An error (a Ray error wraps the task's traceback) as one line: its last non-empty line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a HOST:PORT that does not answer at once (Ray itself keeps retrying for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # `auto` or a ray:// client address: Ray resolves and reports those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UsageError(f"no Ray cluster answers at {address} ({e.strerror or type(e).__name__})",
                         "start one with `ray start --head --port PORT` on the head node, check the address "
                         "and the firewall, or drop the address for a local runtime") from e
