"""Whisper tiny.en transcription: edgeseq's artifacts of every CPU format and precision against the
peer tools, one protocol, one run.

Protocol: the espeak-ng test set (edgeseq.audio.testset, every clip including the ones over 30 s),
English, greedy, no timestamps, 2 threads, one window at a time. Every row runs in its own process:
load, transcribe 1 warm-up clip, then every clip once; --rounds processes per row, round-robin over the
rows so that a slow spell of this shared machine lands on every row. Per row: the median encoder ms
per 30 s window, the median TTFT (per clip: its first window's), the median decode tok/s, the
real-time factor (wall time / audio seconds over all clips and rounds, reading the file and the front
end included), the corpus WER of the texts, peak RSS and the artifact (model) size.

Rows: edgeseq's exports (every one made or reused in --work before any timing) on onnxruntime,
openvino (f32 compute asked for, and OpenVINO's default, which is bf16 on a CPU with AMX/AVX512-BF16)
and litert; then the peers through benchmarks/whisper_peers.py in their venvs under --peers (a peer
whose venv or script is missing is listed as not installed). A peer prints one JSON line:
{"versions", "peak_rss_mb", "model_mb", "clips": [{"wav", "text", "wall_ms", "encode_ms"?,
"ttft_ms"?, "decode_tok_s"?, "windows"?}]}, optional keys as far as the tool exposes them.

    .venv/bin/python benchmarks/whisper.py                    # writes benchmarks/results/whisper.json
    .venv/bin/python benchmarks/whisper.py --rounds 1 --only "onnxruntime fp32"   # smoke
    .venv/bin/python benchmarks/whisper.py --prepare     # only the clips and exports (then time on a quiet machine)
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from row_process import cell, run_rounds  # noqa: E402
from whisper_peers import make_clips, save_hf  # noqa: E402

HERE = Path(__file__).resolve()
SOURCE = "whisper-tiny-en"
WINDOW_S = 30.0
# edgeseq's rows: export name, format, --weights, --target, engine precision, label
EDGESEQ = [("onnx-fp32", "onnx", "fp32", "cpu", "f32", "onnxruntime fp32"),
           ("onnx-int4", "onnx", "int4", "cpu", "f32", "onnxruntime int4"),
           ("onnx-w4a8", "onnx", "w4a8", "cpu", "f32", "onnxruntime w4a8"),
           ("onnx-w8a8", "onnx", "w8a8", "cpu", "f32", "onnxruntime w8a8"),
           ("onnx-w8a8-token", "onnx", "w8a8-token", "cpu", "f32", "onnxruntime w8a8-token"),
           ("openvino-fp32", "openvino", "fp32", "cpu", "f32", "openvino fp32 (f32 compute)"),
           ("openvino-fp32", "openvino", "fp32", "cpu", "default", "openvino fp32 (default compute)"),
           ("openvino-fp16", "openvino", "fp16", "cpu", "f32", "openvino fp16 (f32 compute)"),
           ("openvino-int8", "openvino", "int8", "cpu", "f32", "openvino int8 (f32 compute)"),
           ("openvino-int4", "openvino", "int4", "cpu", "f32", "openvino int4 (f32 compute)"),
           ("tflite-fp32", "tflite", "fp32", "cpu", "f32", "litert fp32"),
           ("tflite-fp16", "tflite", "fp16", "cpu", "f32", "litert fp16"),
           ("tflite-int8", "tflite", "int8", "cpu", "f32", "litert int8"),
           ("tflite-int8-wo", "tflite", "int8-wo", "cpu", "f32", "litert int8-wo")]
# exported and parity-checked, not timed: the QNN HTP simulator is far too slow to transcribe with
NPU = [("npu-fp32", "onnx", "fp32", "npu"), ("npu-w8a16", "onnx", "w8a16", "npu")]
# peer tool -> its venv under --peers (None: the venv this script runs in), the model directory it reads
PEERS = {"transformers": (None, "hf"), "faster-whisper-int8": ("venv-fwhisper", "ct2"),
         "faster-whisper-fp32": ("venv-fwhisper", "ct2"), "openvino-genai-f32": ("venv-ovgenai", "ov"),
         "openvino-genai": ("venv-ovgenai", "ov"), "optimum-onnx": ("venv-optonnx", "onnx")}
# the peers' own exports of the same HF directory: optimum-cli in the exporter's venv (setup_peers.sh)
PEER_EXPORTS = {"ov": ("venv-optintel", ["export", "openvino", "--task", "automatic-speech-recognition-with-past",
                                         "--weight-format", "fp32"]),
                "onnx": ("venv-optonnx", ["export", "onnx", "--task", "automatic-speech-recognition-with-past"])}
BASE = "edgeseq onnxruntime fp32"


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def worker(a: argparse.Namespace) -> None:
    """One edgeseq row's process: load, 1 warm-up clip, every clip once; one JSON line out."""
    import edgeseq

    clips = sorted(Path(a.clips).glob("*.wav"))
    t = time.perf_counter()
    model = edgeseq.load(a.artifact, threads=a.threads, precision=a.precision)
    load_ms = (time.perf_counter() - t) * 1e3
    model.transcribe(str(clips[0]), batch_size=1)  # warm-up
    out = []
    for wav in clips:
        t = time.perf_counter()
        r = model.transcribe(str(wav), batch_size=1)
        wall = (time.perf_counter() - t) * 1e3
        out.append({"wav": wav.name, "text": r.text, "audio_s": r.audio_seconds, "wall_ms": wall,
                    "windows": len(r.ids), **{k: r.timings[k] for k in
                                              ("encode_ms", "ttft_ms", "decode_tok_s", "features_ms", "steps")}})
    m = model.manifest
    print(json.dumps({"engine": model.backend.__class__.__name__, "versions": m.tools, "load_ms": load_ms,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "model_mb": _mb(Path(a.artifact)), "clips": out}))


