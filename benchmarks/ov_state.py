"""edgeseq's OpenVINO CPU engine with the KV cache as OpenVINO state against the exported
explicit-cache graph: same artifacts, same run, same protocol as benchmarks/vs_transformers.py
(batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads, 1 warm-up + 5 runs, medians;
each setting in its own process, engine option stateful=0 for the explicit graph).

    .venv/bin/python benchmarks/ov_state.py            # artifacts exported into --work if missing

Prints a Markdown table with the ratios and writes every raw number to --out/ov_state.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_openvino import ensure_export  # noqa: E402
from vs_transformers import _worker, print_pairs, protocol_args, save_report  # noqa: E402

# (source, weights, --precision)
CASES = [("smollm2-135m-instruct", "fp32", "f32"), ("smollm2-135m-instruct", "fp32", "bf16"),
         ("smollm2-135m-instruct", "int8", "f32"), ("smollm2-135m-instruct", "int4", "f32"),
         ("preset:t5-small", "fp32", "f32"), ("preset:t5-small", "fp32", "bf16"), ("preset:t5-small", "int8", "f32")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    protocol_args(p)
    a = p.parse_args()
    rows = []
    for source, weights, precision in CASES:
        art = ensure_export(source, Path(a.work) / f"{source.split(':')[-1]}-openvino-{weights}", "openvino", weights)
        got = {mode: _worker("edgeseq", a, source, art, precision,
                             options={"stateful": flag, "paged": "0"})
               for mode, flag in (("explicit", "0"), ("state", "1"))}
        for res in got.values():
            if "error" in res:
                sys.exit(f"{source} {weights} {precision}: {res['error']}")
        rows.append({"model": source, "weights": weights, "precision": precision, **got,
                     "same_greedy_tokens": got["explicit"]["gen_ids"] == got["state"]["gen_ids"]})
    save_report(a, rows, "ov_state.json")
    print_pairs(rows, "explicit", "state", LEAD)


LEAD = [("model", lambda r: r["model"]), ("weights", lambda r: r["weights"]), ("compute", lambda r: r["precision"])]


if __name__ == "__main__":
    main()
