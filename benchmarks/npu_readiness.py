"""NPU readiness without the device: each recipe of `--target npu` compiled and run on onnxruntime-qnn's
HTP simulator, with the share of nodes placed on HTP and the agreement with the CPU float artifact.

For each model and recipe (fp32 graphs run by HTP in float16, w8a16 and w8a8 QDQ): export with
--target npu, load on `npu` (compile time cold, load time from the compile cache), read the
placement report (nodes on HTP, fallbacks by op type), then feed the parity prompt and 32 greedy
steps of the CPU float artifact's tokens to both and compare every step's logits (token agreement,
largest logit difference). The simulator's timings are not device timings and are not reported.

    .venv/bin/python benchmarks/npu_readiness.py            # SmolLM2-135M-Instruct and t5-small
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("fp32", "w8a16", "w8a8")


def export_once(source: str, out: Path, weights: str, max_input: int, max_output: int) -> None:
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    if not (out / "edgeseq.json").exists():
        export(source, out, target="npu", weights=weights, shape=StaticShape(max_input, max_output), overwrite=True,
               keep_failed=True)


def main() -> None:
    from edgeseq.accuracy import prompt_ids
    from edgeseq.artifact.manifest import read
    from edgeseq.accuracy import agreement
    from edgeseq.runtimes import BackendOptions, open_backend
    from edgeseq.runtimes.engines import qnn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm2-135m-instruct,preset:t5-small")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--max-input", type=int, default=128)
    p.add_argument("--max-output", type=int, default=64)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--work", default="/tmp/edgeseq-npu")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "npu_readiness.json"))
    a = p.parse_args()
    # a compile cache of this run's own, so "compile ms" is a compile
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cache-", dir=Path(a.work).mkdir(parents=True, exist_ok=True)
                                                    or a.work)
    rows = []
    for source in a.models.split(","):
        name = source.split(":")[-1]
        base = Path(a.work) / f"{name}-fp32"
        export_once(source, base, "fp32", a.max_input, a.max_output)
        m0 = read(base)
        reference = open_backend(base, m0, "cpu", "onnxruntime", BackendOptions(threads=2))
        prompt = prompt_ids((base / "tokenizer.json").read_text(), m0.kind, m0.generation, m0.dims["vocab_size"])
        for recipe in a.recipes.split(","):
            art = Path(a.work) / f"{name}-{recipe}"
            t = time.perf_counter()
            export_once(source, art, recipe, a.max_input, a.max_output)
            m = read(art)
            device = open_backend(art, m, "npu", "onnxruntime", BackendOptions(threads=2))
            cold = device.load_ms
            warm = open_backend(art, m, "npu", "onnxruntime", BackendOptions(threads=2)).load_ms
            place = device.placement()["npu"]
            agree = agreement(device, reference, prompt[: a.max_input], a.steps)
            rows.append({"model": m.label, "recipe": recipe, "precision": device.precision,
                         "size_mb": round(sum(f["bytes"] for f in m.files.values()) / 1e6, 1),
                         "node_share": place["node_share"], "nodes": place["nodes"],
                         "fallback_ops": place["fallback_ops"], "fallback_reasons": place["fallback_reasons"],
                         "graphs": place["graphs"], "load_cold_ms": round(cold), "load_cached_ms": round(warm),
                         "export_parity": {k: m.parity.get(k) for k in ("status", "max_abs_diff", "tolerance")},
                         **{k: v for k, v in agree.items() if k != "reference_tokens"},
                         "simulated": place["simulated"], "wall_s": round(time.perf_counter() - t, 1)})
            r = rows[-1]
            print(f"{r['model']:<40} {recipe:<6} nodes on HTP {r['node_share']:.1%} of {r['nodes']}; tokens agree "
                  f"{r['token_agreement']:.0%}; max |logit diff| {r['max_abs_logit_diff']:.3g}; "
                  f"export parity {r['export_parity']['status']}", file=sys.stderr, flush=True)
    print(f"| model | recipe | HTP precision | size MB | nodes on HTP | fallback ops | tokens agree ({a.steps} steps) "
          "| max abs logit diff | rel | PyTorch parity (CPU provider) | compile ms | cached load ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fb = ", ".join(f"{k} x{v}" for k, v in r["fallback_ops"].items()) or "none"
        ep = r["export_parity"]
        print(f"| {r['model']} | {r['recipe']} | {r['precision']} | {r['size_mb']} | {r['node_share']:.1%} of "
              f"{r['nodes']} | {fb} | {r['token_agreement']:.0%} | {r['max_abs_logit_diff']:.3g} | "
              f"{r['max_rel_logit_diff']:.3f} | {ep['status']} ({ep['max_abs_diff']:.3g} / {ep['tolerance']:.3g}) | "
              f"{r['load_cold_ms']} | {r['load_cached_ms']} |")
    print(f"\nonnxruntime-qnn HTP simulator (soc_model {qnn.SOC_MODEL}): {qnn.SIMULATED}; compile and load times "
          "are this host's")
    Path(a.json).write_text(json.dumps({"protocol": vars(a), "results": rows}, indent=2))
    print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
