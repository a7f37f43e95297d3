"""edgeseq's ONNX path against Hugging Face transformers `generate` (PyTorch eager), same weights.

Protocol (the foundation issue's and shared/peers'): batch 1, a prompt of exactly 128 tokens, 64
new tokens forced (EOS masked), greedy, 2 intra-op threads, 1 warm-up + 5 timed runs, medians.
Each tool runs in its own subprocess, one after the other, so neither's thread pool disturbs the
other; both get the same prompt ids (edgeseq's profiling passage, cut to length with the
artifact's tokenizer) and the same weights (the same source resolved the same way).

    python benchmarks/vs_transformers.py                      # smollm2-135m-instruct and preset:t5-small
    python benchmarks/vs_transformers.py --models preset:gpt2 --reps 3

Prints a Markdown table with ratios and writes every raw number to --out/vs_transformers.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve()


def hf_worker(a: argparse.Namespace) -> None:
    """Time transformers generate() with a streamer that stamps each new token id. `--device cuda`,
    `--precision bf16|f16` (the model's parameters cast) and `--static` (generate's static cache, whose
    decode forward transformers compiles itself) give the GPU baseline of benchmarks/gpu_check.sh."""
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers.generation.streamers import BaseStreamer

    from edgeseq.models import resolve
    from edgeseq.profile.prompts import prompt_ids

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    spec = resolve(a.source, seed=0)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.precision]
    model = spec.model.eval().to(a.device, dtype)
    tok = Tokenizer.from_file(str(Path(a.artifact) / "tokenizer.json"))
    ids = torch.tensor([prompt_ids(tok, a.input_len, spec.dims.vocab_size)], device=a.device)
    extra = {"cache_implementation": "static"} if a.static else {}

    class Stamp(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.ids: list[int] = []
            self.skip = True  # generate() first puts the prompt (decoder-only) or the start token

        def put(self, value: torch.Tensor) -> None:
            token = int(value.reshape(-1)[0])  # on a GPU: waits until the token exists
            t = time.perf_counter()
            if self.skip:
                self.skip = False
                return
            self.times.append(t)
            self.ids.append(token)

        def end(self) -> None:
            pass

    rows = []
    for r in range(a.warmup + a.reps):
        s = Stamp()
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=s, do_sample=False,
                           num_beams=1, max_new_tokens=a.output_len, min_new_tokens=a.output_len, **extra)
        assert len(s.times) == a.output_len, len(s.times)
        if r >= a.warmup:
            gaps = [y - x for x, y in zip(s.times, s.times[1:])]
            rows.append({"ttft_ms": (s.times[0] - t0) * 1e3, "tpot_ms": statistics.median(gaps) * 1e3,
                         "decode_tok_s": (len(s.times) - 1) / (s.times[-1] - s.times[0])})
    tool = "transformers static cache (compiled by generate)" if a.static else "transformers eager"
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    # generate compiles the decode forward itself (CUDA and a static cache): whether it did, not assumed
    compiled = hasattr(model, "_compiled_call")
    print(json.dumps({"tool": tool, "device": a.device, "precision": a.precision, "versions": versions,
                      "compiled_by_generate": compiled, "gen_ids": s.ids, **_medians(rows), "samples": rows}))


def edgeseq_worker(a: argparse.Namespace) -> None:
    import edgeseq
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.profile.prompts import prompt_ids
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    from edgeseq.runtimes.options import parse_pairs

    options = parse_pairs(a.engine_option)
    cfg = ProfileConfig(input_lens=[a.input_len], output_lens=[a.output_len], warmup=a.warmup, reps=a.reps,
                        threads=a.threads, precision=a.precision, engine_options=options)
    r = profile_artifact(a.artifact, cfg)[0]
    model = edgeseq.load(a.artifact, threads=a.threads, precision=a.precision, engine_options=options)
    ids = prompt_ids(model.tokenizer, a.input_len, model.manifest.dims["vocab_size"])
    gen = model.generate_ids([ids], GenerationConfig(max_new_tokens=a.output_len, ignore_eos=True)).ids[0]
    print(json.dumps({"tool": f"edgeseq {r['engine']}", "versions": model.manifest.tools, "gen_ids": gen,
                      "ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"], "decode_tok_s": r["decode_tok_s"],
                      "samples": r["samples"], "parity": r["parity"], "peak_rss_mb": r["peak_rss_mb"],
                      "precision": r["precision"], "weights": r["weights"], "napkin": r["napkin"],
                      "max_abs_diff": model.manifest.parity.get("max_abs_diff"),
                      "activations": (r.get("placement") or {}).get("activations"), "load_ms": r["load_ms"],
                      "huge_pages": r["huge_pages"]}))


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def _worker(tool: str, a: argparse.Namespace, source: str, artifact: Path, precision: str = "f32",
            env: dict[str, str] | None = None, options: dict[str, str] | None = None) -> dict:
    """One measurement in its own process; `options`: the engine's options (NAME -> value) for edgeseq."""
    cmd = [sys.executable, str(HERE), "--worker", tool, "--source", source, "--artifact", str(artifact),
           "--input-len", str(a.input_len), "--output-len", str(a.output_len), "--reps", str(a.reps),
           "--warmup", str(a.warmup), "--threads", str(a.threads), "--precision", precision]
    cmd += [f"--engine-option={k}={v}" for k, v in (options or {}).items()]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), **(env or {}))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": f"{tool} worker failed: {lines[-1][:200] if lines else f'exit {out.returncode}'}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def protocol_args(p: argparse.ArgumentParser) -> None:
    """The protocol's knobs and where results go, shared by every benchmark script."""
    p.add_argument("--work", default="benchmarks/work", help="where artifacts are exported (reused if present)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)


def save_report(a: argparse.Namespace, rows: list, name: str) -> None:
    """Write rows with the host, protocol and a fresh bandwidth figure to --out/name; print the host line."""
    from edgeseq.profile.bandwidth import copy_gb_s
    from edgeseq.profile.result import RunHeader

    header = RunHeader.here(copy_gb_s(threads=a.threads),
                            {k: getattr(a, k) for k in ("input_len", "output_len", "reps", "warmup", "threads")})
    doc = {**header.to_dict(), "results": rows}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / name).write_text(json.dumps(doc, indent=2))
    print("\n" + header.host_line())


