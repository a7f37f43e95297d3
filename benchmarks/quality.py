"""Quality of each quantized variant of a model, by `edgeseq eval`: perplexity, KL divergence against the
float PyTorch model (mean, p99), top-1 agreement (teacher-forced) and free greedy agreement, on the
built-in prose and chat texts, so a user can set speed against quality.

Every variant is exported from the same source (reused when already exported under --work) and scored
with the same ids against the same reference (the PyTorch model, float32); the fp32 rows show how
close an unquantized artifact is (the floor). TFLite variants are exported with --max-input 256
--max-output 256 so the longest scored passage fits their fixed cache.

    .venv/bin/python benchmarks/quality.py                       # SmolLM2-135M-Instruct, every variant
    .venv/bin/python benchmarks/quality.py --only onnx:int4 onnx:fp32 --tokens 512
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["onnx:fp32", "onnx:int4", "onnx:w4a8", "onnx:w8a8", "onnx:w8a8-token", "openvino:fp32",
            "openvino:fp16", "openvino:int8", "openvino:int4", "tflite:fp32", "tflite:int8", "tflite:int8-wo"]


def export_once(source: str, fmt: str, weights: str, out: Path) -> None:
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    if (out / "edgeseq.json").exists():
        return
    shape = StaticShape(max_input=256, max_output=256) if fmt == "tflite" else None
    export(source, out, format=fmt, weights=weights, shape=shape, overwrite=True, quiet=True, quality_tokens=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--only", nargs="*", default=None, help="FORMAT:WEIGHTS variants (default: all)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeseq-quality"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    a = ap.parse_args()
    from edgeseq.quality import EvalConfig, evaluate

    cfg = EvalConfig(tokens=a.tokens, prompts=a.prompts, steps=a.steps, threads=a.threads)
    rows = []
    for variant in a.only or VARIANTS:
        fmt, weights = variant.split(":")
        art = a.work / f"{a.model.replace(':', '-')}-{fmt}-{weights}"
        t = time.perf_counter()
        try:
            export_once(a.model, fmt, weights, art)
            r = evaluate(art, cfg)
        except Exception as e:  # a variant that does not export or run is a row that says so
            rows.append({"variant": variant, "error": f"{type(e).__name__}: {e}"})
            print(f"{variant}: {rows[-1]['error']}", file=sys.stderr, flush=True)
            continue
        r.update(variant=variant, format=fmt, seconds=round(time.perf_counter() - t, 1),
                 size_mb=round(sum(f.stat().st_size for f in art.iterdir() if f.is_file()) / 1e6, 1))
        rows.append(r)
        write(a, rows)  # after every row: a stopped run keeps what finished
        g = r["greedy"]
        print(f"{variant:<18} {r['size_mb']:>7.1f} MB  ppl {r['perplexity']:8.3f} (ref {r['reference_perplexity']:.3f})"
              f"  KL {r['kl_mean']:.4f} p99 {r['kl_p99']:.4f}  top-1 {r['top1_agreement']:.1%}  greedy "
              f"{g['token_agreement']:.1%} first diff {g['first_divergence']}", flush=True)
    write(a, rows)
    print(f"wrote {a.out}")
    return 0


def write(a: argparse.Namespace, rows: list[dict]) -> None:
    doc = {"model": a.model, "tokens": a.tokens, "prompts": a.prompts, "steps": a.steps, "threads": a.threads,
           "reference": "source (PyTorch float32)", "command": " ".join(["benchmarks/quality.py", *sys.argv[1:]]),
           "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    sys.exit(main())
