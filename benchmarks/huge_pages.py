"""edgeseq with its weights moved into huge pages at load (runtimes/host/hugepages.py) against the same
artifact without (engine option huge_pages=1 against 0, so every engine is tried, whether or not it
does it by default): same weights, same run, the protocol of
benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads).
Each setting runs in its own process; the two alternate for --rounds rounds (benchmarks/env_ab.py).

    .venv/bin/python benchmarks/huge_pages.py            # artifacts exported into --work if missing

Prints a Markdown table (off -> on; load time included) and writes every raw number to
--out/huge_pages.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_ab  # noqa: E402

CASES = [("smollm2-135m-instruct", "onnx", "fp32", "f32"), ("smollm2-135m-instruct", "onnx", "w4a8", "f32"),
         ("smollm2-135m-instruct", "openvino", "fp32", "f32"), ("smollm2-135m-instruct", "openvino", "int8", "f32"),
         ("preset:t5-small", "onnx", "fp32", "f32")]
SETTINGS = {"off": {"huge_pages": "0"}, "on": {"huge_pages": "1"}}


LEAD = [("model", lambda r: r["model"]), ("format", lambda r: r["format"]), ("weights", lambda r: r["weights"]),
        ("load ms off / on", lambda r: f"{r['off']['load_ms']:.0f} / {r['on']['load_ms']:.0f}"),
        ("MB in huge pages", lambda r: str(r["on"].get("huge_pages", {}).get("mb", "?")))]


if __name__ == "__main__":
    env_ab.main(__doc__, CASES, SETTINGS, "huge pages", "huge_pages.json", LEAD)
