"""edgeseq's OpenVINO CPU engine with a decoder-only step's cache in paged-attention blocks (the
default, runtimes/engines/openvino_paged.py) against the same step with its cache as OpenVINO state
(engine option paged=0, runtimes/engines/openvino_state.py): same artifacts, same run, the protocol of
benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads).
Each setting runs in its own process; the two alternate for --rounds rounds (benchmarks/env_ab.py).

    .venv/bin/python benchmarks/ov_paged.py             # artifacts exported into --work if missing

Prints a Markdown table (state -> paged) and writes every raw number to --out/ov_paged.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_ab  # noqa: E402

# (source, format, weights, --precision): "default" is the plugin's choice (bf16 compute, u8 cache here)
CASES = [("smollm2-135m-instruct", "openvino", "fp32", "f32"), ("smollm2-135m-instruct", "openvino", "fp32", "bf16"),
         ("smollm2-135m-instruct", "openvino", "fp32", "default"), ("smollm2-135m-instruct", "openvino", "int8", "f32"),
         ("smollm2-135m-instruct", "openvino", "int4", "f32")]
SETTINGS = {"state": {"paged": "0"}, "paged": {"paged": "1"}}
LEAD = [("model", lambda r: r["model"]), ("weights", lambda r: r["weights"]), ("precision", lambda r: r["precision"])]


if __name__ == "__main__":
    env_ab.main(__doc__, CASES, SETTINGS, "kv cache", "ov_paged.json", LEAD)
