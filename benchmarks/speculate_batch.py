"""Speculative decoding on batches: throughput at batch 1, 2, 4 and 8 with and without speculation,
every row's output checked against its own batch-1 plain greedy output, and the two ways of keeping a
batch's rows aligned (generate/speculate.py: realign, refeed) side by side.

SmolLM2-135M-Instruct (real weights) on OpenVINO fp32 (f32 compute; its KV cache forms can forget a
different count per row) with the chat template, greedy, EOS respected, 2 threads. A batch of b takes
the first b prompts of benchmarks/speculate_prompts.py, grounded and chat alternating. Rows run
round-robin over --rounds; medians. Throughput = new tokens of all rows / the generate call's time.
`overhead` is the share of fed token slots that were re-fed or filler (realign: filler only) and the
share of the time spent rewinding caches. The paged rows (OpenVINO's default for a decoder-only step)
are compared with the paged plain row, the state-form rows (`engine_options={"paged": False}`, where
realign and refeed both apply) with the state-form plain row.

    .venv/bin/python benchmarks/speculate_batch.py --work /tmp/edgeseq-speculate-batch
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speculate_prompts import PROMPTS  # noqa: E402

SOURCE = "smollm2-135m-instruct"
EXPORTS = {"openvino-fp32": ("openvino", "fp32"), "openvino-int8": ("openvino", "int8")}


def prepare(work: Path) -> None:
    for name, (fmt, weights) in EXPORTS.items():
        out = work / name
        if not (out / "edgeseq.json").exists():
            print(f"exporting {name}", flush=True)
            subprocess.run([sys.executable, "-m", "edgeseq", "export", SOURCE, "--format", fmt, "--weights", weights,
                            "--out", str(out), "--overwrite"], check=True)


def mixed_prompts() -> list[str]:
    grounded = [p for s, _, p in PROMPTS if s == "grounded"]
    chat = [p for s, _, p in PROMPTS if s == "chat"]
    return [p for pair in zip(grounded, chat) for p in pair]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/edgeseq-speculate-batch", help="exports (made if absent)")
    p.add_argument("--out", default=str(HERE / "results" / "speculate_batch.json"))
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--draft-tokens", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    prepare(work)

    import edgeseq
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.generate.loop import run
    from edgeseq.generate.proposers import LookupThenDraft
    from edgeseq.generate.speculate import run as speculate

    batches = [int(b) for b in a.batches.split(",")]
    prompts = mixed_prompts()[:max(batches)]
    cfg = GenerationConfig(max_new_tokens=a.max_new_tokens).validate()
    models = {"paged": edgeseq.load(work / "openvino-fp32", threads=a.threads),
              "state": edgeseq.load(work / "openvino-fp32", threads=a.threads, engine_options={"paged": False})}
    draft = edgeseq.load(work / "openvino-int8", threads=a.threads)
    rows_of = {id(m): [m.encode(t, chat=True) for t in prompts] for m in models.values()}
    reference = {form: [run(m.backend, [r], cfg, m.gen_defaults)[0][0] for r in rows_of[id(m)]]
                 for form, m in models.items()}
    # (label, cache form, proposer or None, strategy)
    plan = [("plain", "paged", None, "auto"), ("lookup", "paged", "lookup", "auto"),
            ("draft int8", "paged", "draft", "auto"), ("lookup+draft int8", "paged", "lookup+draft", "auto"),
            ("plain state", "state", None, "auto"), ("lookup realign", "state", "lookup", "realign"),
            ("lookup refeed", "state", "lookup", "refeed")]
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(a.rounds):
        for label, form, spec, strategy in plan:
            m = models[form]
            for b in batches:
                if b == 1 and strategy == "refeed":
                    continue  # one row: nothing to realign
                rows = rows_of[id(m)][:b]
                rewind = [0.0]
                trim_rows, trim = m.backend.trim_rows, m.backend.trim

                def timed(f: Any) -> Any:
                    def g(*args: Any) -> Any:
                        t = time.perf_counter()
                        try:
                            return f(*args)
                        finally:
                            rewind[0] += time.perf_counter() - t
                    return g
                m.backend.trim_rows, m.backend.trim = timed(trim_rows), timed(trim)
                t = time.perf_counter()
                try:
                    if spec is None:
                        ids, _ = run(m.backend, rows, cfg, m.gen_defaults)
                        stats = None
                    else:
                        proposer = LookupThenDraft(m.proposer(draft)) if spec == "lookup+draft" else \
                            m.proposer("lookup" if spec == "lookup" else draft)
                        ids, _, st = speculate(m.backend, rows, cfg, m.gen_defaults, proposer, a.draft_tokens,
                                                     strategy)
                        stats = st.as_dict()
                finally:
                    m.backend.trim_rows, m.backend.trim = trim_rows, trim
                wall = time.perf_counter() - t
                new = sum(len(r) for r in ids)
                same = sum(got == want for got, want in zip(ids, reference[form]))
                samples.setdefault((label, b), []).append(
                    {"tok_s": new / wall, "new_tokens": new, "same": same, "rewind_share": rewind[0] / wall,
                     "speculation": stats})
                print(f"round {rnd + 1} {label:>18} b={b}: {new / wall:7.1f} tok/s, {same}/{b} rows equal to batch-1 "
                      f"plain" + (f", {stats['tokens_per_step']:.2f} tokens/step, overhead slots "
                                  f"{stats['overhead_share']:.1%}" if stats else ""), flush=True)
    summary = []
    for (label, b), runs in samples.items():
        base = samples.get(("plain state" if label.startswith(("lookup realign", "lookup refeed", "plain state"))
                            else "plain", b))
        tok_s = statistics.median(r["tok_s"] for r in runs)
        row = {"row": label, "batch": b, "tok_s": round(tok_s, 1),
               "vs_plain": round(tok_s / statistics.median(r["tok_s"] for r in base), 2) if base else None,
               "rows_equal": f"{min(r['same'] for r in runs)}/{b}",
               "rewind_time_share": round(statistics.median(r["rewind_share"] for r in runs), 4)}
        st = runs[-1]["speculation"]
        if st:
            row.update({k: st[k] for k in ("strategy", "acceptance_rate", "tokens_per_step", "overhead_share")})
        summary.append(row)
    print("\n| row | batch | tok/s | vs plain | rows equal to batch-1 plain | tokens/step | acceptance | strategy "
          "| overhead slots | rewind time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in summary:
        print(f"| {r['row']} | {r['batch']} | {r['tok_s']} | {r['vs_plain'] or '-'}x | {r['rows_equal']} | "
              f"{r.get('tokens_per_step', '-')} | {r.get('acceptance_rate', '-')} | {r.get('strategy', '-')} | "
              f"{r.get('overhead_share', '-')} | {r['rewind_time_share']:.2%} |")
    Path(a.out).write_text(json.dumps({"protocol": vars(a), "model": SOURCE, "engine": "openvino f32",
                                       "summary": summary,
                                       "samples": {f"{k[0]}|{k[1]}": v for k, v in samples.items()}}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
