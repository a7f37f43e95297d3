"""One function per command: read the parsed arguments, call the package, print the results."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..console import console
from ..errors import EdgeseqError, UsageError
from ..runtimes.options import parse_pairs
from .parser import build_parser


def cmd_export(a: argparse.Namespace) -> int:
    from ..export.pipeline import export

    shape = None
    given = {k: v for k, v in (("max_input", a.max_input), ("max_output", a.max_output),
                               ("buckets", tuple(a.prefill_buckets or ()) or None),
                               ("ring", None if a.ring_cache else False)) if v is not None}
    if given:
        from ..steps.static import StaticShape

        shape = StaticShape(**given)
    m = export(a.model, a.out, format=a.format, overwrite=a.overwrite, parity_steps=a.parity_steps,
               keep_failed=a.keep_failed, seed=a.seed, quiet=a.quiet, weights=a.weights, shape=shape,
               target=a.target, ort_kernels=a.ort_kernels, native=tuple(dict.fromkeys(a.native)), quality_tokens=a.quality_tokens)
    if a.quiet:  # the result; the steps said it otherwise
        console.result(f"wrote {a.out} ({sum(f['bytes'] for f in m.files.values()) / 1e6:.1f} MB)")
    return 0 if m.parity.get("status") != "failed" else 8


def cmd_generate(a: argparse.Namespace) -> int:
    from ..api import load
    from ..generate.config import GenerationConfig
    from ..generate.speculate import Speculation

    sample = a.sample or any(v is not None for v in (a.temperature, a.top_k, a.top_p))
    cfg = GenerationConfig(max_new_tokens=128 if a.max_new_tokens is None else a.max_new_tokens, do_sample=sample,
                           temperature=1.0 if a.temperature is None else a.temperature,
                           top_k=a.top_k or 0, top_p=1.0 if a.top_p is None else a.top_p, seed=a.seed,
                           repetition_penalty=a.repetition_penalty, num_beams=a.num_beams,
                           num_beam_groups=a.num_beam_groups, diversity_penalty=a.diversity_penalty,
                           length_penalty=a.length_penalty, stop=a.stop).validate()
    if a.max_memory is not None:
        _check_request_memory(a, cfg)
    model = load(a.artifact, device=a.device, engine=a.engine, threads=a.threads, precision=a.precision,
                 delegate=a.delegate, engine_options=parse_pairs(a.engine_option), max_memory_mb=a.max_memory)
    if model.manifest.parity.get("status") == "failed":
        console.result("warning: this artifact FAILED its parity check; outputs may be wrong")
    engine_warning = (model.backend.placement() or {}).get("warning")  # e.g. a kernel that loses accuracy here
    if engine_warning:
        console.result(f"warning: {engine_warning}")
    chat = not a.raw and bool(model.gen_defaults.get("chat_template"))
    if a.max_new_tokens is None:  # the default is capped to the positions the prompt leaves; a given value is not
        limit, kind = int(model.manifest.dims["max_positions"]), model.manifest.kind
        room = limit - len(model.encode(a.prompt, chat)) if kind == "decoder-only" else limit - 1
        if 1 <= room < cfg.max_new_tokens:
            cfg.max_new_tokens = room
    from ..generate.loop import Timings

    stdout = console.out  # looked up once: nothing per token but the write
    if a.speculate and cfg.num_beams > 1:
        raise UsageError("--speculate follows one sequence; beam search keeps several", "drop --num-beams or --speculate")
    spec = Speculation("", a.draft_tokens) if a.speculate else None
    if cfg.num_beams > 1:  # the best beam is known only at the end
        out = model.generate(a.prompt, chat=chat, config=cfg)
        print(out.texts[0], file=stdout, flush=True)
        t = out.timings
    else:
        t = Timings()
        for piece in model.stream(a.prompt, chat=chat, config=cfg, timings=t, speculate=a.speculate,
                                  draft_tokens=a.draft_tokens, speculation=spec):
            print(piece, end="", file=stdout, flush=True)
        print(file=stdout, flush=True)
    if a.stats:
        console.result(f"[{len(t.token_ms)} tokens; tokenize {t.tokenize_ms:.1f} ms, TTFT {t.ttft_ms:.1f} ms, "
                       f"TPOT {t.tpot_ms:.2f} ms, {t.decode_tok_s:.1f} tok/s]")
        if spec is not None:
            sp = spec.as_dict()
            console.result(f"[speculation ({sp['proposer']}): {sp['accepted']} of {sp['proposed']} proposed tokens "
                           f"accepted ({sp['acceptance_rate']:.0%}), {sp['tokens_per_step']:.2f} tokens per model step]")
    return 0


def _check_request_memory(a: argparse.Namespace, cfg: Any) -> None:
    """--max-memory before anything loads: the estimate for this prompt (its raw token count; the chat template
    adds a few, which the check before generating counts) and --max-new-tokens on the engine that will run."""
    from pathlib import Path

    from tokenizers import Tokenizer

    from ..artifact.manifest import TOKENIZER, read
    from ..resources import check_budget, estimate
    from ..runtimes import device_engine

    m = read(Path(a.artifact))
    n = len(Tokenizer.from_file(str(Path(a.artifact) / TOKENIZER)).encode(a.prompt).ids)
    engine = a.engine or device_engine(m, a.device)
    check_budget(estimate(m, engine, 1, n, cfg.max_new_tokens, cfg.num_beams), a.max_memory,
                 f"generating {cfg.max_new_tokens} tokens after a {n}-token prompt with {a.artifact}",
                 "raise --max-memory, lower --max-new-tokens, or use a lower-bit artifact")


def cmd_transcribe(a: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from ..api import load

    options: dict[str, Any] = {"num_beams": a.num_beams}
    if a.max_new_tokens is not None:
        options["max_new_tokens"] = a.max_new_tokens
    model = load(a.artifact, device=a.device, engine=a.engine, threads=a.threads, precision=a.precision,
                 delegate=a.delegate, engine_options=parse_pairs(a.engine_option))
    if model.manifest.parity.get("status") == "failed":
        console.result("warning: this artifact FAILED its parity check; outputs may be wrong")
    many = len(a.audio) > 1
    for path in tqdm(a.audio, desc="transcribe", unit="file", file=console.err, disable=console.quiet or not many):
        out = model.transcribe(path, language=a.language, task=a.task, timestamps=a.timestamps,
                               batch_size=a.batch_size, **options)
        if a.json:
            print(json.dumps({"file": path, **out.as_dict()}), file=console.out, flush=True)
        elif a.timestamps:
            for seg in out.segments:
                print(f"{path + ': ' if many else ''}[{seg.start:7.2f} -> {seg.end:7.2f}] {seg.text}",
                      file=console.out, flush=True)
        else:
            print(f"{path}: {out.text}" if many else out.text, file=console.out, flush=True)
    return 0


def cmd_profile(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..artifact.manifest import read
    from ..profile.bandwidth import copy_gb_s
    from ..profile.report import add_ratios, markdown, text
    from ..profile.result import ProfileResult, RunHeader, RunReport
    from ..profile.runner import ProfileConfig, check_cases, iter_profile
    from ..profile.store import ResultStore

    cfg = ProfileConfig(input_lens=a.input_len, output_lens=a.output_len, batch_sizes=a.batch, warmup=a.warmup,
                        reps=a.reps, threads=a.threads, device=a.device, engine=a.engine,
                        precision=a.precision, delegate=a.delegate, engine_options=parse_pairs(a.engine_option),
                        audio=a.audio, audio_seconds=a.audio_seconds, speculate=a.speculate,
                        draft_tokens=a.draft_tokens, max_memory_mb=a.max_memory).validate()
    if a.time_limit is not None and a.time_limit <= 0:
        raise UsageError(f"--time-limit must be > 0 seconds, got {a.time_limit}", "e.g. --time-limit 300")
    if a.resume and not a.json_path:
        raise UsageError("--resume needs --json PATH: the partial results live next to it", "add --json PATH")
    if a.auto and a.speculate:
        raise UsageError("--auto compares engines on plain decoding", "drop --speculate, or drop --auto")
    if a.auto and (a.engine or a.precision != "f32" or a.resume or a.engine_option):
        raise UsageError("--auto chooses the engine and precision itself (with its default options) and does not "
                         "resume", "drop --engine / --precision / --engine-option / --resume, or drop --auto")
    if a.on:
        from ..remote.commands import profile_on

        return profile_on(a, cfg)
    if a.auto:
        return _profile_auto(a, cfg)
    for art in a.artifacts:  # fail on a bad artifact or case before spending minutes on the good ones
        check_cases(read(art), cfg, art)
    store = ResultStore.resumable(a.json_path, {"protocol": cfg.__dict__, "artifacts": a.artifacts}, a.resume) \
        if a.json_path else None
    results: list[ProfileResult] = store.results if store else []
    done = frozenset(str(r.key) for r in results)
    bw = None if a.no_bandwidth else copy_gb_s(threads=a.threads or 2)
    total = len(a.artifacts) * len(cfg.cases()) * (cfg.warmup + cfg.reps) - len(done) * (cfg.warmup + cfg.reps)
    interrupted = False
    try:
        with tqdm(total=total, desc="profile", unit="run", file=console.err, disable=console.quiet) as bar:
            for art in a.artifacts:
                bar.set_postfix_str(Path(art).name)
                for r in iter_profile(art, cfg, lambda: bar.update(1), bw, done, a.time_limit):
                    results.append(r)
                    if store:
                        store.add(r)
    except KeyboardInterrupt:
        interrupted = True
        console.result(f"\ninterrupted: {len(results)} case(s) finished")
    if not results:
        return 130 if interrupted else 0
    add_ratios(results)
    report = RunReport(RunHeader.here(bw, cfg.__dict__), results, complete=not interrupted)
    console.result(text(report), stderr=False)
    if a.json_path:
        report.write_json(a.json_path)
        if not interrupted and store:
            store.remove()
        console.result(f"wrote {a.json_path}" + (" (partial; re-run with --resume to finish)" if interrupted else ""))
    if a.markdown:
        Path(a.markdown).write_text(markdown(report))
        console.result(f"wrote {a.markdown}")
    return 130 if interrupted else 0


def _profile_auto(a: argparse.Namespace, cfg: Any) -> int:
    from tqdm import tqdm

    from ..artifact.manifest import read
    from ..profile import auto
    from ..profile.bandwidth import copy_gb_s
    from ..profile.report import add_ratios, text
    from ..profile.result import ProfileResult, RunHeader, RunReport
    from ..profile.runner import check_cases

    for art in a.artifacts:
        check_cases(read(art), cfg, art)
    bw = None if a.no_bandwidth else copy_gb_s(threads=a.threads or 2)
    results: list[ProfileResult] = []
    checks: dict[str, list[dict[str, Any]]] = {}
    winners: dict[str, Any] = {}
    with tqdm(desc="profile --auto", unit="run", file=console.err, disable=console.quiet) as bar:
        for art in a.artifacts:
            got, checks[art] = auto.run(art, cfg, lambda: bar.update(1), bw)
            results += got
            best = auto.winner(got)
            winners[art] = None if best is None else {k: best[k] for k in ("engine", "precision", "e2e_ms",
                                                                           "ttft_ms", "decode_tok_s")}
    report = RunReport(RunHeader.here(bw, cfg.__dict__), results,
                       sections={"auto": True, "checks": checks, "winners": winners})
    if results:
        add_ratios(results)
        console.result(text(report), stderr=False)
    for art, cs in checks.items():
        for c in cs:
            detail = c.get("error") or (f"max |logits diff| {c['max_abs_diff']:.3g} vs tolerance "
                                        f"{c['tolerance']:.3g}, tokens agree: {c['tokens_agree']}")
            console.result(f"check {Path(art).name}: {c['engine']} {c['precision']}: {c['status']} ({detail})",
                           stderr=False)
        w = winners[art]
        console.result(f"fastest within tolerance for {Path(art).name}: " + (
            f"--engine {w['engine']} --precision {w['precision']} (e2e {w['e2e_ms']:.0f} ms, TTFT "
            f"{w['ttft_ms']:.1f} ms, {w['decode_tok_s']:.1f} tok/s)" if w else "none"), stderr=False)
    if a.json_path:
        report.write_json(a.json_path)
        console.result(f"wrote {a.json_path}")
    return 0 if all(winners.values()) else 1


def cmd_devices(a: argparse.Namespace) -> int:
    from ..reference import NAMES, device_rows
    from ..reference import torch_runner
    from ..runtimes import registry

    if a.on:
        from ..remote.commands import devices_on

        return devices_on(a)
    console.result(f"{'engine':<13} {'device':<14} {'status':<10} detail", stderr=False)
    listed = [(row, lambda r=row: registry.declared_module(r.engine)) for row in registry.device_rows()]
    listed += [(row, lambda: torch_runner) for row in device_rows()]  # the reference: not an engine, listed too
    for row, module_of in listed:
        try:
            module = module_of()
            why = module.probe(row)
        except EdgeseqError as e:
            module, why = None, e.message
        status = "available" if why is None else "missing"
        described = getattr(module, "detail", lambda r: r.target)(row)
        detail = described if why is None else f"{why}; to get it: {row.install}"
        console.result(f"{row.engine:<13} {row.label:<14} {status:<10} {detail}", stderr=False)
    console.result(f"\nengines: {', '.join(registry.names())}; PyTorch (rebuilt from the source): {', '.join(NAMES)}",
                   stderr=False)
    return 0


def cmd_cache(a: argparse.Namespace) -> int:
    import shutil

    from ..runtimes.host.disk_cache import cache_root, folder_bytes

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
            console.result(f"cleared {p} ({size / 2**20:.0f} MiB)", stderr=False)
        return 0
    if not folders:
        console.result(f"no engine caches under {root}", stderr=False)
    for p in folders:
        files = sum(1 for f in p.rglob("*") if f.is_file())
        console.result(f"{p.name:<10} {folder_bytes(p) / 2**20:>9.0f} MiB  {files:>5} files  {p}", stderr=False)
    return 0


DEMO_SUITE = "quick"


def cmd_demo(a: argparse.Namespace) -> int:
    return cmd_compare(build_parser().parse_args(["compare", "--suite", DEMO_SUITE, "--out", a.out]))


def cmd_compare(a: argparse.Namespace) -> int:
    import shlex
    from dataclasses import replace

    from tqdm import tqdm

    from ..compare import Suite, load_suite
    from ..compare import report, sweep
    from ..errors import require
    from ..profile.bandwidth import copy_gb_s
    from ..profile.report import add_ratios, text
    from ..profile.result import RunHeader
    from ..remote import sweep as on_sweep
    from ..remote.commands import connection, targets as remote_targets

    require("yaml", "compare")
    if not a.no_plots:
        require("matplotlib", "compare")
    suite = load_suite(a.suite) if a.suite else Suite()
    suite = suite.on(a.device or suite.device)  # the suite's settings for that device (per_device)
    given = {"formats": _words(a.formats), "weights": _words(a.weights), "input_lens": a.input_lens,
             "output_len": a.output_len, "reps": a.reps, "warmup": a.warmup, "parity_steps": a.parity_steps,
             "time_limit": a.time_limit, "device": a.device, "engine": a.engine, "threads": a.threads,
             "precision": a.precision, "delegate": a.delegate,
             "engine_options": parse_pairs(a.engine_option) or None, "models": a.models or None}
    suite = replace(suite, **{k: v for k, v in given.items() if v is not None}).validate()
    on = remote_targets(a.on)
    if on and a.ray is not None:
        raise UsageError("--on and --ray are two ways to spread a sweep: use one",
                         "--on ssh://... for devices over SSH, --ray for the nodes of a Ray cluster")
    out = Path(a.out)
    store = sweep.open_store(out)
    todo = on_sweep.pending(suite, store, on) if on else sweep.pending(suite, store)
    console.say(f"compare '{suite.name}': {len(suite.models)} models x {len(suite.pairs())} format/weights x "
                f"{len(suite.input_lens)} input lengths, {todo} point(s) to measure -> {out}")
    # --on and --ray: each device or node measures its own bandwidth (the rows' host facts), none here
    bw = None if a.no_bandwidth or on or a.ray is not None else copy_gb_s(threads=suite.threads or 2)
    disconnect = None
    if a.ray is not None and todo:
        from ..compare import ray_sweep

        disconnect = ray_sweep.connect(a.ray or None)
    interrupted = False
    try:
        with tqdm(total=todo * (suite.warmup + suite.reps), desc="compare", unit="run", file=console.err,
                  disable=console.quiet) as bar:
            def say(msg: str) -> None:  # above the bar; in the log either way
                console.say(msg, show=False)
                if not console.quiet:
                    bar.write(msg, file=console.err)

            if on:
                with connection(*on):
                    on_sweep.run_on(on, suite, out, store, bar, say, bandwidth=not a.no_bandwidth)
            elif disconnect is not None:
                ray_sweep.run(suite, out, store, not a.no_bandwidth, bar, say=say)
            else:
                sweep.run(suite, out, store, bw, bar, say=say)
    except KeyboardInterrupt:  # the store holds every point finished before the interrupt
        interrupted = True
        console.result(f"\ninterrupted: finished points are kept in {out / sweep.RESULTS}; run the same command "
                       "to resume")
    finally:
        if disconnect is not None:
            disconnect()
    rows = on_sweep.rows_for(suite, store, on) if on else sweep.rows_for(suite, store)
    if not rows:
        return 130 if interrupted else 1
    ok = [r for r in rows if r.status == "ok"]
    add_ratios(ok)
    command = "edgeseq " + shlex.join(sys.argv[1:])
    header = on_sweep.header(rows, command) if on else RunHeader.here(bw, command=command)
    done = report.write(suite, rows, out, header, complete=not interrupted, plots=not a.no_plots)
    if ok:
        console.result(text(done), stderr=False)
    for line in report.summary_lines(done):
        console.result(line, stderr=False)
    for w in done.sections["warnings"]:
        console.result(f"warning: {w}")
    failed = [r for r in rows if r.status != "ok"]
    for r in failed:
        console.result(f"{r.status}: {r['source']} {r.format} {r.weights} in={r.input_len}"
                       + (f": {r['error']}" if r.get("error") else ""))
    console.result(f"wrote {out / 'index.md'}, {out / 'results.json'}" + ("" if a.no_plots else " and plots"))
    if interrupted:
        return 130
    return 0 if len(ok) == len(rows) else 1


def _words(text: str | None) -> list[str] | None:
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def cmd_verify(a: argparse.Namespace) -> int:
    from ..artifact.manifest import verify

    for art in a.artifacts:
        m = verify(art)
        size = sum(f["bytes"] for f in m.files.values()) / 1e6
        console.result(f"ok  {art}: {len(m.files)} files, {size:.1f} MB, parity {m.parity.get('status')}", stderr=False)
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..profile.result import write_json
    from ..quality import EvalConfig, evaluate
    from ..quality.report import text

    cfg = EvalConfig(reference=a.reference, tokens=a.tokens, prompts=a.prompts, steps=a.steps,
                     sets=tuple(s.strip() for s in a.sets.split(",") if s.strip()), engine=a.engine, device=a.device,
                     threads=a.threads).validate()
    with tqdm(total=cfg.tokens, desc="eval", unit="tok", disable=console.quiet, file=console.err) as bar:
        r = evaluate(a.artifact, cfg, progress=lambda n: bar.update(n - bar.n))
    console.result(text(r), stderr=False)
    if a.json_path:
        write_json(r, a.json_path)
    return 0


COMMANDS = {"eval": cmd_eval, "verify": cmd_verify, "export": cmd_export, "generate": cmd_generate, "transcribe": cmd_transcribe,
            "profile": cmd_profile, "devices": cmd_devices, "demo": cmd_demo, "compare": cmd_compare, "cache": cmd_cache}
