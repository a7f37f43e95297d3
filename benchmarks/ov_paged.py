"""edgeseq's OpenVINO CPU engine with a decoder-only step's cache in paged-attention blocks (the
default, runtimes/ov_paged.py) against the same step with its cache as OpenVINO state
(EDGESEQ_OPENVINO_PAGED=0, runtimes/ov_state.py): same artifacts, same run, the protocol of
benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads).
Each setting runs in its own process; the two alternate for --rounds rounds (benchmarks/env_ab.py).

    .venv/bin/python benchmarks/ov_paged.py             # artifacts exported into --work if missing

Prints a Markdown table (state -> paged) and writes every raw number to --out/ov_paged.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_ab import parser, run_pairs  # noqa: E402
from vs_transformers import print_pairs, save_report  # noqa: E402

# (source, format, weights, --precision): "default" is the plugin's choice (bf16 compute, u8 cache here)
CASES = [("smollm2-135m-instruct", "openvino", "fp32", "f32"), ("smollm2-135m-instruct", "openvino", "fp32", "bf16"),
         ("smollm2-135m-instruct", "openvino", "fp32", "default"), ("smollm2-135m-instruct", "openvino", "int8", "f32"),
         ("smollm2-135m-instruct", "openvino", "int4", "f32")]
SETTINGS = {"state": {"EDGESEQ_OPENVINO_PAGED": "0"}, "paged": {"EDGESEQ_OPENVINO_PAGED": "1"}}
LEAD = [("model", lambda r: r["model"]), ("weights", lambda r: r["weights"]), ("precision", lambda r: r["precision"])]


def main() -> None:
    a = parser(__doc__).parse_args()
    rows = run_pairs(a, CASES, SETTINGS, "kv cache")
    for row, case in zip(rows, CASES):
        row["precision"] = case[3]
    save_report(a, rows, "ov_paged.json")
    print_pairs(rows, "state", "paged", LEAD)


if __name__ == "__main__":
    main()
