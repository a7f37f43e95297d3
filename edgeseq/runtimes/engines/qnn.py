"""Qualcomm Hexagon NPU (HTP) through onnxruntime-qnn: registration, options, compile cache, placement.

onnxruntime-qnn is a plugin execution provider: its library is registered with ONNX Runtime once per
process and its devices added to a session's options. On x86-64 its HTP backend is a simulator:
graphs are validated and compiled as for a phone, then run far slower than on the CPU provider, so
every profile on it is marked simulated. A float graph runs on HTP in float16
(`enable_htp_fp16_precision`); a QDQ graph runs in its quantized types, and the nodes it keeps float
(the residual stream and norms, attention's core: export/outliers.py) in float16.

Compiling is the slow part of a load. The compiled graph is kept as an EP-context model (ONNX with
the QNN context binary embedded) in the engine cache, keyed by the graph's SHA-256 and the options,
and later loads read it. Which nodes went where is read from the provider's own validation log at
compile time (ONNX Runtime reports a QNN partition as one node) and kept beside the compiled model.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..host.disk_cache import cache_room
from ..host.fds import redirected

EP = "QNNExecutionProvider"
SOC_MODEL = "60"  # the Snapdragon (QNN SoC id) the simulator compiles for: as in the feasibility notes
SIMULATED = "simulated: timings are not device timings"
_REGISTERED = False


def simulated() -> bool:
    """On x86-64 the HTP library is a simulator (a phone or Snapdragon laptop runs the real NPU)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def ep_devices() -> list[Any]:
    """The QNN provider's devices; registers the plugin library once. ImportError without the package."""
    global _REGISTERED
    import onnxruntime as ort
    import onnxruntime_qnn

    if not _REGISTERED:
        ort.register_execution_provider_library(EP, onnxruntime_qnn.get_library_path())
        _REGISTERED = True
    return [d for d in ort.get_ep_devices() if d.ep_name == EP]


def probe() -> str | None:
    try:
        found = ep_devices()
    except ImportError:
        return "onnxruntime-qnn is not installed"
    except Exception as e:  # a library that fails to register: its own error type
        return f"onnxruntime-qnn did not register ({str(e).strip().splitlines()[0][:120] if str(e).strip() else e})"
    return None if found else "onnxruntime-qnn registered no device"


def provider_options(quantized: bool, soc: str | None = None) -> dict[str, str]:
    import onnxruntime_qnn

    opts = {"backend_path": onnxruntime_qnn.get_qnn_htp_path(), "soc_model": soc or SOC_MODEL,
            "offload_graph_io_quantization": "0"}  # graph-input Q / output DQ run on HTP too
    # a float graph fails HTP's finalize in fp32; a QDQ graph keeps float nodes too (its residual
    # stream and norms: export/outliers.py), which run in float16 with it
    opts["enable_htp_fp16_precision"] = "1"
    return opts


def session(path: Path, so: Any, opts: dict[str, str], sha: str | None) -> tuple[Any, dict[str, Any]]:
    """A session of graph `path` on HTP and its placement report. The graph is compiled once into an
    EP-context model, which the session then loads. With the graph's SHA-256 (`sha`) that model is
    cached and a later load reads it; without (no hash recorded), it is compiled every time."""
    import onnxruntime as ort
    import onnxruntime_qnn

    key = hashlib.sha256(json.dumps([sha, opts, ort.__version__, onnxruntime_qnn.__version__],
                                    sort_keys=True).encode()).hexdigest()[:16] if sha else None
    room = cache_room("qnn", path.stat().st_size) if key else None
    key = key if room else None
    folder = room or Path(tempfile.mkdtemp(prefix="edgeseq-qnn-"))
    compiled = folder / f"{key or 'graph'}_ctx.onnx"
    report_file = compiled.with_suffix(".placement.json")
    state = "cached"
    if not (compiled.exists() and report_file.exists()):
        state = "now"
        folder.mkdir(parents=True, exist_ok=True)
        partial = compiled.with_name(f"{key or 'graph'}.{os.getpid()}_ctx.onnx")
        report = _compile(path, opts, partial)
        report_file.write_text(json.dumps(report))
        os.replace(partial, compiled)  # last: a cache entry with a report is complete
    # the compile ran with verbose logging (the report); the session that runs loads quietly
    so.add_provider_for_devices(ep_devices()[:1], opts)
    with _captured_output():
        s = ort.InferenceSession(str(compiled), so)
    report = json.loads(report_file.read_text())
    if not key:
        shutil.rmtree(folder, ignore_errors=True)
    return s, {**report, "compiled": state}


