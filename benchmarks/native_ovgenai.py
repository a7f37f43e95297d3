"""edgeseq's OpenVINO artifact on openvino.genai against openvino.genai on optimum-intel's own export,
in one run (issue 30).

SmolLM2-135M-Instruct (real weights), fp32 and int4 weights, the performance protocol (batch 1,
128 prompt tokens, 64 forced new tokens, greedy, 2 threads, 1 warm-up + 5 timed runs, medians),
every row at f32 compute with an f32 KV cache, each in its own process, one after the other:
  (a) edgeseq's artifact on edgeseq's openvino engine;
  (b) the same artifact (exported with --native ovgenai) on engine ovgenai, timed by edgeseq's clock;
  (c) openvino.genai's LLMPipeline on optimum-intel's export of the same weights, run by the shared
      peer script (../shared/peers/peer_ovgenai.py), its clock a streamer callback.
Both LLMPipeline rows use the pipeline's default attention backend (its prefix cache off).

    flock /tmp/edgeseq-bench.lock .venv/bin/python benchmarks/native_ovgenai.py \\
        --work /tmp/i30/ovgenai --optimum /tmp/edgeseq-memory
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import protocol_args, save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "smollm2-135m-instruct"
WEIGHTS = ("fp32", "int4")


def worker(a: argparse.Namespace) -> None:
    """One edgeseq row: profile the artifact on --engine, then its greedy ids (one JSON line)."""
    import edgeseq
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.profile.prompts import prompt_ids
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    cfg = ProfileConfig(input_lens=[a.input_len], output_lens=[a.output_len], warmup=a.warmup, reps=a.reps,
                        threads=a.threads, precision="f32", engine=a.engine)
    r = profile_artifact(a.artifact, cfg)[0]
    model = edgeseq.load(a.artifact, engine=a.engine, threads=a.threads, precision="f32")
    ids = prompt_ids(model.tokenizer, a.input_len, model.manifest.dims["vocab_size"])
    gen = model.generate_ids([ids], GenerationConfig(max_new_tokens=a.output_len, ignore_eos=True)).ids[0]
    print(json.dumps({"tool": f"edgeseq {r['engine']}", "gen_ids": gen, "ttft_ms": r["ttft_ms"],
                      "tpot_ms": r["tpot_ms"], "decode_tok_s": r["decode_tok_s"], "samples": r["samples"],
                      "peak_rss_mb": r["peak_rss_mb"], "precision": r["precision"], "weights": r["weights"],
                      "placement": r.get("placement"), "load_ms": r["load_ms"]}))


def run_json(cmd: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return {"error": lines[-1][:200] if lines else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    protocol_args(p)
    p.add_argument("--optimum", default="/tmp/edgeseq-memory",
                   help="holds optimum-ov-smollm2-135m-instruct-{fp32,int4} (optimum-cli export openvino)")
    p.add_argument("--hf", default="/tmp/edgeseq-memory/smollm2-135m-instruct-hf", help="its tokenizer.json")
    p.add_argument("--shared-peers", default="/work/shared/peers", help="the shared peer scripts")
    p.add_argument("--weights", default=",".join(WEIGHTS), help="comma list of " + ", ".join(WEIGHTS))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    protocol = ["--input-len", str(a.input_len), "--output-len", str(a.output_len), "--reps", str(a.reps),
                "--warmup", str(a.warmup), "--threads", str(a.threads)]
    rows = []
    for weights in a.weights.split(","):
        art = Path(a.work) / f"smollm2-{weights}"
        if not (art / "openvino_model.xml").exists():
            sys.exit(f"{art}: export it first: edgeseq export {SOURCE} --format openvino --weights {weights} "
                     f"--native ovgenai --out {art}")
        tools = {}
        for label, engine in (("(a) edgeseq artifact, edgeseq openvino", "openvino"),
                              ("(b) edgeseq artifact, openvino.genai", "ovgenai")):
            tools[label] = run_json([sys.executable, __file__, "--worker", "--engine", engine, "--artifact", str(art),
                                     *protocol])
        tools["(c) optimum-intel export, openvino.genai"] = run_json(
            [sys.executable, str(Path(a.shared_peers) / "peer_ovgenai.py"),
             "--model", str(Path(a.optimum) / f"optimum-ov-{SOURCE}-{weights}"), "--tokenizer",
             str(Path(a.hf) / "tokenizer.json"), "--name", SOURCE, "--in-len", str(a.input_len), "--out-len",
             str(a.output_len), "--reps", str(a.reps), "--warmup", str(a.warmup), "--threads", str(a.threads),
             "--precision", "f32"])
        rows.append({"model": SOURCE, "weights": weights, "tools": tools})
    save_report(a, rows, "native_ovgenai.json")
    table(rows)


def table(rows: list[dict]) -> None:
    """Medians per row, rates against (c) of the same weights; (a) and (b) get the same prompt ids, so
    their greedy tokens must agree (the peer script tokenizes a passage of its own: "-")."""
    heads = ["weights", "row", "precision", "TTFT ms", "TPOT ms", "decode tok/s", "tok/s vs (c)", "TTFT vs (c)",
             "same tokens as (a)"]
    print("| " + " | ".join(heads) + " |\n|" + "---|" * len(heads))
    for r in rows:
        tools = r["tools"]
        base, own = tools["(c) optimum-intel export, openvino.genai"], tools["(a) edgeseq artifact, edgeseq openvino"]
        for label, res in tools.items():
            if "error" in res:
                print(f"| {r['weights']} | {label} | failed: {res['error'][:100]} |" + " |" * (len(heads) - 3))
                continue
            vs = ["-", "-"] if "error" in base else [f"{res['decode_tok_s'] / base['decode_tok_s']:.2f}x",
                                                      f"{res['ttft_ms'] / base['ttft_ms']:.2f}x"]
            same = "-" if "gen_ids" not in res or "gen_ids" not in own else \
                ("yes" if res["gen_ids"] == own["gen_ids"] else "no")
            print(f"| {r['weights']} | {label} | {res.get('precision')} | {res['ttft_ms']:.1f} | "
                  f"{res['tpot_ms']:.2f} | {res['decode_tok_s']:.1f} | {vs[0]} | {vs[1]} | {same} |")


if __name__ == "__main__":
    main()
