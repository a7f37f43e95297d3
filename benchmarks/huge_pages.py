"""edgeseq with its weights moved into huge pages at load (runtimes/hugepages.py) against the same
artifact without (EDGESEQ_HUGE_PAGES=1 against 0, so every engine is tried, whether or not it does
it by default): same weights, same run, the protocol of
benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads).
Each setting runs in its own process; the two alternate for --rounds rounds (each process 1 warm-up
+ ceil(reps / rounds) timed runs), medians over all rounds' samples, so that a drift of this shared
machine touches both alike.

    .venv/bin/python benchmarks/huge_pages.py            # artifacts exported into --work if missing

Prints a Markdown table (off -> on; load time included) and writes every raw number to
--out/huge_pages.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_openvino import ensure_export  # noqa: E402
from vs_peers import merge_rounds  # noqa: E402
from vs_transformers import _worker, print_pairs, protocol_args, save_report  # noqa: E402

# (source, format, weights, OpenVINO precision)
CASES = [("smollm2-135m-instruct", "onnx", "fp32", "f32"), ("smollm2-135m-instruct", "onnx", "w4a8", "f32"),
         ("smollm2-135m-instruct", "openvino", "fp32", "f32"), ("smollm2-135m-instruct", "openvino", "int8", "f32"),
         ("preset:t5-small", "onnx", "fp32", "f32")]
SETTINGS = {"off": {"EDGESEQ_HUGE_PAGES": "0"}, "on": {"EDGESEQ_HUGE_PAGES": "1"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    protocol_args(p)
    p.add_argument("--rounds", type=int, default=3, help="alternating processes per setting")
    a = p.parse_args()
    arts = [(c, ensure_export(c[0], Path(a.work) / f"{c[0].split(':')[-1]}-{c[1]}-{c[2]}", c[1], c[2]))
            for c in CASES]
    a.reps = -(-a.reps // a.rounds)
    runs: dict[tuple[int, str], list[dict]] = {}
    for rnd in range(a.rounds):
        for i, ((source, fmt, weights, precision), art) in enumerate(arts):
            order = list(SETTINGS) if rnd % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                print(f"round {rnd + 1}/{a.rounds}: {art.name} huge pages {name}", file=sys.stderr, flush=True)
                runs.setdefault((i, name), []).append(_worker("edgeseq", a, source, art, precision=precision,
                                                              env=SETTINGS[name]))
    rows = []
    for i, ((source, fmt, weights, _), art) in enumerate(arts):
        got = {name: merge_rounds(runs[(i, name)]) for name in SETTINGS}
        for name, res in got.items():
            if "error" in res:
                sys.exit(f"{art.name} huge pages {name}: {res['error']}")
            res["load_ms"] = statistics.median(r["load_ms"] for r in runs[(i, name)])
        rows.append({"model": source, "format": fmt, "weights": weights, **got})
    save_report(a, rows, "huge_pages.json")
    print_pairs(rows, "off", "on", LEAD)


LEAD = [("model", lambda r: r["model"]), ("format", lambda r: r["format"]), ("weights", lambda r: r["weights"]),
        ("load ms off / on", lambda r: f"{r['off']['load_ms']:.0f} / {r['on']['load_ms']:.0f}"),
        ("MB in huge pages", lambda r: str(r["on"].get("huge_pages", {}).get("mb", "?")))]


if __name__ == "__main__":
    main()
