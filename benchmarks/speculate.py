"""Speculative decoding on SmolLM2-135M-Instruct (real weights): edgeseq's prompt lookup and draft-model
speculation against its own plain greedy decode and against the peers' speculative modes, one protocol.

Protocol: the packaged smollm2-135m-instruct (the GGUF, de-quantized to float32), 2 threads, batch 1, greedy,
the chat template applied, at most --max-new-tokens new tokens with EOS ending a row (not forced; the tokens
generated are reported). Two prompt sets written below: "grounded" (an instruction over a passage of about
300 tokens: summarise, rewrite, extract, answer from it; where copying from the prompt makes prompt lookup
pay) and "chat" (short open questions; little to copy). Every row runs in its own process: load, 1 warm-up
generation (the first prompt), then every prompt once; --rounds processes per row, round-robin over the rows.
Every tool gets the same prompt ids: edgeseq's chat rendering (written to WORK/prompts.json by --prepare,
with a check that the HF tokenizer's apply_chat_template gives the same ids).

Per row: medians over prompts (of each prompt's median over rounds) of decode tok/s ((n - 1) / (t_last -
t_first) over the token stamps; tokens that arrive together after a verification step share a stamp) and TTFT,
per prompt set (edgeseq's TTFT clock starts after tokenization, the peers' when the ids are handed over: the
same point); tokens generated; acceptance where the tool reports it; and output equivalence: on how many
prompts a row's greedy ids equal its own tool's plain greedy ids (speculation must not change them), and
equal transformers' plain ids (cross-tool, informative: fp32 rounding differs between engines).

Rows: edgeseq ONNX fp32 plain / speculate="lookup" / speculate=<the w4a8 or the w8a8 ONNX export> (draft) /
"lookup+<w8a8>", the same on OpenVINO fp32 (f32 compute; draft: the OpenVINO int8 export); transformers generate() plain /
prompt_lookup_num_tokens / assistant_model; openvino-genai LLMPipeline plain / prompt_lookup / draft_model
(optimum-intel's fp32 IR, draft its int8 IR). The peers run benchmarks/speculate_peers.py in their venvs.

    .venv/bin/python benchmarks/speculate.py --prepare     # exports, peer models, prompts.json (times nothing)
    .venv/bin/python benchmarks/speculate.py               # writes benchmarks/results/speculate.json
    .venv/bin/python benchmarks/speculate.py --table       # the table of the last run again
    .venv/bin/python benchmarks/speculate.py --rounds 1 --per-set 2 --out /tmp/spec-smoke   # smoke
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from row_process import cell, run_rounds  # noqa: E402
from speculate_prompts import PROMPTS  # noqa: E402

HERE = Path(__file__).resolve()
SOURCE = "smollm2-135m-instruct"
EXPORTS = {"onnx-fp32": ("onnx", "fp32"), "onnx-w4a8": ("onnx", "w4a8"), "onnx-w8a8": ("onnx", "w8a8"),
           "openvino-fp32": ("openvino", "fp32"), "openvino-int8": ("openvino", "int8")}
# edgeseq's rows: label, export, engine precision, speculate (None, "lookup", the draft's export name, or
# "lookup+" and the draft's export name)
EDGESEQ = [("edgeseq onnxruntime fp32", "onnx-fp32", "f32", None),
           ("edgeseq onnxruntime fp32 + lookup", "onnx-fp32", "f32", "lookup"),
           ("edgeseq onnxruntime fp32 + draft w4a8", "onnx-fp32", "f32", "onnx-w4a8"),
           ("edgeseq onnxruntime fp32 + draft w8a8", "onnx-fp32", "f32", "onnx-w8a8"),
           ("edgeseq onnxruntime fp32 + lookup+draft w8a8", "onnx-fp32", "f32", "lookup+onnx-w8a8"),
           ("edgeseq openvino fp32", "openvino-fp32", "f32", None),
           ("edgeseq openvino fp32 + lookup", "openvino-fp32", "f32", "lookup"),
           ("edgeseq openvino fp32 + draft int8", "openvino-fp32", "f32", "openvino-int8"),
           ("edgeseq openvino fp32 + lookup+draft int8", "openvino-fp32", "f32", "lookup+openvino-int8")]
# peers: label, speculate_peers.py tool, venv (None: this one), model, draft
PEERS = [("transformers", "transformers", None, "hf", None),
         ("transformers + lookup", "transformers-lookup", None, "hf", None),
         ("transformers + assistant bf16", "transformers-assist", None, "hf", None),
         ("openvino-genai f32", "openvino-genai", "venv-ovgenai", "ov-fp32", None),
         ("openvino-genai f32 + lookup", "openvino-genai-lookup", "venv-ovgenai", "ov-fp32", None),
         ("openvino-genai f32 + draft int8", "openvino-genai-draft", "venv-ovgenai", "ov-fp32", "ov-int8")]
BASE, CROSS = "edgeseq onnxruntime fp32", "transformers"


def plain_of(label: str) -> str:
    """The plain row of a row's tool: its label before ' + '."""
    return label.split(" + ")[0]


