"""edgeseq's tflite artifact on edgeseq's litert engine, the same artifact's LiteRT-LM bundle on engine
litertlm (edgeseq's clock), and LiteRT-LM on litert-torch's own export (peers/peer_litertlm.py), in
one run: SmolLM2-135M-Instruct, the peers' protocol (128-token prompt, 64 forced new tokens, greedy,
2 threads, 1 warm-up + 5 timed, medians). Writes benchmarks/results/native_litertlm.json.

    python -m edgeseq export smollm2-135m-instruct --format tflite --max-input 128 --max-output 64 \\
        --prefill-buckets 128 --native litertlm --out /tmp/i30/litertlm/smol-fp32
    flock /tmp/edgeseq-bench.lock python benchmarks/native_litertlm.py --edgeseq fp32=/tmp/i30/litertlm/smol-fp32 \\
        --peer int8=/tmp/edgeseq-memory/litert-export-hf-smollm2-135m-instruct-128
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PEERS = Path("/work/shared/peers")
OUT = Path(__file__).parent / "results" / "native_litertlm.json"


def edgeseq_row(art: str, engine: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.json"
        cmd = [sys.executable, "-m", "edgeseq", "profile", art, "--engine", engine, "--input-len", "128",
               "--output-len", "64", "--reps", "5", "--warmup", "1", "--threads", str(threads), "--json", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = json.loads(out.read_text())["results"][0]
    return {k: r.get(k) for k in ("engine", "precision", "ttft_ms", "tpot_ms", "decode_tok_s", "load_ms")}


def peer_row(bundle: str, precision: str, threads: int) -> dict:
    cmd = [sys.executable, str(PEERS / "peer_litertlm.py"), "--model", bundle, "--precision", precision,
           "--threads", str(threads), "--tokenizer", str(Path(bundle) / "tokenizer.json")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    return {"engine": "LiteRT-LM (litert-torch export)", "precision": precision,
            **{k: r.get(k) for k in ("ttft_ms", "tpot_ms", "decode_tok_s")}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--edgeseq", action="append", default=[], help="PRECISION=ARTIFACT (exported with --native litertlm)")
    p.add_argument("--peer", action="append", default=[], help="PRECISION=FOLDER holding litert-torch's model.litertlm")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    rows = []
    for item in a.edgeseq:
        prec, art = item.split("=", 1)
        for engine, label in (("litert", "(a) edgeseq artifact, edgeseq litert engine"),
                              ("litertlm", "(b) edgeseq artifact bundled, LiteRT-LM")):
            rows.append({"row": label, "weights": prec, **edgeseq_row(art, engine, a.threads)})
    for item in a.peer:
        prec, folder = item.split("=", 1)
        rows.append({"row": "(c) litert-torch export, LiteRT-LM", "weights": prec, **peer_row(folder, prec, a.threads)})
    peer = {r["weights"]: r["decode_tok_s"] for r in rows if r["row"].startswith("(c)")}
    print(f"{'row':48} {'weights':7} {'ttft ms':>8} {'tpot ms':>8} {'tok/s':>8} {'vs (c)':>7}")
    for r in rows:
        ratio = r["decode_tok_s"] / peer[r["weights"]] if r["weights"] in peer else None
        r["vs_c"] = None if ratio is None else round(ratio, 3)
        print(f"{r['row']:48} {r['weights']:7} {r['ttft_ms']:8.1f} {r['tpot_ms']:8.2f} {r['decode_tok_s']:8.1f} "
              f"{'-' if ratio is None else f'{ratio:.2f}':>7}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"protocol": "128-token prompt, 64 forced new tokens, greedy, 1 warm-up + 5 timed, "
                                           f"medians, {a.threads} threads",
                               "command": " ".join(["benchmarks/native_litertlm.py", *sys.argv[1:]]), "rows": rows},
                              indent=1))


if __name__ == "__main__":
    main()
