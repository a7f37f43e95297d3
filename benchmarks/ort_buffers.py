"""edgeseq's ONNX Runtime path with Llama attention (and T5's decoder self-attention) as
GroupQueryAttention and the KV cache appended in place, against the plain attention graph
(exported with ort_kernels=False) and against the fused graph with the cache handed over as arrays
(engine option kv_buffer=0): same weights, same run, same protocol as benchmarks/vs_transformers.py
(batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads, 1 warm-up + 5 runs, medians;
each setting in its own process).

    .venv/bin/python benchmarks/ort_buffers.py            # artifacts exported into --work if missing

Prints two Markdown tables (plain -> fused with buffers; fused: arrays -> buffers) and writes every
raw number to --out/ort_buffers.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_openvino import ensure_export  # noqa: E402
from vs_transformers import _worker, print_pairs, protocol_args, save_report  # noqa: E402

CASES = [("smollm2-135m-instruct", "fp32"), ("smollm2-135m-instruct", "w4a8"), ("smollm2-135m-instruct", "int4"),
         ("preset:t5-small", "fp32"), ("preset:t5-small", "w4a8")]  # T5: the decoder's self-attention


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    protocol_args(p)
    a = p.parse_args()
    rows = []
    for source, weights in CASES:
        name = source.split(":")[-1]
        fused = ensure_export(source, Path(a.work) / f"{name}-onnx-{weights}", "onnx", weights)
        plain = ensure_export(source, Path(a.work) / f"{name}-onnx-{weights}-plain", "onnx", weights,
                              ort_kernels=False)
        got = {"plain": _worker("edgeseq", a, source, plain),
               "arrays": _worker("edgeseq", a, source, fused, options={"kv_buffer": "0"}),
               "buffers": _worker("edgeseq", a, source, fused)}
        for mode, res in got.items():
            if "error" in res:
                sys.exit(f"{name} {weights} {mode}: {res['error']}")
        rows.append({"model": source, "weights": weights, **got})
    save_report(a, rows, "ort_buffers.json")
    print_pairs(rows, "plain", "buffers", LEAD)
    print()
    print_pairs(rows, "arrays", "buffers", LEAD)


LEAD = [("model", lambda r: r["model"]), ("weights", lambda r: r["weights"])]


if __name__ == "__main__":
    main()