def worker(a: argparse.Namespace) -> None:
    """One edgeseq row's process: load, 1 warm-up prompt, every prompt once; one JSON line out."""
    import edgeseq

    doc = json.loads(Path(a.prompts).read_text())
    eos = set(doc["eos_token_ids"])
    opts: dict = {"max_new_tokens": a.max_new_tokens}
    if a.speculate:
        opts.update(speculate=a.speculate, draft_tokens=a.draft_tokens)
    model = edgeseq.load(a.artifact, threads=a.threads, precision=a.precision)
    prompts = doc["prompts"]
    model.generate(prompts[0]["text"], chat=True, **opts)  # warm-up
    out = []
    for p in prompts:
        g = model.generate(p["text"], chat=True, **opts)
        ids, ms = list(g.ids[0]), list(g.timings.token_ms)
        if ids and ids[-1] in eos:  # EOS ends the row; it is not output (the peers drop it the same way)
            ids = ids[:-1]
            ms = ms[:len(ids)] if len(ms) == len(ids) + 1 else ms
        rec = {"name": p["name"], "set": p["set"], "ids": ids, "tokens": len(ids), "ttft_ms": g.timings.ttft_ms,
               "e2e_ms": g.timings.e2e_ms, "speculation": g.speculation}
        rec["decode_tok_s"] = ((len(ms) - 1) / ((ms[-1] - ms[0]) / 1e3) if len(ms) == len(ids) and len(ms) > 1
                               and ms[-1] > ms[0] else g.timings.decode_tok_s)
        out.append(rec)
    print(json.dumps({"engine": model.backend.__class__.__name__, "versions": model.manifest.tools,
                      "prompts": out}))


