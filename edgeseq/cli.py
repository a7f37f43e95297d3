"""`edgeseq export | generate | profile | compare | devices | verify | demo`: the command line.

Every user-facing failure is an EdgeseqError: printed as one line naming the fix, with a distinct
exit code per class; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import EdgeseqError, UsageError


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def _runtime_args(p: argparse.ArgumentParser, threads_default: int | None) -> None:
    p.add_argument("--device", default="cpu", help="cpu | gpu | npu | auto, optionally with a vendor: gpu:cuda, "
                   "npu:qnn (default: cpu; `edgeseq devices` lists this host's)")
    p.add_argument("--engine", default=None, help="onnxruntime | openvino | litert | torch (default: the artifact "
                   "format's own; openvino also runs onnx artifacts; torch is the PyTorch reference, rebuilt from the "
                   "artifact's recorded source, on cpu or gpu:cuda)")
    p.add_argument("--threads", type=int, default=threads_default,
                   help=f"engine intra-op threads (default: {threads_default or 'engine default'})")
    p.add_argument("--precision", default="f32", help="OpenVINO inference precision: f32 (default), bf16, f16, or "
                   "default (the device's choice: bf16 on CPUs that have it); torch engine: f32, or bf16 / f16 under "
                   "autocast; recorded in every profile")
    p.add_argument("--delegate", default=None, metavar="PATH", help="LiteRT (tflite artifacts): a GPU or NPU "
                   "delegate library for --device gpu / npu")


def build_parser() -> argparse.ArgumentParser:
    from .models import known_names

    ap = argparse.ArgumentParser(prog="edgeseq", description="Export, run and profile small language models "
                                 "(encoder-decoder and decoder-only) for edge devices.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    ap.add_argument("--version", action="version", version=f"edgeseq {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("export", help="convert a model to an artifact directory, checked against PyTorch",
                       description="Export MODEL with its KV cache, run the parity check against PyTorch, and write "
                       "a self-describing artifact directory (graphs, tokenizer, edgeseq.json).")
    e.add_argument("model", help=f"preset:NAME (random weights), a packaged name, a Hugging Face model directory, "
                   f"a .gguf file, or a hub id where a network exists. Known names: {known_names()}")
    e.add_argument("--format", default="onnx", help="artifact format: onnx | openvino | tflite (default: onnx)")
    e.add_argument("--weights", default="fp32", help="weight format: fp32 (default); onnx also int4 (MatMulNBits, "
                   "float compute), w4a8 (int4 weights, int8 compute: faster decode, slower prefill), w8a8 (int8 "
                   "weights, int8 compute in blocks of 32) and w8a8-token (int8 weights per column, activations per "
                   "token, integer GEMM: the fastest prefill, coarser rounding); "
                   "openvino also fp16, int8, int4 (NNCF weight compression, needs the compress extra); tflite "
                   "also fp16, int8 (dynamic range: int8 compute) and int8-wo (weight only: float compute)")
    e.add_argument("--target", default="cpu", choices=["cpu", "npu"],
                   help="cpu (default): graphs for any engine and device; npu: static shapes Qualcomm HTP "
                   "compiles (onnx only; run with --device npu through onnxruntime-qnn), weights fp32 (HTP runs "
                   "them in float16), w8a16, w8a8 or w4a16 (QDQ, calibrated on sample prompts)")
    e.add_argument("--max-input", type=int, default=None, help="tflite, --target npu: longest prompt (encoder input) the "
                   "artifact takes (default: 256); longer prompts are refused, never truncated")
    e.add_argument("--max-output", type=int, default=None, help="tflite, --target npu: most new tokens per request; sets the "
                   "fixed KV-cache length (default: 128)")
    e.add_argument("--prefill-buckets", type=_ints, default=None, help="tflite, --target npu: prompt lengths compiled besides "
                   "--max-input, comma list (default: 32,128 below --max-input); a prompt is padded to the "
                   "smallest bucket that holds it")
    e.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    e.add_argument("--parity-steps", type=int, default=32,
                   help="greedy decode steps compared with PyTorch (default: 32; 0 skips, recorded as skipped)")
    e.add_argument("--keep-failed", action="store_true", help="keep an artifact that fails parity, marked failed")
    e.add_argument("--seed", type=int, default=0, help="seed for preset random weights (default: 0)")
    e.add_argument("--quiet", action="store_true", help="no progress output")

    g = sub.add_parser("generate", help="generate text from an artifact, streaming tokens",
                       description="Generate from PROMPT with an exported artifact; tokens are printed as they come.")
    g.add_argument("artifact", help="artifact directory written by `edgeseq export`")
    g.add_argument("prompt", help="prompt text")
    g.add_argument("--max-new-tokens", type=int, default=128, help="stop after this many new tokens (default: 128)")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy (implied by the options below)")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature > 0 (default: 1.0)")
    g.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1] (1 = off)")
    g.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default: 1 = off)")
    g.add_argument("--num-beams", type=int, default=1, help="beam search with N beams (printed when done, "
                   "not streamed; default: 1 = off)")
    g.add_argument("--num-beam-groups", type=int, default=1, help="diverse beam search: split beams into groups")
    g.add_argument("--diversity-penalty", type=float, default=0.0, help="diverse beam search: penalty per token "
                   "already chosen by an earlier group at the same step")
    g.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = sum log p / length ** this (default: 1.0)")
    g.add_argument("--raw", action="store_true", help="do not apply the artifact's chat template")
    g.add_argument("--stats", action="store_true", help="print TTFT, TPOT and tok/s to stderr afterwards")
    _runtime_args(g, None)

    pr = sub.add_parser("profile", help="measure TTFT, TPOT, throughput, memory and size",
                        description="Profile one or more artifacts under the same protocol: forced decoding of "
                        "--output-len tokens after a prompt of exactly --input-len tokens; medians of --reps runs "
                        "after --warmup runs. Several artifacts print side by side with ratios against the first.")
    pr.add_argument("artifacts", nargs="+", help="artifact directories")
    pr.add_argument("--input-len", type=_ints, default=[128], help="prompt tokens; comma list sweeps (default: 128)")
    pr.add_argument("--output-len", type=_ints, default=[64], help="new tokens; comma list sweeps (default: 64)")
    pr.add_argument("--batch", type=_ints, default=[1], help="batch sizes; comma list sweeps (default: 1)")
    pr.add_argument("--reps", type=int, default=5, help="timed runs per case (default: 5)")
    pr.add_argument("--warmup", type=int, default=1, help="untimed runs per case (default: 1)")
    pr.add_argument("--json", dest="json_path", default=None, help="write the full report (raw samples) as JSON")
    pr.add_argument("--markdown", default=None, help="write the table as Markdown")
    pr.add_argument("--no-bandwidth", action="store_true", help="skip the memory-bandwidth measurement")
    pr.add_argument("--resume", action="store_true", help="continue an interrupted sweep: skip the cases already "
                    "in --json's partial file (needs the same --json and options)")
    pr.add_argument("--time-limit", type=float, default=None, help="seconds per case (warm-up + reps); a case "
                    "past it is reported as timeout and the sweep goes on")
    pr.add_argument("--auto", action="store_true", help="try every installed engine and compute precision that "
                    "reads the artifact, keep those whose logits stay within tolerance of float32, profile them "
                    "and name the fastest (lowest median end-to-end time)")
    _runtime_args(pr, 2)

    c = sub.add_parser("compare", help="encoder-decoder vs decoder-only (or any models): export, profile, report",
                       description="Export each MODEL in each format and weight format, profile every input length "
                       "under one protocol, and write OUT/index.md, OUT/results.json and PNG plots, with the "
                       "encoder-decoder / decoder-only ratios that correspond to the paper's headline numbers "
                       "(first-token latency, throughput). Finished points are kept in OUT/results.jsonl: run the "
                       "same command again to resume. Options given here override the suite's.")
    c.add_argument("models", nargs="*", help="model sources (as for export) or artifact directories")
    c.add_argument("--suite", default=None, help="a shipped suite (quick, paper) or a suite YAML file")
    c.add_argument("--formats", default=None, help="comma list: onnx,openvino,tflite (default: onnx)")
    c.add_argument("--weights", default=None, help="comma list: fp32,fp16,int8,int4 (each format takes those it "
                   "has; default: fp32)")
    c.add_argument("--input-lens", type=_ints, default=None, help="prompt tokens, comma list (default: 128,512)")
    c.add_argument("--output-len", type=int, default=None, help="new tokens per request (default: 64)")
    c.add_argument("--reps", type=int, default=None, help="timed runs per point (default: 3)")
    c.add_argument("--warmup", type=int, default=None, help="untimed runs per point (default: 1)")
    c.add_argument("--parity-steps", type=int, default=None, help="export parity steps (default: 32)")
    c.add_argument("--time-limit", type=float, default=None, help="seconds per point; past it: timeout, go on")
    c.add_argument("--out", default="compare-report", help="report directory (default: ./compare-report)")
    c.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    c.add_argument("--no-bandwidth", action="store_true", help="skip the memory-bandwidth measurement")
    c.add_argument("--device", default=None, help="cpu | gpu | npu | auto (default: cpu)")
    c.add_argument("--engine", default=None, help="onnxruntime | openvino | litert | torch (default: each format's own)")
    c.add_argument("--threads", type=int, default=None, help="engine intra-op threads (default: 2)")
    c.add_argument("--precision", default=None, help="OpenVINO inference precision (default: f32)")

    sub.add_parser("devices", help="list engines and devices on this host, and what each missing one needs")

    ca = sub.add_parser("cache", help="show or clear the engines' caches of compiled graphs",
                        description="Engines keep compiled graphs and packed weights under $XDG_CACHE_HOME/edgeseq "
                        "(default ~/.cache/edgeseq), one folder per engine, about one model's size per entry; "
                        "the least recently used entries are dropped to keep each under EDGESEQ_CACHE_GB "
                        "(default 4). Without flags: each folder's size. Clearing is always safe: the next load "
                        "compiles again.")
    ca.add_argument("--clear", nargs="?", const="all", default=None, metavar="ENGINE",
                    help="delete the cache of ENGINE (openvino, litert, qnn) or, without a name, all of it")

    v = sub.add_parser("verify", help="check an artifact's files against the sizes and SHA-256 in its manifest",
                       description="Check every file of ARTIFACT against the size and full SHA-256 recorded at "
                       "export (loading checks sizes and the first/last MiB only).")
    v.add_argument("artifacts", nargs="+", help="artifact directories")

    d = sub.add_parser("demo", help="the README's main job: `edgeseq compare --suite quick`",
                       description="Run the quick comparison suite: export the packaged SmolLM2-135M-Instruct (real "
                       "weights) and the t5-small preset (random weights) to ONNX under --out (reusing finished "
                       "exports and points), profile both at 128 and 512 input tokens, print the table and write "
                       "the report.")
    d.add_argument("--out", default="edgeseq-demo", help="working directory (default: ./edgeseq-demo)")
    return ap


def _version() -> str:
    from . import __version__

    return __version__


def cmd_export(a: argparse.Namespace) -> int:
    from .export.pipeline import export

    shape = None
    given = {k: v for k, v in (("max_input", a.max_input), ("max_output", a.max_output),
                               ("buckets", tuple(a.prefill_buckets or ()) or None)) if v is not None}
    if given:
        from .export.steps.static import StaticShape

        shape = StaticShape(**given)
    m = export(a.model, a.out, format=a.format, overwrite=a.overwrite, parity_steps=a.parity_steps,
               keep_failed=a.keep_failed, seed=a.seed, quiet=a.quiet, weights=a.weights, shape=shape,
               target=a.target)
    return 0 if m.parity.get("status") != "failed" else 8


def cmd_generate(a: argparse.Namespace) -> int:
    from .api import load
    from .generate.config import GenerationConfig

    sample = a.sample or any(v is not None for v in (a.temperature, a.top_k, a.top_p))
    cfg = GenerationConfig(max_new_tokens=a.max_new_tokens, do_sample=sample,
                           temperature=1.0 if a.temperature is None else a.temperature,
                           top_k=a.top_k or 0, top_p=1.0 if a.top_p is None else a.top_p, seed=a.seed,
                           repetition_penalty=a.repetition_penalty, num_beams=a.num_beams,
                           num_beam_groups=a.num_beam_groups, diversity_penalty=a.diversity_penalty,
                           length_penalty=a.length_penalty).validate()
    model = load(a.artifact, device=a.device, engine=a.engine, threads=a.threads, precision=a.precision,
                 delegate=a.delegate)
    if model.manifest.parity.get("status") == "failed":
        print("warning: this artifact FAILED its parity check; outputs may be wrong", file=sys.stderr)
    engine_warning = (model.backend.placement() or {}).get("warning")  # e.g. a kernel that loses accuracy here
    if engine_warning:
        print(f"warning: {engine_warning}", file=sys.stderr)
    chat = not a.raw and bool(model.gen_defaults.get("chat_template"))
    from .generate.loop import Timings

    if cfg.num_beams > 1:  # the best beam is known only at the end
        out = model.generate(a.prompt, chat=chat, config=cfg)
        print(out.texts[0], flush=True)
        t = out.timings
    else:
        t = Timings()
        for piece in model.stream(a.prompt, chat=chat, config=cfg, timings=t):
            print(piece, end="", flush=True)
        print(flush=True)
    if a.stats:
        print(f"[{len(t.token_ms)} tokens; tokenize {t.tokenize_ms:.1f} ms, TTFT {t.ttft_ms:.1f} ms, "
              f"TPOT {t.tpot_ms:.2f} ms, {t.decode_tok_s:.1f} tok/s]", file=sys.stderr)
    return 0


def cmd_profile(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import __version__
    from .manifest import read
    from .profile.bandwidth import copy_gb_s
    from .profile.partial import PartialReport
    from .profile.report import add_ratios, markdown, table, write_json
    from .profile.runner import ProfileConfig, check_cases, host_info, iter_profile

    cfg = ProfileConfig(input_lens=a.input_len, output_lens=a.output_len, batch_sizes=a.batch, warmup=a.warmup,
                        reps=a.reps, threads=a.threads, device=a.device, engine=a.engine,
                        precision=a.precision, delegate=a.delegate).validate()
    if a.time_limit is not None and a.time_limit <= 0:
        raise UsageError(f"--time-limit must be > 0 seconds, got {a.time_limit}", "e.g. --time-limit 300")
    if a.resume and not a.json_path:
        raise UsageError("--resume needs --json PATH: the partial results live next to it", "add --json PATH")
    if a.auto and (a.engine or a.precision != "f32" or a.resume):
        raise UsageError("--auto chooses the engine and precision itself and does not resume",
                         "drop --engine / --precision / --resume, or drop --auto")
    if a.auto:
        return _profile_auto(a, cfg)
    for art in a.artifacts:  # fail on a bad artifact or case before spending minutes on the good ones
        check_cases(read(art), cfg, art)
    partial = PartialReport(a.json_path, {"protocol": cfg.__dict__, "artifacts": a.artifacts}, a.resume) \
        if a.json_path else None
    results: list[dict[str, Any]] = list(partial.results) if partial else []
    done = frozenset(r["key"] for r in results)
    bw = None if a.no_bandwidth else copy_gb_s(threads=a.threads or 2)
    total = len(a.artifacts) * len(cfg.cases()) * (cfg.warmup + cfg.reps) - len(done) * (cfg.warmup + cfg.reps)
    interrupted = False
    try:
        with tqdm(total=total, desc="profile", unit="run", file=sys.stderr) as bar:
            for art in a.artifacts:
                bar.set_postfix_str(Path(art).name)
                for r in iter_profile(art, cfg, lambda: bar.update(1), bw, done, a.time_limit):
                    results.append(r)
                    if partial:
                        partial.add(r)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: {len(results)} case(s) finished", file=sys.stderr)
    if not results:
        return 130 if interrupted else 0
    add_ratios(results)
    doc = {"edgeseq_version": __version__, "host": host_info(), "bandwidth_gb_s": round(bw, 2) if bw else None,
           "protocol": cfg.__dict__, "complete": not interrupted, "results": results}
    print(table(results))
    if a.json_path:
        write_json(doc, a.json_path)
        if not interrupted and partial:
            partial.remove()
        print(f"wrote {a.json_path}" + (" (partial; re-run with --resume to finish)" if interrupted else ""),
              file=sys.stderr)
    if a.markdown:
        Path(a.markdown).write_text(markdown(doc))
        print(f"wrote {a.markdown}", file=sys.stderr)
    return 130 if interrupted else 0


def _profile_auto(a: argparse.Namespace, cfg: Any) -> int:
    from tqdm import tqdm

    from . import __version__
    from .manifest import read
    from .profile import auto
    from .profile.bandwidth import copy_gb_s
    from .profile.report import add_ratios, table, write_json
    from .profile.runner import check_cases, host_info

    for art in a.artifacts:
        check_cases(read(art), cfg, art)
    bw = None if a.no_bandwidth else copy_gb_s(threads=a.threads or 2)
    results: list[dict[str, Any]] = []
    checks: dict[str, list[dict[str, Any]]] = {}
    winners: dict[str, Any] = {}
    with tqdm(desc="profile --auto", unit="run", file=sys.stderr) as bar:
        for art in a.artifacts:
            got, checks[art] = auto.run(art, cfg, lambda: bar.update(1), bw)
            results += got
            best = auto.winner(got)
            winners[art] = None if best is None else {k: best[k] for k in ("engine", "precision", "e2e_ms",
                                                                           "ttft_ms", "decode_tok_s")}
    if results:
        add_ratios(results)
        print(table(results))
    for art, cs in checks.items():
        for c in cs:
            detail = c.get("error") or (f"max |logits diff| {c['max_abs_diff']:.3g} vs tolerance "
                                        f"{c['tolerance']:.3g}, tokens agree: {c['tokens_agree']}")
            print(f"check {Path(art).name}: {c['engine']} {c['precision']}: {c['status']} ({detail})")
        w = winners[art]
        print(f"fastest within tolerance for {Path(art).name}: " + (
            f"--engine {w['engine']} --precision {w['precision']} (e2e {w['e2e_ms']:.0f} ms, TTFT "
            f"{w['ttft_ms']:.1f} ms, {w['decode_tok_s']:.1f} tok/s)" if w else "none"))
    if a.json_path:
        write_json({"edgeseq_version": __version__, "host": host_info(), "bandwidth_gb_s": bw, "auto": True,
                    "protocol": cfg.__dict__, "checks": checks, "winners": winners, "results": results},
                   a.json_path)
        print(f"wrote {a.json_path}", file=sys.stderr)
    return 0 if all(winners.values()) else 1


def cmd_devices(a: argparse.Namespace) -> int:
    from .runtimes import ENGINES, engine_module
    from .runtimes.devices import TABLE

    print(f"{'engine':<12} {'device':<14} {'status':<10} detail")
    for row in TABLE:
        name = row.label
        try:
            module = engine_module(row.engine)
            why = module.probe(row)
        except EdgeseqError as e:
            module, why = None, e.message
        status = "available" if why is None else "missing"
        described = getattr(module, "detail", lambda r: r.target)(row)
        detail = described if why is None else f"{why}; to get it: {row.install}"
        print(f"{row.engine:<12} {name:<14} {status:<10} {detail}")
    print(f"\nengines: {', '.join(ENGINES)}")
    return 0


def cmd_cache(a: argparse.Namespace) -> int:
    import shutil

    from .runtimes.base import cache_root, folder_bytes

    root = cache_root()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if a.clear:
        chosen = folders if a.clear == "all" else [p for p in folders if p.name == a.clear]
        if a.clear != "all" and not chosen:
            raise UsageError(f"no cache for '{a.clear}' under {root}",
                             f"caches here: {', '.join(p.name for p in folders) or 'none'}")
        for p in chosen:
            size = folder_bytes(p)
            shutil.rmtree(p)
            print(f"cleared {p} ({size / 2**20:.0f} MiB)")
        return 0
    if not folders:
        print(f"no engine caches under {root}")
    for p in folders:
        files = sum(1 for f in p.rglob("*") if f.is_file())
        print(f"{p.name:<10} {folder_bytes(p) / 2**20:>9.0f} MiB  {files:>5} files  {p}")
    return 0


DEMO_SUITE = "quick"


def cmd_demo(a: argparse.Namespace) -> int:
    return cmd_compare(build_parser().parse_args(["compare", "--suite", DEMO_SUITE, "--out", a.out]))


def cmd_compare(a: argparse.Namespace) -> int:
    import shlex
    from dataclasses import replace

    from tqdm import tqdm

    from . import __version__
    from .compare import Suite, load_suite
    from .compare import report, sweep
    from .errors import require
    from .profile.bandwidth import copy_gb_s
    from .profile.report import add_ratios, table
    from .profile.runner import host_info

    require("yaml", "compare")
    if not a.no_plots:
        require("matplotlib", "compare")
    suite = load_suite(a.suite) if a.suite else Suite()
    given = {"formats": _words(a.formats), "weights": _words(a.weights), "input_lens": a.input_lens,
             "output_len": a.output_len, "reps": a.reps, "warmup": a.warmup, "parity_steps": a.parity_steps,
             "time_limit": a.time_limit, "device": a.device, "engine": a.engine, "threads": a.threads,
             "precision": a.precision, "models": a.models or None}
    suite = replace(suite, **{k: v for k, v in given.items() if v is not None}).validate()
    out = Path(a.out)
    store = sweep.Store(out / sweep.RESULTS)
    todo = sweep.pending(suite, store)
    print(f"compare '{suite.name}': {len(suite.models)} models x {len(suite.pairs())} format/weights x "
          f"{len(suite.input_lens)} input lengths, {todo} point(s) to measure -> {out}", file=sys.stderr)
    bw = None if a.no_bandwidth else copy_gb_s(threads=suite.threads or 2)
    interrupted = False
    try:
        with tqdm(total=todo * (suite.warmup + suite.reps), desc="compare", unit="run", file=sys.stderr) as bar:
            sweep.run(suite, out, store, bw, bar, say=lambda msg: bar.write(msg, file=sys.stderr))
    except KeyboardInterrupt:  # the store holds every point finished before the interrupt
        interrupted = True
        print(f"\ninterrupted: finished points are kept in {out / sweep.RESULTS}; run the same command to resume",
              file=sys.stderr)
    rows = sweep.rows_for(suite, store)
    if not rows:
        return 130 if interrupted else 1
    ok = [r for r in rows if r["status"] == "ok"]
    add_ratios(ok)
    doc = report.write(suite, rows, out, {"edgeseq_version": __version__, "host": host_info(),
                                          "bandwidth_gb_s": round(bw, 2) if bw else None, "complete": not interrupted,
                                          "command": "edgeseq " + shlex.join(sys.argv[1:])}, plots=not a.no_plots)
    if ok:
        print(table(ok))
    for r in doc["ratios"]:
        print(f"{r['format']} {r['weights']} in={r['input_len']}: {r['a']} vs {r['b']}: TTFT "
              f"{report.lower_text(r['ttft_lower'])}, decode {r['decode_ratio']:.2f}x, end-to-end {r['e2e_ratio']:.2f}x")
    for w in doc["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(f"{r['status']}: {r['source']} {r['format']} {r['weights']} in={r['input_len']}"
              + (f": {r['error']}" if r.get("error") else ""), file=sys.stderr)
    print(f"wrote {out / 'index.md'}, {out / 'results.json'}" + ("" if a.no_plots else " and plots"), file=sys.stderr)
    if interrupted:
        return 130
    return 0 if len(ok) == len(rows) else 1


def _words(text: str | None) -> list[str] | None:
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def cmd_verify(a: argparse.Namespace) -> int:
    from .manifest import verify

    for art in a.artifacts:
        m = verify(art)
        size = sum(f["bytes"] for f in m.files.values()) / 1e6
        print(f"ok  {art}: {len(m.files)} files, {size:.1f} MB, parity {m.parity.get('status')}")
    return 0


COMMANDS = {"verify": cmd_verify, "export": cmd_export, "generate": cmd_generate, "profile": cmd_profile, "devices": cmd_devices,
            "demo": cmd_demo, "compare": cmd_compare, "cache": cmd_cache}


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 2
    try:
        return COMMANDS[a.command](a)
    except EdgeseqError as e:
        if a.debug:
            traceback.print_exc()
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: say so, keep the trace one flag away
        if a.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: re-run with --debug and report the traceback", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
