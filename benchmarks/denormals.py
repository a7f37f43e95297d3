"""edgeseq's ONNX Runtime sessions with subnormal floats flushed to zero (the default,
runtimes/engines/onnxruntime.flush_denormals) against the same artifacts keeping them
(engine option flush_denormals=0): same weights, same run, the protocol of
benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads).
Each setting runs in its own process; the two alternate for --rounds rounds (benchmarks/env_ab.py).

    .venv/bin/python benchmarks/denormals.py             # artifacts exported into --work if missing

Prints a Markdown table (kept -> flushed) and writes every raw number to --out/denormals.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_ab  # noqa: E402

CASES = [("smollm2-135m-instruct", "onnx", "fp32", "f32"), ("smollm2-135m-instruct", "onnx", "w4a8", "f32"),
         ("smollm2-135m-instruct", "onnx", "int4", "f32"), ("preset:t5-small", "onnx", "fp32", "f32"),
         ("preset:t5-small", "onnx", "w4a8", "f32")]
SETTINGS = {"kept": {"flush_denormals": "0"}, "flushed": {"flush_denormals": "1"}}
LEAD = [("model", lambda r: r["model"]), ("weights", lambda r: r["weights"])]


if __name__ == "__main__":
    env_ab.main(__doc__, CASES, SETTINGS, "denormals", "denormals.json", LEAD)