def export_all(work: Path, fresh: bool, only: list[str] | None) -> dict[str, dict]:
    """Every export the rows need (made once, reused from work/exports), with its parity and size;
    the NPU ones unless --only picks rows."""
    facts: dict[str, dict] = {}
    for name, fmt, weights, target, *rest in [*EDGESEQ, *([] if only else NPU)]:
        label = f"edgeseq {rest[1]}" if rest else ""
        if name in facts or (only and rest and label != BASE and not any(s in label for s in only)):
            continue
        out = work / "exports" / name
        if fresh or not (out / "edgeseq.json").exists():
            print(f"exporting {name}", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "edgeseq", "export", SOURCE, "--format", fmt, "--weights", weights,
                   "--target", target, "--out", str(out), "--overwrite", "--quiet"]
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
                facts[name] = {"export": "failed", "error": " | ".join(lines[-3:])[:500]}
                continue
            facts[name] = {"export_s": round(time.perf_counter() - t, 1)}
        m = json.loads((out / "edgeseq.json").read_text())
        p = m.get("parity") or {}
        enc = p.get("encoder") or {}
        facts[name] = {**facts.get(name, {}), "export": "ok", "parity": p.get("status"),
                       "max_abs_diff": p.get("max_abs_diff"), "tolerance": p.get("tolerance"),
                       "encoder_status": enc.get("status"), "encoder_max_abs_diff": enc.get("max_abs_diff"),
                       "encoder_tolerance": enc.get("tolerance"), "quantization": m.get("quantization"),
                       "mb": round(_mb(out), 1)}
    return facts


def _refs(clips: Path) -> dict[str, str]:
    """The spoken test set (made once) and its clips.json, which the peer workers read: wav name -> text."""
    make_clips(clips)
    return {c["wav"]: c["text"] for c in json.loads((clips / "clips.json").read_text())}


def summarize(runs: list[dict], refs: dict[str, str]) -> dict:
    """A row's figures over its rounds (raw clips kept)."""
    from edgeseq.audio import corpus_wer

    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"]}
    for r in ok:  # whisper_peers.py writes "rows" with wall_ms a list over its own rounds (here 1)
        r.setdefault("clips", r.get("rows") or [])
        for c in r["clips"]:
            if isinstance(c.get("wall_ms"), list):
                c["audio_s"] = c.get("audio_s", 0.0) * len(c["wall_ms"])
                c["wall_ms"] = sum(c["wall_ms"])
    clips = [c for r in ok for c in r["clips"]]

    def med(key: str, per_window: bool = False) -> float | None:
        xs = [c[key] / (c.get("windows") or 1 if per_window else 1) for c in clips if c.get(key) is not None]
        xs = [x for x in xs if not math.isnan(x)]
        return statistics.median(xs) if xs else None

    # edgeseq's rows give a clip's encoder time summed over its windows, the peers' one window's
    encoder = med("encode_ms", per_window=True) if any("encode_ms" in c for c in clips) else med("encoder_ms")

    audio = sum(c.get("audio_s") or 0.0 for c in clips) or None
    wall = sum(c["wall_ms"] for c in clips) / 1e3
    texts = [(refs[c["wav"]], c["text"]) for c in ok[-1]["clips"] if c["wav"] in refs]
    return {"encoder_ms_per_window": encoder, "ttft_ms": med("ttft_ms"),
            "decode_tok_s": med("decode_tok_s"), "rtf": wall / audio if audio else None,
            "wer": corpus_wer(texts) if texts else None, "clips_scored": len(texts),
            "peak_rss_mb": max((r.get("peak_rss_mb") or 0) for r in ok) or None,
            "model_mb": ok[0].get("model_mb"), "versions": ok[0].get("versions"),
            "rounds": len(ok), "raw": runs}


