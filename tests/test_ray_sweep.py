"""`edgeseq compare --ray` on a two-node Ray cluster on this machine: a head and a worker node, each its
own raylet and worker processes with one CPU, every server on the loopback address. The points spread
over both nodes, the report has the single-machine report's rows, and a node killed mid-sweep loses
only the point it held, which runs again elsewhere.

The nodes are started with Ray's own multi-node test harness (ray.cluster_utils.Cluster) rather than
`ray start`: on one machine `ray start` either binds the machine's network address or, with Ray's
loopback switch, refuses to add a second node.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeseq.cli import main

# Ray's switch for single-machine clusters, read when ray is imported: every node and the driver on
# 127.0.0.1, nothing listening on another address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
RAY_MISSING = importlib.util.find_spec("ray") is None
pytestmark = pytest.mark.skipif(RAY_MISSING, reason="ray is not installed: pip install 'edgeseq[ray]' "
                                "-c constraints.txt")
FAST = ["--output-len", "4", "--reps", "1", "--warmup", "0", "--no-bandwidth", "--no-plots"]
# the GCS declares a node dead after 3 missed health checks 0.5 s apart (not the default ~30 s)
FAST_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
              "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A head and one worker node, one CPU each; stopped (every process of every node) afterwards."""
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            pytest.skip("ray was imported before this module could keep its servers on the loopback address")
    from ray.cluster_utils import Cluster

    env = dict(FAST_DEATH, EDGESEQ_RAY_CACHE=str(tmp_path_factory.mktemp("node-cache")))  # inherited by the nodes
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    c = Cluster(shutdown_at_exit=True)
    try:
        c.add_node(num_cpus=1, include_dashboard=False)
        c.add_node(num_cpus=1)
        c.base = {n["NodeID"] for n in _nodes(c)}
        assert len(c.base) == 2
        yield c
    finally:
        import ray

        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _nodes(c: Any) -> list[dict[str, Any]]:
    import ray

    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR", ignore_reinit_error=True)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


def _points(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["points"]


SAME = ("point", "source", "format", "weights", "input_len", "output_len", "status", "artifact", "kind")


def test_points_spread_over_both_nodes_and_the_rows_match_a_local_sweep(
        paper_artifacts: dict[str, Path], cluster: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    arts = [str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])]
    assert main(["compare", *arts, "--input-lens", "8,32", "--out", str(tmp_path / "local"), *FAST]) == 0
    assert main(["compare", *arts, "--input-lens", "8,32", "--out", str(tmp_path / "ray"), *FAST,
                 "--ray", cluster.address]) == 0
    capsys.readouterr()
    local, remote = _points(tmp_path / "local"), _points(tmp_path / "ray")
    assert [{k: p.get(k) for k in SAME} for p in remote] == [{k: p.get(k) for k in SAME} for p in local]
    assert all(p["status"] == "ok" and p["ttft_ms"] > 0 for p in remote)
    hosts = [p["host"] for p in remote]
    assert len({h["node_id"] for h in hosts}) == 2  # both nodes measured points
    assert all(h["cores"] == os.cpu_count() and h["cpu"] and h["edgeseq_version"] for h in hosts)
    assert {p["artifact_via"] for p in remote} == {"shared storage"}  # the same files: nothing copied
    assert "host" not in local[0]
    # nothing is measured again: every point is finished in the store
    lines = (tmp_path / "ray" / "results.jsonl").read_text().splitlines()
    assert main(["compare", *arts, "--input-lens", "8,32", "--out", str(tmp_path / "ray"), *FAST,
                 "--ray", cluster.address]) == 0
    assert (tmp_path / "ray" / "results.jsonl").read_text().splitlines() == lines



