"""The argument parser of every command; no command runs here."""
from __future__ import annotations

import argparse

def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def _console_args(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--quiet / --verbose, before the command or after it (a subcommand's default leaves the top's)."""
    default = False if top else argparse.SUPPRESS
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", "-q", action="store_true", default=default,
                   help="print results and errors only (no steps, no progress bars)")
    g.add_argument("--verbose", "-v", action="store_true", default=default,
                   help="also show what dependencies print (warnings, logs, their progress bars), "
                   "instead of keeping it in the command's log file")


def _speculate_args(p: argparse.ArgumentParser, effect: str) -> None:
    """--speculate and --draft-tokens of the commands that generate (generate, profile)."""
    p.add_argument("--speculate", default=None, metavar="lookup|DRAFT|lookup+DRAFT",
                   help="speculative decoding: 'lookup' proposes tokens from the prompt and text so far, DRAFT (an "
                   "artifact with the same tokenizer, e.g. a w8a8 export of the same model) proposes them, "
                   "'lookup+DRAFT' the lookup's where three tokens match, else the draft's; the model checks "
                   f"them in one step. {effect}")
    p.add_argument("--draft-tokens", type=int, default=5, metavar="K",
                   help="with --speculate: the most tokens proposed per step (default: 5; adapts to the acceptance)")


def _memory_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--max-memory", type=float, default=None, metavar="MB", help="a memory budget: refuse, before "
                   f"loading, {what} whose estimate (weights as the engine holds them + KV cache at the requested "
                   "length + workspace + runtime) exceeds MB; `edgeseq profile` prints the estimate beside the "
                   "measured peak")


def _runtime_args(p: argparse.ArgumentParser, threads_default: int | None, suite: bool = False) -> None:
    """The runtime flags of every command that runs an artifact (generate, profile, compare), from one
    definition. `suite`: compare, where a flag left out takes the suite's value."""
    from ..runtimes import registry
    from ..reference import COMPILED, options_class
    from ..runtimes.options import table

    keep = " (default: the suite's, else {})" if suite else " (default: {})"
    p.add_argument("--device", default=None if suite else "cpu", help="cpu | gpu | npu | auto, optionally with a "
                   "vendor: gpu:cuda, npu:qnn" + keep.format("cpu") + "; `edgeseq devices` lists this host's")
    p.add_argument("--engine", default=None, help=registry.engine_help())
    p.add_argument("--threads", type=int, default=threads_default,
                   help="engine intra-op threads" + keep.format(threads_default or 2 if suite else
                                                               threads_default or "engine default"))
    p.add_argument("--precision", default=None if suite else "f32", help="compute precision for engines that "
                   "choose one: OpenVINO f32, bf16, f16, or default (the device's choice: bf16 on CPUs that have "
                   "it); torch reference: f32, or bf16 / f16 under autocast; torch-compile: f32, bf16 or f16 parameters, or "
                   "default (bf16 on a GPU, f32 on the CPU); recorded in every profile"
                   + keep.format("f32"))
    p.add_argument("--delegate", default=None, metavar="PATH", help="LiteRT (tflite artifacts): a GPU or NPU "
                   "delegate library for --device gpu / npu")
    per_engine = "; ".join(f"{name}: " + ", ".join(f"{o} ({t}, default {d!r})" for o, t, d, _ in table(options))
                           for name, options in [*((n, s.options) for n, s in registry.engines().items()),
                                                 (COMPILED, options_class(COMPILED))])
    p.add_argument("--engine-option", action="append", default=None, metavar="NAME=VALUE",
                   help="an option of the engine that runs (repeatable), checked against its options: "
                   f"{per_engine}. Booleans: 1/0, true/false, on/off. Recorded in every profile")


SSH_URL = "ssh://[user@]host[:port]"


def _on_arg(p: argparse.ArgumentParser, what: str, several: bool) -> None:
    """--on: run on a device over SSH (edgeseq/remote): installs this edgeseq there, copies artifacts once."""
    p.add_argument("--on", action="append" if several else "store", default=None, metavar=SSH_URL,
                   help=f"{what} on a device over SSH (the system ssh client and its config/agent; keys only): "
                   "edgeseq installs this version there (runtime only, from wheels sent from here), copies each "
                   "artifact once into ~/.cache/edgeseq-remote and brings the results back; add ?python=PATH or "
                   "?cache=DIR to the URL to choose them" + ("; repeatable: devices run in parallel, one point "
                   "each at a time" if several else "") + "; docs/remote.md")


def build_parser() -> argparse.ArgumentParser:
    from ..export.formats import formats
    from ..models import known_names

    ap = argparse.ArgumentParser(prog="edgeseq", description="Export, run and profile small language models "
                                 "(encoder-decoder and decoder-only) for edge devices.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    ap.add_argument("--version", action="version", version=f"edgeseq {_version()}")
    _console_args(ap, top=True)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("export", help="convert a model to an artifact directory, checked against PyTorch",
                       description="Export MODEL with its KV cache, run the parity check against PyTorch, and write "
                       "a self-describing artifact directory (graphs, tokenizer, edgeseq.json).")
    e.add_argument("model", help=f"preset:NAME (random weights), a packaged name, a Hugging Face model directory, "
                   f"a .gguf file, or a hub id where a network exists. Known names: {known_names()}")
    e.add_argument("--format", default="onnx", help=f"artifact format: {' | '.join(formats())} (default: onnx)")
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
    e.add_argument("--no-ring-cache", dest="ring_cache", action="store_false",
                   help="tflite, --target npu: sliding-window layers keep the full-length cache instead of a ring "
                   "of window rows (a ring cannot rewind more than one token)")
    e.add_argument("--no-ort-kernels", dest="ort_kernels", action="store_false",
                   help="onnx: plain attention instead of ONNX Runtime's fused kernel (a graph OpenVINO and other "
                   "ONNX readers run)")
    e.add_argument("--native", action="append", default=[], metavar="RUNTIME",
                   help="also write the files a native app runtime loads the artifact with, and check its greedy "
                   "tokens against edgeseq's (repeatable): ortgenai (onnxruntime-genai), ovgenai (openvino.genai), "
                   "litertlm (LiteRT-LM); run them with --engine RUNTIME")
    e.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    e.add_argument("--parity-steps", type=int, default=32,
                   help="greedy decode steps compared with PyTorch (default: 32; 0 skips, recorded as skipped)")
    e.add_argument("--keep-failed", action="store_true", help="keep an artifact that fails parity, marked failed")
    e.add_argument("--quality-tokens", type=int, default=256, help="a quantized (non-fp32) export is scored against "
                   "PyTorch on this many tokens of the built-in texts (KL divergence, top-1 agreement, perplexity; "
                   "`edgeseq eval` for the full set), recorded in the manifest and shown by profile and compare "
                   "(default: 256; 0 skips)")
    e.add_argument("--seed", type=int, default=0, help="seed for preset random weights (default: 0)")

    g = sub.add_parser("generate", help="generate text from an artifact, streaming tokens",
                       description="Generate from PROMPT with an exported artifact; tokens are printed as they come.")
    g.add_argument("artifact", help="artifact directory written by `edgeseq export`")
    g.add_argument("prompt", help="prompt text")
    g.add_argument("--max-new-tokens", type=int, default=None,
                   help="stop after this many new tokens (default: 128, capped to what the model's positions leave)")
    g.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end the output where TEXT first appears (not printed); repeatable")
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
    _speculate_args(g, "Greedy output is unchanged; sampling keeps its distribution")
    g.add_argument("--raw", action="store_true", help="do not apply the artifact's chat template")
    g.add_argument("--stats", action="store_true", help="print TTFT, TPOT and tok/s to stderr afterwards")
    _memory_arg(g, "a request")
    _runtime_args(g, None)

    t = sub.add_parser("transcribe", help="speech to text with a Whisper artifact",
                       description="Transcribe AUDIO files (WAV; FLAC, OGG and others with soundfile installed; any "
                       "sampling rate) with a speech artifact: 30 s windows, text to stdout (one line per file, "
                       "prefixed with its name when there are several), or --json with segments and timings.")
    t.add_argument("artifact", help="artifact directory of a Whisper export")
    t.add_argument("audio", nargs="+", help="audio files")
    t.add_argument("--language", default=None, help="multilingual models: language code such as en, de, fr "
                   "(default: detected per window); English-only (.en) models take en only")
    t.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                   help="transcribe (default), or translate into English (multilingual models)")
    t.add_argument("--timestamps", action="store_true", help="time segments with the model's timestamp tokens")
    t.add_argument("--num-beams", type=int, default=1, help="beam search with N beams (default: 1 = greedy; "
                   "not with --timestamps)")
    t.add_argument("--max-new-tokens", type=int, default=None,
                   help="most tokens per 30 s window (default: half the decoder's positions, 224 for Whisper)")
    t.add_argument("--batch-size", type=int, default=8, help="30 s windows decoded together (default: 8)")
    t.add_argument("--json", action="store_true", help="print one JSON object per file: text, segments, timings")
    _runtime_args(t, None)

    pr = sub.add_parser("profile", help="measure TTFT, TPOT, throughput, memory and size",
                        description="Profile one or more artifacts under the same protocol: forced decoding of "
                        "--output-len tokens after a prompt of exactly --input-len tokens; medians of --reps runs "
                        "after --warmup runs. Several artifacts print side by side with ratios against the first.")
    pr.add_argument("artifacts", nargs="+", help="artifact directories")
    pr.add_argument("--input-len", type=_ints, default=[128], help="prompt tokens; comma list sweeps (default: 128)")
    pr.add_argument("--output-len", type=_ints, default=[64], help="new tokens; comma list sweeps (default: 64)")
    pr.add_argument("--batch", type=_ints, default=[1], help="batch sizes; comma list sweeps (default: 1)")
    pr.add_argument("--audio", default=None, metavar="FILE", help="speech artifacts (Whisper): profile on this "
                    "audio file's first 30 s window instead of the synthetic signal")
    pr.add_argument("--audio-seconds", type=float, default=None, metavar="N", help="speech artifacts: seconds of a "
                    "synthetic voice-like signal, up to 30 (default: 30); reported beside the real-time factor")
    _speculate_args(pr, "The acceptance statistics are reported under the table")
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
    _memory_arg(pr, "a profile whose largest case")
    _on_arg(pr, "profile", several=False)
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
    _on_arg(c, "measure every point", several=True)
    c.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the sweep on a Ray cluster (needs edgeseq[ray]): each export and each profile point is a "
                   "Ray task, a point holds every CPU of its node, every row records its node's host facts. "
                   "ADDRESS: the head's HOST:PORT (or auto); without it, a local Ray runtime on this machine")
    _runtime_args(c, None, suite=True)

    dv = sub.add_parser("devices", help="list engines and devices on this host, and what each missing one needs")
    _on_arg(dv, "list those", several=True)

    ca = sub.add_parser("cache", help="show or clear the engines' caches of compiled graphs",
                        description="Engines keep compiled graphs and packed weights under $XDG_CACHE_HOME/edgeseq "
                        "(default ~/.cache/edgeseq), one folder per engine, about one model's size per entry; "
                        "the least recently used entries are dropped to keep each under EDGESEQ_CACHE_GB "
                        "(default 4). Without flags: each folder's size. Clearing is always safe: the next load "
                        "compiles again.")
    ca.add_argument("--clear", nargs="?", const="all", default=None, metavar="ENGINE",
                    help="delete the cache of ENGINE (openvino, litert, qnn) or, without a name, all of it")

    ev = sub.add_parser("eval", help="quality against the float reference: perplexity, KL divergence, top-1 and "
                        "greedy agreement", description="Score ARTIFACT on edgeseq's built-in English prose and chat "
                        "texts, teacher-forced, against its float reference (the PyTorch model it was exported from, "
                        "or another artifact of the same tokenizer): perplexity, KL divergence of the next-token "
                        "distribution (mean and 99th percentile), top-1 agreement, and where free greedy "
                        "generation first departs from the reference's.")
    ev.add_argument("artifact", help="artifact directory")
    ev.add_argument("--reference", default="source", help="source (default: the PyTorch model the artifact was "
                    "exported from, float32) or an artifact directory of the same model, e.g. its fp32 export")
    ev.add_argument("--tokens", type=int, default=2048, help="target tokens scored (default: 2048, about the whole "
                    "prose set plus part of the chat set)")
    ev.add_argument("--prompts", type=int, default=5, help="free greedy runs compared (default: 5)")
    ev.add_argument("--steps", type=int, default=64, help="new tokens per greedy run (default: 64)")
    ev.add_argument("--sets", default="prose,chat", help="text sets: prose, chat (default: both; chat needs the "
                    "artifact's chat template)")
    ev.add_argument("--engine", default=None, help="engine that runs ARTIFACT (default: its own)")
    ev.add_argument("--device", default="cpu", help="device that runs ARTIFACT: cpu (default), gpu, npu (the "
                    "reference always runs on the CPU)")
    ev.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the engine's)")
    ev.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="also write the figures as JSON")

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
    for p in sub.choices.values():
        _console_args(p)
    return ap


def _version() -> str:
    from .. import __version__

    return __version__