def table(rows: list[dict], facts: dict[str, dict]) -> list[str]:
    base = next((r for r in rows if r["row"] == BASE and r.get("rtf")), None)
    out = ["| row | export / parity (max logits diff, encoder diff) | MB | encoder ms / 30 s | TTFT ms | "
           "decode tok/s | RTF | RTF vs edgeseq ORT fp32 | WER | peak RSS MB |", "|" + "---|" * 10]
    for r in rows:
        f = facts.get(r.get("export_name") or "", {})
        par = (f"{f.get('parity')} ({cell(f.get('max_abs_diff'), '.3g')}, {cell(f.get('encoder_max_abs_diff'), '.3g')})"
               if f else "-")
        if "error" in r:
            out.append(f"| {r['row']} | {par} | | {r['error'][:120]} |" + " |" * 6)
            continue
        ratio = f"{r['rtf'] / base['rtf']:.2f}x" if base and r.get("rtf") else "-"
        out.append(f"| {r['row']} | {par} | {cell(r.get('model_mb'), '.1f')} | {cell(r['encoder_ms_per_window'], '.1f')} | "
                   f"{cell(r['ttft_ms'], '.1f')} | {cell(r['decode_tok_s'], '.1f')} | {cell(r['rtf'], '.4f')} | {ratio} | "
                   f"{cell(None if r['wer'] is None else 100 * r['wer'], '.1f')}% | {cell(r['peak_rss_mb'], '.0f')} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/edgeseq-whisper", help="clips and exports (reused if present)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="the peer venvs (venv-*)")
    p.add_argument("--peers-script", default=str(HERE.parent / "whisper_peers.py"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=None, help="comma-separated texts: only rows whose label contains one "
                   f"({BASE}, the ratios' base, always runs)")
    p.add_argument("--fresh", action="store_true", help="re-export edgeseq's artifacts")
    p.add_argument("--table", action="store_true", help="print the table of the last run's JSON again (its raw "
                   "samples re-summarized and written back), time nothing")
    p.add_argument("--prepare", action="store_true", help="make the clips and every export (edgeseq's and the "
                   "peers'), time nothing")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    p.add_argument("--clips", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    work = Path(a.work)
    if a.table:
        doc = json.loads((Path(a.out) / "whisper.json").read_text())
        refs = {c["wav"]: c["text"] for c in json.loads((work / "clips" / "clips.json").read_text())}
        doc["rows"] = [{**r, **summarize(r["raw"], refs)} if r.get("raw") else r for r in doc["rows"]]
        (Path(a.out) / "whisper.json").write_text(json.dumps(doc, indent=2))
        print("\n".join(table(doc["rows"], doc["exports"])))
        return
    clips = work / "clips"
    refs = _refs(clips)
    only = [s.strip() for s in a.only.split(",")] if a.only else None
    facts = export_all(work, a.fresh, only)
    script = Path(a.peers_script)
    plan: list[dict] = []  # row label, export name, command (None: not runnable, with the reason)
    for name, _, _, _, precision, label in EDGESEQ:
        row = {"row": f"edgeseq {label}", "export_name": name}
        if name not in facts:
            continue  # not asked for (--only)
        if facts[name]["export"] != "ok":
            row["error"] = f"export failed: {facts[name]['error']}"
        else:
            row["cmd"] = [sys.executable, str(HERE), "--worker", "--artifact", str(work / "exports" / name),
                          "--precision", precision, "--clips", str(clips), "--threads", str(a.threads)]
        plan.append(row)
    for tool, (venv, kind) in PEERS.items():
        row = {"row": tool}
        python = Path(sys.executable) if venv is None else Path(a.peers) / venv / "bin" / "python"
        if not script.exists():
            row["error"] = f"not installed: {script.name} is missing"
        elif not python.exists():
            row["error"] = f"not installed: no venv at {python.parents[1]}"
        else:
            model, why = peer_model(kind, work, Path(a.peers))
            if model is None:
                plan.append({**row, "error": why})
                continue
            row["cmd"] = [str(python), str(script), tool, "--model", str(model), "--clips", str(clips),
                          "--threads", str(a.threads), "--rounds", "1"]
        plan.append(row)
    plan = [r for r in plan if not only or r["row"] == BASE or any(s in r["row"] for s in only)]
    if a.prepare:
        for r in plan:
            print(f"{r['row']}: {'ready' if 'cmd' in r else r['error']}", file=sys.stderr)
        return
    runs = run_rounds(plan, a.rounds, a.threads)
    rows = []
    for r in plan:
        res = summarize(runs[r["row"]], refs) if "cmd" in r else {"error": r["error"]}
        rows.append({"row": r["row"], "export_name": r.get("export_name"), "command": r.get("cmd"), **res})
    from edgeseq.profile.bandwidth import copy_gb_s
    from edgeseq.profile.result import RunHeader

    audio_s = sum(_audio_s(w) for w in clips.glob("*.wav"))
    protocol = {"clips": len(refs), "audio_seconds": round(audio_s, 2), "rounds": a.rounds, "threads": a.threads,
                "warmup_clips": 1, "decoding": "greedy, English, no timestamps, one 30 s window at a time"}
    header = RunHeader.here(copy_gb_s(threads=a.threads), protocol, " ".join(["benchmarks/whisper.py", *sys.argv[1:]]))
    doc = {**header.to_dict(), "exports": facts, "rows": rows}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "whisper.json").write_text(json.dumps(doc, indent=2))
    print(header.host_line() + f"; {len(refs)} espeak clips, {audio_s:.1f} s of audio, {a.rounds} rounds")
    print("\n".join(table(rows, facts)))
    npu = [f"{n}: {facts[n]['export']}" + (f", parity {facts[n].get('parity')} (max diff "
                                           f"{cell(facts[n].get('max_abs_diff'), '.3g')}, encoder "
                                           f"{cell(facts[n].get('encoder_max_abs_diff'), '.3g')}), "
                                           f"{facts[n].get('mb')} MB" if facts[n]['export'] == "ok"
                                           else f": {facts[n]['error'][:200]}") for n, *_ in NPU if n in facts]
    print("\nNPU target (exported and parity-checked only; the HTP simulator is too slow to transcribe with): "
          + "; ".join(npu))


def peer_model(kind: str, work: Path, peers: Path) -> tuple[Path | None, str]:
    """The directory a peer reads: the CTranslate2 checkpoint itself, the HF directory of the same
    weights, or optimum-cli's export of that directory (made once, in the exporter's venv)."""
    if kind == "ct2":
        return _ct2_dir(), ""
    hf = work / "hf"
    if not (hf / "config.json").exists():
        save_hf(hf)
    if kind == "hf":
        return hf, ""
    out = work / "peer-models" / kind
    if not (out / "config.json").exists():
        venv, args = PEER_EXPORTS[kind]
        cli = peers / venv / "bin" / "optimum-cli"
        if not cli.exists():
            return None, f"not prepared: {cli} is missing (benchmarks/setup_peers.sh builds it)"
        print(f"exporting the peers' {kind} model with {cli}", file=sys.stderr, flush=True)
        done = subprocess.run([str(cli), *args[:2], "--model", str(hf), *args[2:], str(out)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            return None, f"optimum-cli {args[1]} export failed: {done.stderr.strip().splitlines()[-1:]}"
    return out, ""


def _ct2_dir() -> Path:
    from edgeseq.models.sources import PACKAGED

    import importlib.util

    spec = importlib.util.find_spec(PACKAGED[SOURCE].package)
    assert spec is not None and spec.origin is not None, "the packaged model is installed with edgeseq's extras"
    return Path(spec.origin).parent / PACKAGED[SOURCE].file


def _audio_s(wav: Path) -> float:
    from edgeseq.audio import load_audio

    return len(load_audio(wav)) / 16000


if __name__ == "__main__":
    main()
