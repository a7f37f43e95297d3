"""The torch-compile engine on the CPU, against the eager torch reference and ONNX Runtime on the same artifact.

Protocol (the performance protocol): batch 1, a 128-token prompt, 64 new tokens forced, greedy, 2 threads,
1 warm-up + 5 timed runs, medians; each row in its own process, one after the other. The PyTorch rows rebuild
the model from the artifact's source (SmolLM2-135M-Instruct's real weights), the ONNX Runtime row runs its
graphs. The compile happens at load (`load ms`), not in the timed runs. The GPU figures come from
benchmarks/gpu_check.sh on a CUDA machine.

    python benchmarks/torch_compile.py                    # exports SmolLM2 to benchmarks/work if needed
    python benchmarks/torch_compile.py --artifact DIR --reps 3

Prints a Markdown table with ratios against ONNX Runtime and writes benchmarks/results/torch_compile.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from row_process import run_row  # noqa: E402
from vs_transformers import protocol_args, save_report  # noqa: E402

# (label, engine, precision, engine options)
ROWS = [("onnxruntime fp32", "onnxruntime", "f32", {}),
        ("torch (eager reference) f32", "torch", "f32", {}),
        ("torch-compile f32", "torch-compile", "f32", {}),
        ("torch-compile int8 weight-only", "torch-compile", "f32", {"weights": "int8"}),
        ("torch-compile bf16", "torch-compile", "bf16", {})]


def worker(a: argparse.Namespace) -> None:
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    cfg = ProfileConfig(input_lens=[a.input_len], output_lens=[a.output_len], warmup=a.warmup, reps=a.reps,
                        threads=a.threads, engine=a.engine, precision=a.precision,
                        engine_options=json.loads(a.options)).validate()
    r = profile_artifact(a.artifact, cfg)[0]
    print(json.dumps({k: r.get(k) for k in ("engine", "precision", "ttft_ms", "tpot_ms", "decode_tok_s", "load_ms",
                                            "peak_rss_mb", "placement", "engine_options")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    protocol_args(p)
    p.add_argument("--artifact", default=None, help="an artifact of SmolLM2-135M-Instruct (default: exported to "
                   "--work/smollm2-135m-instruct-onnx)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    p.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    from edgeseq.artifact.manifest import read
    from edgeseq.errors import EdgeseqError
    from edgeseq.export.pipeline import export

    art = Path(a.artifact or Path(a.work) / "smollm2-135m-instruct-onnx")
    try:
        read(art)
    except EdgeseqError:
        export("smollm2-135m-instruct", art, overwrite=True)
    results = []
    for label, engine, precision, options in ROWS:
        cmd = [sys.executable, __file__, "--worker", "--artifact", str(art), "--engine", engine, "--precision",
               precision, "--options", json.dumps(options), "--input-len", str(a.input_len), "--output-len",
               str(a.output_len), "--reps", str(a.reps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
        print(f"{label} ...", file=sys.stderr, flush=True)
        results.append({"row": label, **run_row(cmd, a.threads)})
    save_report(a, results, "torch_compile.json")
    base = results[0]
    print("| row | TTFT ms | TPOT ms | decode tok/s | load ms | peak RSS MB | tok/s vs ORT |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['row']} | failed: {r['error'][:100]} | | | | | |")
            continue
        ratio = f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x" if "decode_tok_s" in base else "-"
        print(f"| {r['row']} | {r['ttft_ms']:.1f} | {r['tpot_ms']:.2f} | {r['decode_tok_s']:.1f} | "
              f"{r['load_ms']:.0f} | {r['peak_rss_mb']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
