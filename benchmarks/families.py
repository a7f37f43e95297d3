"""Every family on every path: a tiny random-weight model of each family exported to each format and
weight format, with the export's parity verdict, and for `--target npu` the share of graph nodes
that onnxruntime-qnn's HTP simulator places on the NPU (and the ops it leaves on the CPU).

The tiny configs are the tests' (tests/family_checks.py TINY_FAMILIES: hidden 64, 2-4 layers, the
families' own structure: biases, q/k norms, sliding windows, fused projections, pre/post norms).
A cell is what the export reported: parity status and max |logits diff| against PyTorch
(tolerance per weight format: edgeseq/accuracy.py). Shapes and weights are tiny, so sizes and
times are not reported; the table answers "does this family go down this path, checked".

    .venv/bin/python benchmarks/families.py                 # every family, every path (~20 min, 2 cores)
    .venv/bin/python benchmarks/families.py --families qwen3,bart --paths onnx/fp32,tflite/fp32
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# format/weights; "npu/<recipe>" is --target npu (static ONNX graphs for Qualcomm HTP)
PATHS = ("onnx/fp32", "onnx/int4", "onnx/w8a8-token", "openvino/fp32", "openvino/int8", "tflite/fp32", "tflite/int8",
         "npu/fp32", "npu/w8a16")
SHAPE = dict(max_input=24, max_output=40, buckets=(8,))  # the tests' small static shapes


def export_cell(src: Path, out: Path, path: str) -> dict[str, Any]:
    from edgeseq.errors import EdgeseqError
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    fmt, weights = path.split("/")
    kw: dict[str, Any] = dict(weights=weights, quiet=True, overwrite=True, keep_failed=True)
    if fmt == "npu":
        kw.update(format="onnx", target="npu", shape=StaticShape(**SHAPE))  # type: ignore[arg-type]
    else:
        kw["format"] = fmt
        if fmt == "tflite":
            kw["shape"] = StaticShape(**SHAPE)  # type: ignore[arg-type]
    t = time.perf_counter()
    try:
        m = export(str(src), out, **kw)
    except EdgeseqError as e:
        return {"status": "error", "error": e.message}
    cell = {k: m.parity.get(k) for k in ("status", "max_abs_diff", "tolerance")}
    cell["export_s"] = round(time.perf_counter() - t, 1)
    if fmt == "npu":
        cell.update(placement(out, m))
    return cell


def placement(art: Path, m: Any) -> dict[str, Any]:
    """HTP placement from the simulator, where onnxruntime-qnn is installed."""
    if importlib.util.find_spec("onnxruntime_qnn") is None and importlib.util.find_spec("onnxruntime") is None:
        return {"placement": "onnxruntime-qnn not installed"}
    from edgeseq.errors import EdgeseqError
    from edgeseq.runtimes import BackendOptions, open_backend

    try:
        device = open_backend(art, m, "npu", "onnxruntime", BackendOptions(threads=2))
    except EdgeseqError as e:
        return {"placement": e.message}
    place = device.placement()["npu"]
    return {"node_share": place["node_share"], "nodes": place["nodes"], "fallback_ops": place["fallback_ops"]}


def cell_text(c: dict[str, Any]) -> str:
    if c["status"] == "error":
        return f"error: {c['error'][:60]}"
    text = f"{c['status']} {c['max_abs_diff']:.2g}"
    if "node_share" in c:
        fb = ", ".join(f"{k} x{v}" for k, v in c["fallback_ops"].items())
        text += f"; HTP {c['node_share']:.0%}" + (f" (CPU: {fb})" if fb else "")
    elif "placement" in c:
        text += f"; {c['placement']}"
    return text


def main() -> None:
    import logging

    from family_checks import TINY_FAMILIES, save_tiny

    logging.disable(logging.INFO)  # the ONNX exporter's per-initializer notes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(TINY_FAMILIES))
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--work", default="/tmp/edgeseq-families")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "families.json"))
    a = p.parse_args()
    fams, paths = a.families.split(","), a.paths.split(",")
    work = Path(a.work)
    rows: dict[str, dict[str, Any]] = {}
    for fam in fams:
        src = work / f"{fam}-src"
        if not (src / "config.json").exists():
            save_tiny(TINY_FAMILIES[fam], src)
        rows[fam] = {}
        for path in paths:
            rows[fam][path] = export_cell(src, work / fam / path.replace("/", "-"), path)
            print(f"{fam:<14} {path:<16} {cell_text(rows[fam][path])}", file=sys.stderr, flush=True)
    print("| family | " + " | ".join(paths) + " |")
    print("|---|" + "---|" * len(paths))
    for fam, cells in rows.items():
        print(f"| {fam} | " + " | ".join(cell_text(cells[p]) for p in paths) + " |")
    out = Path(a.json)
    old = json.loads(out.read_text()) if out.exists() else {}
    if set(old.get("protocol", {}).get("paths", "").split(",")) != set(paths):
        old = {}  # other paths: the earlier rows do not belong in this table
    configs = {**old.get("configs", {}), **{f: TINY_FAMILIES[f] for f in fams}}  # a subset run keeps the other rows
    out.write_text(json.dumps({"protocol": vars(a), "configs": configs, "results": {**old.get("results", {}), **rows}},
                              indent=2))
    print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