Column = tuple[str, Callable[[dict], str]]  # header, result -> cell


def print_tools(rows: list, middle: Sequence[Column] = (), last: Sequence[Column] = ()) -> None:
    """The Markdown table of rows {model, random_weights, tools: {"<tool> <weights>": result}} with
    ratios against "edgeseq onnxruntime fp32"; `middle` columns go before the ratios, `last` after."""
    heads = ["model", "tool", "weights", "TTFT ms", "decode tok/s", *(h for h, _ in middle),
             "TTFT vs edgeseq ORT", "tok/s vs edgeseq ORT", *(h for h, _ in last)]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        base = r["tools"]["edgeseq onnxruntime fp32"]
        name = r["model"] + (" (random weights)" if r["random_weights"] else "")
        for tool, res in r["tools"].items():
            label, weights = tool.rsplit(" ", 1)
            if "error" in res:
                print(f"| {name} | {label} | {weights} | failed: {res['error'][:80]} |" + " |" * (len(heads) - 4))
                continue
            cells = [name, label, weights, f"{res['ttft_ms']:.1f}", f"{res['decode_tok_s']:.1f}",
                     *(cell(res) for _, cell in middle), f"{res['ttft_ms'] / base['ttft_ms']:.2f}x",
                     f"{res['decode_tok_s'] / base['decode_tok_s']:.2f}x", *(cell(res) for _, cell in last)]
            print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="smollm2-135m-instruct,preset:t5-small")
    protocol_args(p)
    p.add_argument("--worker", choices=["hf", "edgeseq"], help=argparse.SUPPRESS)
    p.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    p.add_argument("--engine-option", action="append", default=None, help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)  # hf worker: cpu | cuda
    p.add_argument("--static", action="store_true", help=argparse.SUPPRESS)  # hf worker: generate's static cache
    a = p.parse_args()
    if a.worker:
        (hf_worker if a.worker == "hf" else edgeseq_worker)(a)
        return

    from edgeseq.errors import EdgeseqError
    from edgeseq.export.pipeline import export
    from edgeseq.artifact.manifest import read

    rows = []
    for source in a.models.split(","):
        art = Path(a.work) / (source.replace("preset:", "") + "-onnx")
        try:
            read(art)
        except EdgeseqError:
            export(source, art, overwrite=True)
        hf = _worker("hf", a, source, art)
        es = _worker("edgeseq", a, source, art)
        for res in (hf, es):
            if "error" in res:
                sys.exit(f"{source}: {res['error']}")
        rows.append({"model": source, "random_weights": source.startswith("preset:"), "transformers": hf,
                     "edgeseq": es, "ttft_speedup": hf["ttft_ms"] / es["ttft_ms"],
                     "decode_speedup": es["decode_tok_s"] / hf["decode_tok_s"],
                     "same_greedy_tokens": hf["gen_ids"] == es["gen_ids"]})
    save_report(a, rows, "vs_transformers.json")
    print_pairs(rows, "transformers", "edgeseq",
                [("model", lambda r: r["model"] + (" (random weights)" if r["random_weights"] else ""))])


def print_pairs(rows: list, before: str, after: str, lead: Sequence[Column]) -> None:
    """The Markdown table of rows that each time two settings (`r[before]`, `r[after]`, worker results)
    on the same artifact: TTFT and decode rate of each, the speed-ups of `after`, same greedy tokens."""
    heads = [h for h, _ in lead] + [f"{before} TTFT ms", f"{after} TTFT ms", "TTFT speed-up", f"{before} tok/s",
                                    f"{after} tok/s", "decode speed-up", "same greedy tokens"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        b, f = r[before], r[after]
        cells = [cell(r) for _, cell in lead] + [
            f"{b['ttft_ms']:.1f}", f"{f['ttft_ms']:.1f}", f"{b['ttft_ms'] / f['ttft_ms']:.2f}x",
            f"{b['decode_tok_s']:.1f}", f"{f['decode_tok_s']:.1f}", f"{f['decode_tok_s'] / b['decode_tok_s']:.2f}x",
            "yes" if b["gen_ids"] == f["gen_ids"] else "no"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