def prepare(work: Path, peers: Path, fresh: bool) -> dict[str, dict]:
    """edgeseq's exports, the HF directory, optimum-intel's IRs and prompts.json, each made once."""
    facts: dict[str, dict] = {}
    for name, (fmt, weights) in EXPORTS.items():
        out = work / "exports" / name
        if fresh or not (out / "edgeseq.json").exists():
            print(f"exporting {name}", file=sys.stderr, flush=True)
            r = subprocess.run([sys.executable, "-m", "edgeseq", "export", SOURCE, "--format", fmt, "--weights",
                                weights, "--out", str(out), "--overwrite", "--quiet"], capture_output=True, text=True)
            if r.returncode != 0:
                lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
                facts[name] = {"export": "failed", "error": " | ".join(lines[-3:])[:500]}
                continue
        m = json.loads((out / "edgeseq.json").read_text())
        p = m.get("parity") or {}
        facts[name] = {"export": "ok", "parity": p.get("status"), "max_abs_diff": p.get("max_abs_diff"),
                       "mb": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20, 1)}
    from vs_openvino import hf_dir

    hf = hf_dir(SOURCE, work / "hf")
    cli = peers / "venv-optintel" / "bin" / "optimum-cli"
    for weights in ("fp32", "int8"):
        out = work / "peer-models" / f"ov-{weights}"
        if (out / "openvino_model.xml").exists():
            continue
        if not cli.exists():
            facts[f"ov-{weights}"] = {"export": "failed", "error": f"{cli} is missing (benchmarks/setup_peers.sh)"}
            continue
        print(f"exporting the peers' IR ov-{weights}", file=sys.stderr, flush=True)
        r = subprocess.run([str(cli), "export", "openvino", "--model", str(hf), "--task", "text-generation-with-past",
                            "--weight-format", weights, str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            facts[f"ov-{weights}"] = {"export": "failed", "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    facts["prompts"] = write_prompts(work / "exports" / "onnx-fp32", hf, work / "prompts.json")
    return facts


def write_prompts(art: Path, hf: Path, out: Path) -> dict:
    """Every prompt rendered by edgeseq's chat template into ids, checked against the HF tokenizer's."""
    import edgeseq
    from transformers import AutoTokenizer

    model = edgeseq.load(art, threads=1)
    tok = AutoTokenizer.from_pretrained(hf)
    rows, same = [], 0
    for s, name, text in PROMPTS:
        ids = model.encode(text, chat=True)
        theirs = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)
        same += list(theirs) == ids
        rows.append({"set": s, "name": name, "text": text, "ids": ids})
    eos = [int(e) for e in model.gen_defaults.get("eos_token_ids") or []]
    out.write_text(json.dumps({"eos_token_ids": eos, "prompts": rows}, indent=1))
    return {"prompts": len(rows), "hf_chat_template_ids_equal": same,
            "prompt_tokens": {s: statistics.median(len(r["ids"]) for r in rows if r["set"] == s)
                              for s in ("grounded", "chat")}}


def _med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


def summarize(runs: list[dict]) -> dict:
    """A row's figures over its rounds, per prompt set (raw runs kept)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    last = {p["name"]: p for p in ok[-1]["prompts"]}
    per: dict[str, dict] = {}
    for name, p in last.items():
        rs = [q for r in ok for q in r["prompts"] if q["name"] == name]
        per[name] = {"set": p["set"], "decode_tok_s": _med([q["decode_tok_s"] for q in rs]),
                     "ttft_ms": _med([q["ttft_ms"] for q in rs]), "tokens": p["tokens"],
                     "ids_differ_across_rounds": len({tuple(q["ids"]) for q in rs}) > 1}
    sets = {}
    for s in ("grounded", "chat", "all"):
        xs = [v for v in per.values() if s == "all" or v["set"] == s]
        sets[s] = {"decode_tok_s": _med([v["decode_tok_s"] for v in xs]), "ttft_ms": _med([v["ttft_ms"] for v in xs]),
                   "tokens": sum(v["tokens"] for v in xs), "prompts": len(xs)}
    return {"sets": sets, "per_prompt": per, "acceptance": _acceptance(ok[-1]["prompts"]),
            "ids": {n: p["ids"] for n, p in last.items()}, "versions": ok[0].get("versions"),
            "notes": ok[0].get("notes"), "peak_rss_mb": ok[0].get("peak_rss_mb"), "rounds": len(ok), "raw": runs}


def _acceptance(prompts: list[dict]) -> dict | None:
    """Accepted / proposed and tokens per target step over all prompts: edgeseq's speculation dicts, else
    the peers' counts (openvino-genai's accepted / proposed, transformers' streamer deliveries)."""
    spec = [p["speculation"] for p in prompts if p.get("speculation")]
    if spec:
        acc, prop = sum(s["accepted"] for s in spec), sum(s["proposed"] for s in spec)
        steps = sum(s["target_steps"] for s in spec)
        toks = sum(p["tokens"] for p in prompts if p.get("speculation"))
        return {"acceptance_rate": acc / prop if prop else None, "tokens_per_step": toks / steps if steps else None,
                "accepted": acc, "proposed": prop, "target_steps": steps}
    out: dict = {}
    if any("proposed" in p for p in prompts):
        acc, prop = sum(p.get("accepted", 0) for p in prompts), sum(p.get("proposed", 0) for p in prompts)
        out.update(acceptance_rate=acc / prop if prop else None, accepted=acc, proposed=prop)
    deliveries = sum(p.get("deliveries") or 0 for p in prompts)
    toks = sum(p["tokens"] for p in prompts)
    if deliveries and deliveries < toks:  # several tokens per delivery: one delivery per target step
        out["tokens_per_step"] = toks / deliveries
    return out or None


def _same(a: dict | None, b: dict | None) -> str:
    if not a or not b:
        return "-"
    names = [n for n in a if n in b]
    return f"{sum(a[n] == b[n] for n in names)}/{len(names)}"


def table(rows: list[dict]) -> list[str]:
    by = {r["row"]: r for r in rows}

    def ratio(r: dict, base: dict | None, s: str) -> str:
        a = r["sets"][s]["decode_tok_s"]
        b = base["sets"][s]["decode_tok_s"] if base and "sets" in base else None
        return f"{a / b:.2f}x" if a and b else "-"

    out = ["| row | decode tok/s grounded / chat | vs own plain | vs edgeseq ORT fp32 | TTFT ms grounded / chat | "
           "tokens | acceptance | tokens / step | ids = own plain | ids = transformers |", "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['row']} | {r['error'][:160]} |" + " |" * 8)
            continue
        g, c = r["sets"]["grounded"], r["sets"]["chat"]
        own, base, cross = by.get(plain_of(r["row"])), by.get(BASE), by.get(CROSS)
        acc = r.get("acceptance") or {}
        out.append(
            f"| {r['row']} | {cell(g['decode_tok_s'], '.1f')} / {cell(c['decode_tok_s'], '.1f')} | "
            f"{ratio(r, own, 'grounded')} / {ratio(r, own, 'chat')} | {ratio(r, base, 'grounded')} / "
            f"{ratio(r, base, 'chat')} | {cell(g['ttft_ms'], '.0f')} / {cell(c['ttft_ms'], '.0f')} | "
            f"{g['tokens']} / {c['tokens']} | {cell(acc.get('acceptance_rate'), '.2f')} | "
            f"{cell(acc.get('tokens_per_step'), '.2f')} | {_same(r['ids'], own.get('ids') if own else None)} | "
            f"{_same(r['ids'], cross.get('ids') if cross else None)} |")
    return out


def plan_rows(a: argparse.Namespace, work: Path, prompts: Path) -> list[dict]:
    """Every row with its command, or the reason it cannot run."""
    common = ["--prompts", str(prompts), "--threads", str(a.threads), "--max-new-tokens", str(a.max_new_tokens)]
    plan = []
    for label, export, precision, spec in EDGESEQ:
        art = work / "exports" / export
        row: dict = {"row": label}
        lookup = bool(spec) and spec.startswith("lookup")
        name = spec.removeprefix("lookup").removeprefix("+") if spec else ""
        draft = work / "exports" / name if name else None
        missing = [p for p in (art, draft) if p is not None and not (p / "edgeseq.json").exists()]
        if missing:
            row["error"] = f"not prepared: {missing[0]} (run --prepare)"
        else:
            how = ("lookup+" if lookup and draft else "lookup" if lookup else "") + (str(draft) if draft else "")
            row["cmd"] = [sys.executable, str(HERE), "--worker", "--artifact", str(art), "--precision", precision,
                          *common, *(["--speculate", how, "--draft-tokens", str(a.draft_tokens)] if spec else [])]
        plan.append(row)
    script = HERE.parent / "speculate_peers.py"
    for label, tool, venv, model, draft in PEERS:
        python = Path(sys.executable) if venv is None else Path(a.peers) / venv / "bin" / "python"
        mdir = work / "hf" if model == "hf" else work / "peer-models" / model
        row = {"row": label}
        if not python.exists():
            row["error"] = f"not installed: no venv at {python.parents[1]} (benchmarks/setup_peers.sh)"
        elif not (mdir / "config.json").exists() or (draft and not (work / "peer-models" / draft).exists()):
            row["error"] = f"not prepared: {mdir} or its draft (run --prepare)"
        else:
            row["cmd"] = [str(python), str(script), tool, "--model", str(mdir), *common,
                          "--draft-tokens", str(a.draft_tokens), "--ngram", str(a.ngram),
                          *(["--draft", str(work / "peer-models" / draft)] if draft else []),
                          *(["--assistant", a.assistant] if tool == "transformers-assist" else [])]
            if tool == "transformers-assist":
                row["row"] = f"transformers + assistant {a.assistant}"
        plan.append(row)
    return plan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/edgeseq-speculate", help="exports, peer models, prompts.json (reused)")
    p.add_argument("--out", default="benchmarks/results", help="where speculate.json goes")
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="the peer venvs (venv-*)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--draft-tokens", type=int, default=6, help="K: the most tokens proposed per verification step")
    p.add_argument("--ngram", type=int, default=3, help="the peers' prompt lookup: longest n-gram matched")
    p.add_argument("--assistant", choices=["int8", "bf16"], default="bf16", help="transformers' assistant model "
                   "(int8: torch dynamic quantization, whose prefill is far slower than fp32 on CPU)")
    p.add_argument("--per-set", type=int, default=0, help="only the first N prompts of each set (smoke runs)")
    p.add_argument("--only", default=None, help="comma-separated texts: only rows whose label contains one "
                   f"(the plain rows and {BASE} always run: the ratios and equivalence need them)")
    p.add_argument("--fresh", action="store_true", help="re-export edgeseq's artifacts")
    p.add_argument("--table", action="store_true", help="print the last run's table again (re-summarized), time nothing")
    p.add_argument("--prepare", action="store_true", help="make the exports, peer models and prompts.json only")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    p.add_argument("--prompts", help=argparse.SUPPRESS)
    p.add_argument("--speculate", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    work, out = Path(a.work), Path(a.out)
    if a.table:
        doc = json.loads((out / "speculate.json").read_text())
        doc["rows"] = [{**r, **summarize(r["raw"])} if r.get("raw") else r for r in doc["rows"]]
        (out / "speculate.json").write_text(json.dumps(doc, indent=2))
        print("\n".join(table(doc["rows"])))
        return
    facts = prepare(work, Path(a.peers), a.fresh)
    prompts = work / "prompts.json"
    if a.per_set:  # a subset file for smoke runs, next to the full one
        doc = json.loads(prompts.read_text())
        doc["prompts"] = [q for s in ("grounded", "chat") for q in [x for x in doc["prompts"] if x["set"] == s]
                          [: a.per_set]]
        prompts = work / f"prompts-{a.per_set}.json"
        prompts.write_text(json.dumps(doc, indent=1))
    plan = plan_rows(a, work, prompts)
    only = [s.strip() for s in a.only.split(",")] if a.only else None
    plan = [r for r in plan if not only or " + " not in r["row"] or any(s in r["row"] for s in only)]
    if a.prepare:
        print(json.dumps(facts, indent=1), file=sys.stderr)
        for r in plan:
            print(f"{r['row']}: {'ready' if 'cmd' in r else r['error']}", file=sys.stderr)
        return
    runs = run_rounds(plan, a.rounds, a.threads)
    rows = [{"row": r["row"], "command": r.get("cmd"),
             **(summarize(runs[r["row"]]) if "cmd" in r else {"error": r["error"]})} for r in plan]
    from edgeseq.profile.bandwidth import copy_gb_s
    from edgeseq.profile.result import RunHeader

    protocol = {"model": SOURCE, "prompts": facts["prompts"], "rounds": a.rounds, "threads": a.threads,
                "max_new_tokens": a.max_new_tokens, "draft_tokens": a.draft_tokens, "peer_ngram": a.ngram,
                "decoding": "greedy, batch 1, chat template, EOS ends a row", "warmup_prompts": 1}
    header = RunHeader.here(copy_gb_s(threads=a.threads), protocol, " ".join(["benchmarks/speculate.py", *sys.argv[1:]]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "speculate.json").write_text(json.dumps({**header.to_dict(), "exports": facts, "rows": rows}, indent=2))
    print(header.host_line() + f"; {len(json.loads(prompts.read_text())['prompts'])} prompts, {a.rounds} rounds, "
          f"K={a.draft_tokens}, at most {a.max_new_tokens} new tokens")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