def _compile(path: Path, opts: dict[str, str], out: Path) -> dict[str, Any]:
    """Compile graph `path` for HTP into the EP-context model `out`; return its placement report."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("ep.context_enable", "1")
    so.add_session_config_entry("ep.context_embed_mode", "1")
    so.add_session_config_entry("ep.context_file_path", str(out))
    so.log_severity_level = 0  # the provider's per-node validation lines
    so.add_provider_for_devices(ep_devices()[:1], opts)
    with _captured_output() as log:
        try:
            ort.InferenceSession(str(path), so)
        finally:
            text = log.read_text(errors="replace")
    return placement_from_log(text, path)


@contextlib.contextmanager
def _captured_output() -> Iterator[Path]:
    """File descriptors 1 and 2 into a temporary file: ONNX Runtime's C++ logger writes to 2, the QNN
    libraries print a thread-local-storage notice to 1 when they load."""
    fd, name = tempfile.mkstemp(prefix="edgeseq-qnn-", suffix=".log")
    os.close(fd)
    try:
        with redirected((1, 2), name):
            yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


_VALIDATION = re.compile(r"Validation (PASSED|FAILED) for (\d+) nodes in \w+ \((\w+)\)")
_NODE = re.compile(r"Operator type: (\S+) Node name: (.*?) Node index")
_REASON = re.compile(r"REASON : (.*)")
_PLACED = re.compile(r"Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_PLACED_NODE = re.compile(r"\]\s{3}(\S+) \((.*)\)\s*$")


def placement_from_log(text: str, graph: Path) -> dict[str, Any]:
    """Nodes on HTP vs the CPU provider, from the provider's validation lines of its last capability
    pass and ONNX Runtime's node placements. `node_share`: nodes on HTP / nodes; `weight_share`:
    weight elements read by nodes on HTP / all weight elements of the graph."""
    lines = text.splitlines()
    last = max((i for i, ln in enumerate(lines) if "GetCapability pass" in ln), default=0)
    total, failed_ops, reasons = 0, Counter(), {}
    op = None
    for ln in lines[last:]:
        v = _VALIDATION.search(ln)
        if v:
            total += int(v.group(2))
            op = v.group(3) if v.group(1) == "FAILED" else None
            continue
        r = _REASON.search(ln)
        if r and op:
            reasons.setdefault(op, r.group(1).strip())
    cpu_nodes: list[tuple[str, str]] = []
    section = None
    for ln in lines:
        p = _PLACED.search(ln)
        if p:
            section = p.group(1)
            continue
        n = _PLACED_NODE.search(ln) if section == "CPUExecutionProvider" else None
        if n and "VerifyEachNodeIsAssignedToAnEp" in ln:
            cpu_nodes.append((n.group(1), n.group(2)))
        elif "VerifyEachNodeIsAssignedToAnEp" not in ln:
            section = None
    for op_type, _ in cpu_nodes:
        failed_ops[op_type] += 1
    on_cpu = len(cpu_nodes)
    total = max(total, on_cpu)
    return {"nodes": total, "nodes_on_npu": total - on_cpu,
            "node_share": round((total - on_cpu) / total, 4) if total else 0.0,
            "weight_share": _weight_share(graph, {name for _, name in cpu_nodes}),
            "fallback_ops": dict(failed_ops), "fallback_reasons": {k: reasons.get(k, "?") for k in failed_ops}}


def _weight_share(graph: Path, cpu_node_names: set[str]) -> float | None:
    import numpy as np
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    size = {i.name: int(np.prod(i.dims)) if i.dims else 1 for i in model.graph.initializer}
    total = sum(size.values())
    if not total:
        return None
    on_cpu = sum(size.get(x, 0) for n in model.graph.node if n.name in cpu_node_names for x in n.input)
    return round(1 - min(on_cpu, total) / total, 4)
