"""edgeseq's ONNX artifact on onnxruntime-genai against onnxruntime-genai's own builder output.

Rows per precision (fp32, int4), SmolLM2-135M-Instruct real weights, one run:
  (a) edgeseq's artifact on edgeseq's onnxruntime engine (edgeseq's loop); for int4 both edgeseq's int4
      (float32 compute) and w4a8 (int8 activations, what the builder's int4 computes with)
  (b) the same artifact on engine ortgenai (onnxruntime-genai's Generator loop, edgeseq's clock)
  (c) onnxruntime-genai's builder output run by shared/peers/peer_ortgenai.py (its own clock)
Protocol (shared/peers'): batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads,
1 warm-up + 5 timed runs, medians; every row in its own process. Rows run round-robin in --rounds
rounds (default 3: each process 1 warm-up + 2 timed runs, medians over all 6), so that a slow spell of
this shared machine lands on every row. (a) and (b) are timed by `edgeseq
profile`'s runner; each also generates once from the peer's prompt ids, so the greedy ids of all three
rows can be compared. The artifacts are exported with --native ortgenai into --work when absent.

    flock /tmp/edgeseq-bench.lock .venv/bin/python benchmarks/native_ortgenai.py
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
SOURCE = "smollm2-135m-instruct"
# the builder's precision -> edgeseq's --weights compared with it: the builder's int4 computes with int8
# activations (MatMulNBits accuracy_level 4), which is edgeseq's w4a8; edgeseq's int4 computes in float32
PAIRS = {"fp32": ("fp32",), "int4": ("int4", "w4a8")}


def edgeseq_worker(a: argparse.Namespace) -> None:
    """One artifact on one engine: the profile runner's medians, and the greedy ids from the peer's prompt."""
    sys.path.insert(0, a.shared_peers)
    import _common as C  # the peers' prompt: the same ids as row (c)

    import edgeseq
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    cfg = ProfileConfig(input_lens=[a.input_len], output_lens=[a.output_len], warmup=a.warmup, reps=a.reps,
                        threads=a.threads, engine=a.engine)
    r = profile_artifact(a.artifact, cfg)[0]
    peer_args = argparse.Namespace(prompt="text", in_len=a.input_len,
                                   tokenizer=str(Path(a.artifact) / "tokenizer.json"),
                                   model=a.artifact)
    model = edgeseq.load(a.artifact, engine=a.engine, threads=a.threads)
    ids = C.prompt_ids(peer_args)
    gen = model.generate_ids([ids], GenerationConfig(max_new_tokens=a.output_len, ignore_eos=True)).ids[0]
    print(json.dumps({"tool": f"edgeseq {r['engine']}", "ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"],
                      "decode_tok_s": r["decode_tok_s"], "e2e_ms": r.get("e2e_ms"), "samples": r["samples"],
                      "peak_rss_mb": r["peak_rss_mb"], "load_ms": r["load_ms"], "precision": r["precision"],
                      "weights": r["weights"], "parity": r["parity"], "prompt_sha": _sha(ids), "gen_sha": _sha(gen),
                      "gen_head": gen[:8], "gen_ids": gen}))


def _sha(ids: list[int]) -> str:  # the peers' prompt_sha / gen_sha (shared/peers/_common.py)
    return hashlib.sha1(json.dumps(list(map(int, ids))).encode()).hexdigest()[:10]


def run(cmd: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1][:300] if lines else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_export(work: Path, weights: str) -> Path:
    from edgeseq.artifact.manifest import read
    from edgeseq.errors import EdgeseqError
    from edgeseq.export.pipeline import export

    art = work / f"{SOURCE}-onnx-{weights}"
    try:
        if read(art).native.get("ortgenai", {}).get("check", {}).get("status") == "passed":
            return art
    except EdgeseqError:
        pass
    export(SOURCE, art, format="onnx", weights=weights, native=("ortgenai",), overwrite=True)
    return art


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/i30/ortgenai", help="where edgeseq's artifacts are (exported if absent)")
    p.add_argument("--builder", default="/tmp/edgeseq-memory/ortgenai-smollm2-135m-instruct-{weights}",
                   help="onnxruntime-genai's builder output per precision ({weights}: fp32 / int4)")
    p.add_argument("--shared-peers", default="/work/shared/peers", help="the peer scripts (peer_ortgenai.py)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "native_ortgenai.json"))
    p.add_argument("--weights", default="fp32,int4")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="rows run round-robin; each round ceil(reps / rounds) "
                   "timed runs after its warm-up, medians over all")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        edgeseq_worker(a)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    per_round = -(-a.reps // a.rounds)
    proto = ["--input-len", str(a.input_len), "--output-len", str(a.output_len), "--reps", str(per_round),
             "--warmup", str(a.warmup), "--threads", str(a.threads), "--shared-peers", a.shared_peers]
    rows, commands = [], {}
    for weights in a.weights.split(","):
        builder = a.builder.format(weights=weights)
        arts = {own: ensure_export(Path(a.work), own) for own in PAIRS[weights]}
        for own, art in arts.items():
            for engine in ("onnxruntime", "ortgenai"):
                commands[(weights, f"edgeseq {own} artifact on {engine}")] = [
                    sys.executable, str(HERE), "--worker", "--engine", engine, "--artifact", str(art), *proto]
        commands[(weights, "onnxruntime-genai builder output")] = [
            sys.executable, str(Path(a.shared_peers) / "peer_ortgenai.py"), "--model", builder,
            "--tokenizer", str(next(iter(arts.values())) / "tokenizer.json"), "--in-len", str(a.input_len),
            "--out-len", str(a.output_len), "--reps", str(per_round), "--warmup", str(a.warmup),
            "--threads", str(a.threads)]
        rows.append({"weights": weights, "artifacts": {k: str(v) for k, v in arts.items()}, "builder": builder,
                     "tools": {}})
    # round-robin, order rotated each round: a slow spell of a shared machine lands on every row
    runs: dict[tuple[str, str], list[dict]] = {k: [] for k in commands}
    keys = list(commands)
    for r in range(a.rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            runs[key].append(run(commands[key], env))
            print(f"round {r + 1}/{a.rounds}: {key[0]} {key[1]} done", file=sys.stderr, flush=True)
    for row in rows:
        row["tools"] = {tool: merged(got) for (weights, tool), got in runs.items() if weights == row["weights"]}
    save(a, rows)
    table(rows)


def merged(results: list[dict]) -> dict:
    """One row from its rounds: medians over every timed run of every round, samples kept."""
    bad = [r for r in results if "error" in r]
    if bad:
        return bad[0]
    samples = {k: [x for r in results for x in r["samples"][k]] for k in ("ttft_ms", "tpot_ms", "decode_tok_s")}
    out = dict(results[-1], samples=samples, rounds=len(results),
               same_ids_every_round=len({r["gen_sha"] for r in results}) == 1)
    out.update({k: statistics.median(v) for k, v in samples.items()})
    return out


def save(a: argparse.Namespace, rows: list[dict]) -> None:
    from edgeseq.profile.bandwidth import copy_gb_s
    from edgeseq.profile.result import RunHeader

    keys = ("input_len", "output_len", "reps", "warmup", "threads", "rounds")
    header = RunHeader.here(copy_gb_s(threads=a.threads), {k: getattr(a, k) for k in keys})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({**header.to_dict(), "results": rows}, indent=2))
    print(header.host_line())


def table(rows: list[dict]) -> None:
    """Markdown: TTFT, TPOT, decode tok/s per row, ratios against the builder output of the same precision,
    and whether the greedy ids equal the builder output's."""
    heads = ["weights", "row", "TTFT ms", "TPOT ms", "decode tok/s", "tok/s vs builder", "TTFT vs builder",
             "same greedy ids as builder"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        base = r["tools"]["onnxruntime-genai builder output"]
        for tool, res in r["tools"].items():
            if "error" in res:
                print(f"| {r['weights']} | {tool} | failed: {res['error'][:100]} |" + " |" * (len(heads) - 3))
                continue
            ok = "error" not in base
            same = "-" if not ok or tool.startswith("onnxruntime-genai") else str(res["gen_sha"] == base["gen_sha"])
            print("| " + " | ".join([
                r["weights"], tool, f"{res['ttft_ms']:.1f}", f"{res['tpot_ms']:.2f}", f"{res['decode_tok_s']:.1f}",
                f"{res['decode_tok_s'] / base['decode_tok_s']:.2f}x" if ok else "-",
                f"{res['ttft_ms'] / base['ttft_ms']:.2f}x" if ok else "-", same]) + " |")


if __name__ == "__main__":
    main()