def test_ctrl_c_keeps_the_finished_points_and_the_next_run_measures_the_rest(
        paper_artifacts: dict[str, Path], cluster: Any, tmp_path: Path) -> None:
    import ray

    from edgeseq.compare import Suite, ray_sweep, sweep

    suite = Suite(models=[str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])],
                  input_lens=[8, 32], output_len=4, reps=1, warmup=0).validate()
    out, sent = tmp_path / "r", []

    def interrupt_on_the_third(node: str, t: sweep.Target, n: int) -> None:
        sent.append(node)
        if len(sent) == 3:  # sent when a node came free: at least one point has finished
            raise KeyboardInterrupt

    try:
        ray_sweep.connect(cluster.address)
        with pytest.raises(KeyboardInterrupt):
            ray_sweep.run(suite, out, sweep.open_store(out), bandwidth=False, dispatched=interrupt_on_the_third)
        kept = (out / "results.jsonl").read_text().splitlines()
        assert 1 <= len(kept) <= 2 and all(json.loads(x)["status"] == "ok" for x in kept)
        store = sweep.open_store(out)
        assert sweep.pending(suite, store) == 4 - len(kept)
        ray_sweep.run(suite, out, store, bandwidth=False)
    finally:
        ray.shutdown()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert lines[:len(kept)] == kept and len(lines) == 4  # the finished points were not measured again
    assert sweep.pending(suite, sweep.open_store(out)) == 0

def test_a_node_killed_mid_sweep_loses_only_its_point(paper_artifacts: dict[str, Path], cluster: Any,
                                                      tmp_path: Path) -> None:
    """A third node is killed (raylet and workers, SIGKILL) as soon as it is handed a point; that point
    runs again on a live node. The sweep also exports a model on the cluster and, with shared storage
    off, sends the artifacts through the object store."""
    import ray

    from conftest import make_paper_dir
    from edgeseq.compare import Suite, ray_sweep, sweep

    doomed = cluster.add_node(num_cpus=1)
    (doomed_id,) = {n["NodeID"] for n in _nodes(cluster)} - cluster.base
    src = make_paper_dir("paper-deconly", tmp_path / "deconly-src")
    suite = Suite(models=[str(paper_artifacts["paper-encdec"]), str(src)], input_lens=[8, 32], output_len=4,
                  reps=1, warmup=0, parity_steps=4).validate()
    out, said, killed = tmp_path / "r", [], []
    store = sweep.open_store(out)

    def dispatched(node: str, t: sweep.Target, n: int) -> None:
        if node == doomed_id and not killed:
            cluster.remove_node(doomed, allow_graceful=False)  # SIGKILL: its raylet and its workers
            killed.append((node, t.source, n))

    try:
        ray.shutdown()
        ray_sweep.connect(cluster.address)
        ray_sweep.run(suite, out, store, bandwidth=False, say=said.append, shared=False, dispatched=dispatched)
    finally:
        ray.shutdown()
    rows = sweep.rows_for(suite, store)
    assert [(r.input_len, r.status) for r in rows] == [(8, "ok"), (32, "ok")] * 2, said
    assert len(killed) == 1 and killed[0][0] not in {r["host"]["node_id"] for r in rows}
    assert sum("sent again" in s for s in said) == 1, said
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4  # the lost point wrote nothing; each point is stored once
    assert any("exporting" in s for s in said) and (sweep.artifact_dir(out, str(src), "onnx", "fp32") /
                                                    "edgeseq.json").is_file()
    for source in suite.models:  # each artifact came through the object store once, then from the node cache
        vias = [r["artifact_via"] for r in rows if r["source"] == source]
        assert "object store" in vias and set(vias) <= {"object store", "node cache"}, vias



def test_an_address_nobody_answers_and_a_missing_ray_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["compare", "preset:a", "preset:b", "--out", str(tmp_path / "r"), *FAST]
    assert main([*args, "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"error: no Ray cluster answers at 127.0.0.1:{port}" in err and "hint: start one with `ray start" in err
    assert "Traceback" not in err
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert main([*args, "--ray"]) == 5
    assert "hint: pip install 'edgeseq[ray]'" in capsys.readouterr().err
