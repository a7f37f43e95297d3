"""Memory on the device: artifact size, load peak and generation peak resident memory of edgeseq's exports
beside the peer tools' on the same model, at fp32 and each engine's lowest-bit recipe.

Protocol: batch 1, prompts of 128 and 2048 tokens (--lens), 32 new tokens forced, greedy, 2 threads. Every
row and prompt length runs in its own process: import the engine library, then the kernel's peak resident
set (VmHWM) is reset through /proc/self/clear_refs (edgeseq/profile/memory.py's PeakRSS) and the model is
loaded: the mark after loading is the load peak; it is reset again and one generate call runs: the mark
after it is the generation peak (it includes the loaded model). The peers run their shared scripts
(../shared/peers) unchanged under their own venvs, with the same marks set by benchmarks/memory_peer.py.
edgeseq's prompt is its profiling passage, the peers' their own passage: the same lengths, other text.

Rows per model (a peer whose venv is missing is listed as not installed; a failed export or run is
recorded in its row):
  smollm2-135m-instruct  edgeseq onnxruntime fp32 / int4 / w4a8, openvino fp32 / int8 / int4, tflite fp32 /
                         int8; onnxruntime-genai fp32 / int4, openvino-genai f32 on optimum-intel's fp32 / int8
                         / int4 IR (int4: group size 64), optimum-onnx fp32, litert-torch export_hf
                         fp32 / int8
  preset:t5-small        the same edgeseq rows; optimum-onnx fp32, optimum-intel f32 on fp32 / int8 / int4 IR
edgeseq's TFLite exports are made for --max-input 2048 --max-output 32 (one artifact for both lengths: a
fixed KV cache of 2080 rows); litert-torch's export_hf has fixed prefill lengths, so it is exported once per
prompt length (its artifact size is the 128 one's). The ratio column is the peak of the 128-token process
(load or generation, the higher) over the artifact's size on disk (its tokenizer included).

    benchmarks/setup_peers.sh /tmp/edgeseq-peers
    .venv/bin/python benchmarks/memory.py                         # writes benchmarks/results/memory.json
    .venv/bin/python benchmarks/memory.py --only "edgeseq openvino" --lens 128 --models smollm2-135m-instruct
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from row_process import cell, run_row  # noqa: E402
from vs_litert import litert_export_hf  # noqa: E402
from vs_peers import _run_export, peer_hf_dir  # noqa: E402

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
NEW_TOKENS = 32
# edgeseq's rows: format, weights; the TFLite ones exported for the longest prompt
EDGESEQ = [("onnx", "fp32"), ("onnx", "int4"), ("onnx", "w4a8"), ("openvino", "fp32"), ("openvino", "int8"),
           ("openvino", "int4"), ("tflite", "fp32"), ("tflite", "int8")]
ENGINE_MODULE = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "ai_edge_litert.interpreter"}
CLASS = {"fp32": "fp32", "int8": "int8", "int4": "4-bit", "w4a8": "4-bit"}  # comparable precision of a weights


@dataclass
class Row:
    model: str
    tool: str
    weights: str
    artifact: Callable[[], list[Path]]  # what the row loads: its size on disk is the artifact MB
    cmd: Callable[[int], list[str]]  # the worker's command for one prompt length
    prepare: Callable[[], str | None] = lambda: None  # export; None when ready, else why not
    error: str | None = None
    runs: dict[int, dict] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.tool} {self.weights}"


def worker(a: argparse.Namespace) -> None:
    """One edgeseq row at one prompt length: load and generate once with the marks; one JSON line out."""
    import importlib

    from edgeseq.profile.memory import PeakRSS, rss_mb

    fmt = json.loads((Path(a.artifact) / "edgeseq.json").read_text())["format"]
    importlib.import_module(ENGINE_MODULE[fmt])
    import edgeseq
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.profile.prompts import prompt_ids

    before = rss_mb()
    with PeakRSS() as load:
        model = edgeseq.load(a.artifact, threads=a.threads)
        load_peak = load.peak_mb
    after = rss_mb()
    ids = prompt_ids(model.tokenizer, a.in_len, model.manifest.dims["vocab_size"])
    with PeakRSS() as gen:
        out = model.generate_ids([ids], GenerationConfig(max_new_tokens=a.new_tokens, ignore_eos=True))
        gen_peak = gen.peak_mb
    print(json.dumps({"rss_before_load_mb": round(before, 1), "load_peak_mb": round(load_peak, 1),
                      "after_load_mb": round(after, 1), "gen_peak_mb": round(gen_peak, 1), "in_len": len(ids),
                      "new_tokens": len(out.ids[0]), "engine": type(model.backend).__name__,
                      "versions": model.manifest.tools}))


def _edgeseq_export(source: str, out: Path, fmt: str, weights: str) -> str | None:
    """edgeseq's export through its CLI, once (kept while out/edgeseq.json exists)."""
    if (out / "edgeseq.json").exists():
        return None
    extra = ["--max-input", "2048", "--max-output", str(NEW_TOKENS)] if fmt == "tflite" else []
    print(f"exporting {out.name}", file=sys.stderr, flush=True)
    while True:
        r = subprocess.run([sys.executable, "-m", "edgeseq", "export", source, "--format", fmt, "--weights", weights,
                            "--out", str(out), "--overwrite", "--quiet", *extra], capture_output=True, text=True)
        if "another export is writing" not in r.stderr:
            break
        time.sleep(15)  # the same export started elsewhere (an earlier run, --prepare): use its artifact
        if (out / "edgeseq.json").exists():
            return None
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    return None if r.returncode == 0 else f"export failed: {lines[-1][:200] if lines else r.returncode}"


def rows_for(source: str, a: argparse.Namespace) -> list[Row]:
    """Every row of one model, exports not yet made (Row.prepare does that)."""
    work, peers, shared = Path(a.work), Path(a.peers), Path(a.shared_peers)
    name = source.split(":")[-1]
    t5 = source.startswith("preset:t5")
    rows: list[Row] = []
    for fmt, weights in EDGESEQ:
        ready = Path(a.ready) / f"{fmt}-{weights}" if a.ready else None
        art = ready if ready and source == "smollm2-135m-instruct" and (ready / "edgeseq.json").exists() \
            else work / f"{name}-{fmt}-{weights}"
        cmd = lambda n, art=art: [sys.executable, str(HERE), "--worker", "--artifact", str(art), "--in-len", str(n),
                                  "--new-tokens", str(NEW_TOKENS), "--threads", str(a.threads)]
        rows.append(Row(source, f"edgeseq {'onnxruntime' if fmt == 'onnx' else fmt}", weights,
                        lambda art=art: [art], cmd,
                        lambda art=art, fmt=fmt, weights=weights: _edgeseq_export(source, art, fmt, weights)))

    def hf() -> Path:
        return peer_hf_dir(source, work / f"{name}-hf")

    def py(venv: str) -> Path:
        return peers / venv / "bin" / "python"

    def add(tool: str, weights: str, venvs: list[str], script: str, imports: str, artifact: Callable[[], list[Path]],
            model: Callable[[int], Path], prepare: Callable[[], str | None], extra: list[str] = ()) -> None:
        missing = [v for v in venvs if not py(v).exists()]
        cmd = lambda n: [str(py(venvs[0])), str(HERE.parent / "memory_peer.py"), "--script", str(shared / script),
                         "--import", imports, "--", "--model", str(model(n)), "--tokenizer",
                         str(hf() / "tokenizer.json"), "--name", name, "--in-len", str(n), "--out-len",
                         str(NEW_TOKENS), "--warmup", "0", "--reps", "1", "--threads", str(a.threads), *extra]
        err = f"not installed ({', '.join(missing)}: run benchmarks/setup_peers.sh)" if missing else None
        if not (shared / script).exists():
            err = f"no peer script {shared / script} (pass --shared-peers: the shared/peers directory)"
        rows.append(Row(source, tool, weights, artifact, cmd, prepare, err))

    def optimum_cli(venv: str, *args: str, done: str = "config.json") -> Callable[[], str | None]:
        out = Path(args[-1])
        return lambda: _run_export([str(py(venv).parent / "optimum-cli"), "export", *args[:-1], "--model", str(hf()),
                                    "--task", "text2text-generation-with-past" if t5 else "text-generation-with-past",
                                    str(out)], out / done)

    onnx_dir = work / f"optimum-onnx-{name}"
    add("optimum-onnx", "fp32", ["venv-optonnx"], "peer_optimum_ort.py",
        "onnxruntime,torch,transformers,optimum.onnxruntime", lambda: _optimum_onnx_files(onnx_dir), lambda n: onnx_dir,
        optimum_cli("venv-optonnx", "onnx", str(onnx_dir)))
    for weights in ("fp32", "int8", "int4"):
        ov = work / f"optimum-ov-{name}-{weights}"
        # int4: group size 64, as SmolLM2's 576 channels do not divide into optimum's default 128 (NNCF refuses)
        group = ["--group-size", "64"] if weights == "int4" and not t5 else []
        export = optimum_cli("venv-optintel", "openvino", "--weight-format", weights, *group, str(ov))
        if t5:
            add("optimum-intel f32", weights, ["venv-optintel"], "peer_optimum_ov.py",
                "openvino,torch,transformers,optimum.intel", lambda ov=ov: [ov], lambda n, ov=ov: ov, export,
                ["--precision", "f32"])
        else:
            add("openvino-genai f32", weights, ["venv-ovgenai", "venv-optintel"], "peer_ovgenai.py",
                "openvino,openvino_genai", lambda ov=ov: [ov], lambda n, ov=ov: ov, export, ["--precision", "f32"])
    if t5:  # onnxruntime-genai and litert-torch export decoder-only models only
        return rows
    for weights in ("fp32", "int4"):
        og = work / f"ortgenai-{name}-{weights}"
        add("onnxruntime-genai", weights, ["venv-ortgenai"], "peer_ortgenai.py", "onnxruntime_genai",
            lambda og=og: [og], lambda n, og=og: og,
            lambda og=og, weights=weights: _run_export(
                [str(py("venv-ortgenai")), "-m", "onnxruntime_genai.models.builder", "-i", str(hf()), "-o", str(og),
                 "-p", weights, "-e", "cpu", "-c", str(work / "ortgenai-cache")], og / "genai_config.json"))
    lt = lambda n: work / f"litert-export-hf-{name}-{n}"  # noqa: E731
    for weights, file in (("fp32", "model.tflite"), ("int8", "model_quantized.tflite")):
        add("litert-torch export_hf", weights, ["venv-litert"], "peer_litert.py", "numpy,ai_edge_litert.interpreter",
            lambda file=file: [lt(min(a.lens)) / f for f in (file, "tokenizer.json", "tokenizer_config.json")], lt,
            lambda: next(filter(None, (litert_export_hf(py("venv-litert"), hf(), lt(n), n, NEW_TOKENS)
                                       for n in a.lens)), None),
            ["--file", file, "--hf-config", str(hf() / "generation_config.json")])
    return rows


def _optimum_onnx_files(d: Path) -> list[Path]:
    """What ORTModelFor* loads from an optimum-onnx export: the merged decoder where there is one (it is
    preferred), not the separate first-step and with-past decoders the export also writes."""
    merged = (d / "decoder_model_merged.onnx").exists()
    skip = {"decoder_model.onnx", "decoder_with_past_model.onnx"} if merged else set()
    return [f for f in d.iterdir() if f.name not in skip and not any(f.name.startswith(s + "_data") for s in skip)]


def size_mb(paths: list[Path]) -> float | None:
    """Size on disk of files and directories (every file under them)."""
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return round(sum(f.stat().st_size for f in files) / 2**20, 1) if files else None


def summary(row: Row, lens: list[int]) -> dict:
    """A row's JSON record: artifact MB, load peak (the highest over its processes), each length's generation
    peak, and the ratio of the first length's process peak to the artifact."""
    out: dict = {"model": row.model, "tool": row.tool, "weights": row.weights, "class": CLASS[row.weights]}
    if row.error:
        return {**out, "error": row.error}
    out["artifact_mb"] = size_mb(row.artifact())
    out["runs"] = {str(n): row.runs[n] for n in lens}
    good = [r for r in row.runs.values() if "error" not in r]
    out["load_peak_mb"] = max((r["load_peak_mb"] for r in good), default=None)
    for n in lens:
        out[f"gen_peak_{n}_mb"] = row.runs[n].get("gen_peak_mb")
    first = row.runs[lens[0]]
    if "error" not in first and out["artifact_mb"]:
        out["peak_mb"] = max(first["load_peak_mb"], first["gen_peak_mb"])
        out["peak_over_weights"] = round(out["peak_mb"] / out["artifact_mb"], 2)
    errors = {str(n): r["error"] for n, r in row.runs.items() if "error" in r}
    if errors:
        out["errors"] = errors
    return out


def table(rows: list[dict], lens: list[int]) -> list[str]:
    heads = ["model", "tool", "engine/weights", "artifact MB", "load peak MB",
             *(f"gen peak @{n}" for n in lens), "peak / weights"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['tool']} | {r['weights']} | {r['error'][:100]} |"
                         + " |" * (len(heads) - 4))
            continue
        gens = [cell(r[f"gen_peak_{n}_mb"], ".0f") if r[f"gen_peak_{n}_mb"] is not None
                else f"failed: {r['errors'][str(n)][:60]}" for n in lens]
        lines.append(f"| {r['model']} | {r['tool']} | {r['weights']} | {cell(r['artifact_mb'], '.1f')} | "
                     f"{cell(r['load_peak_mb'], '.0f')} | {' | '.join(gens)} | "
                     f"{cell(r.get('peak_over_weights'), '.2f')} |")
    return lines


def _ok(rows: list[dict], key: str) -> list[dict]:
    return [r for r in rows if r.get(key) is not None]


def goals(rows: list[dict], lens: list[int]) -> list[str]:
    """The issue's goals, met / NOT met with the figures, per model; 'peak' is the first length's process peak."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r["tool"].startswith("edgeseq")]
        theirs = [r for r in rows if r["model"] == model and not r["tool"].startswith("edgeseq")]
        for r in _ok([r for r in mine if r["weights"] == "fp32"], "peak_over_weights"):
            ok = r["peak_over_weights"] <= 1.5
            out.append(f"- {'met' if ok else 'NOT met'}: {model} {r['tool']} fp32 peak <= 1.5x weights: "
                       f"{r['peak_mb']:.0f} MB / {r['artifact_mb']:.0f} MB = {r['peak_over_weights']:.2f}x")
        if model == "smollm2-135m-instruct":
            four = _ok([r for r in mine if r["class"] == "4-bit"], "peak_mb")
            if four:
                ok = any(r["artifact_mb"] <= 100 and r["peak_mb"] < 300 for r in four)
                out.append(f"- {'met' if ok else 'NOT met'}: SmolLM2 4-bit artifact <= ~100 MB and peak < 300 MB: "
                           + "; ".join(f"{r['tool']} {r['weights']} {r['artifact_mb']:.0f} MB / {r['peak_mb']:.0f} MB"
                                       for r in four))
            else:
                out.append("- not measured: SmolLM2 4-bit artifact and peak (no edgeseq 4-bit row ran)")
        for cls in ("fp32", "int8", "4-bit"):
            for key, what in (("artifact_mb", "artifact MB"), ("peak_mb", f"peak MB @{lens[0]}"),
                              *((f"gen_peak_{n}_mb", f"gen peak MB @{n}") for n in lens[1:])):
                m = _ok([r for r in mine if r["class"] == cls], key)
                t = _ok([r for r in theirs if r["class"] == cls], key)
                if not m or not t:
                    continue
                bm, bt = min(m, key=lambda r: r[key]), min(t, key=lambda r: r[key])
                ok = bm[key] <= bt[key]
                out.append(f"- {'met' if ok else 'NOT met'}: {model} {cls} {what}, smallest edgeseq <= smallest peer: "
                           f"{bm['tool']} {bm['weights']} {bm[key]:.0f} vs {bt['tool']} {bt['weights']} {bt[key]:.0f}")
    return out


def _mem_total_mb() -> float | None:
    """The host's memory (MemTotal), for the record beside the peaks."""
    try:
        with open("/proc/meminfo") as f:
            return round(int(next(x for x in f if x.startswith("MemTotal:")).split()[1]) / 1024)
    except (OSError, StopIteration):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm2-135m-instruct,preset:t5-small")
    p.add_argument("--lens", default="128,2048", help="prompt lengths, comma-separated (the first is the ratio's)")
    p.add_argument("--only", default=None, help="comma-separated texts: run only the rows whose 'tool weights' "
                   "contains one")
    p.add_argument("--work", default="/tmp/edgeseq-memory", help="where exports are made (reused when present)")
    p.add_argument("--ready", default=None, help="a folder of ready smollm2-135m-instruct exports named "
                   "FORMAT-WEIGHTS, used read-only where present (made by this edgeseq: an older export "
                   "measures the older format)")
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="directory made by benchmarks/setup_peers.sh")
    p.add_argument("--shared-peers", default=str(ROOT.parent / "shared" / "peers"), help="the peer scripts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE.parent / "results"))
    p.add_argument("--prepare", action="store_true", help="make the exports the rows need, measure nothing")
    p.add_argument("--md", default=None, help="also write the table and the goals to this Markdown file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    p.add_argument("--in-len", type=int, help=argparse.SUPPRESS)
    p.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    a.lens = [int(x) for x in a.lens.split(",")]
    from edgeseq.profile.result import RunHeader

    only = [s.strip() for s in a.only.split(",")] if a.only else None
    Path(a.work).mkdir(parents=True, exist_ok=True)
    protocol = {"lens": a.lens, "new_tokens": NEW_TOKENS, "batch": 1, "threads": a.threads, "greedy": True}
    header = RunHeader.here(protocol=protocol, command=" ".join(sys.argv))
    doc = {**header.to_dict(), "memory_total_mb": _mem_total_mb(), "command": " ".join(sys.argv),
           "complete": False, "prepare_s": {}, "rows": []}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    done: list[Row] = []
    for source in a.models.split(","):  # a model's exports, then its rows: the first model's figures come sooner
        rows = [r for r in rows_for(source, a) if not only or any(x in r.label for x in only)]
        for r in rows:
            if r.error is None:
                print(f"preparing {r.model}: {r.label}", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                try:
                    r.error = r.prepare()
                except Exception as e:  # one failed export costs its row, not the run
                    r.error = f"export failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                doc["prepare_s"][f"{r.model} {r.label}"] = round(time.perf_counter() - t0, 1)
        if a.prepare:
            print("\n".join(f"{r.model} {r.label}: {r.error or 'ready'}" for r in rows))
            continue
        for r in rows:
            for n in a.lens:
                if r.error is None:
                    print(f"measuring {r.model}: {r.label} @{n}", file=sys.stderr, flush=True)
                    r.runs[n] = run_row(r.cmd(n), a.threads)
            done.append(r)
            doc["rows"] = [summary(x, a.lens) for x in done]
            # after every row, so that a stopped run keeps the rows it measured
            (Path(a.out) / "memory.json").write_text(json.dumps(doc, indent=2))
    if a.prepare:
        return
    doc["complete"] = True
    (Path(a.out) / "memory.json").write_text(json.dumps(doc, indent=2))
    results = doc["rows"]
    text = [header.host_line(), "", *table(results, a.lens), "", "The issue's goals, this run:",
            *goals(results, a.lens)]
    print("\n".join(text))
    if a.md:
        Path(a.md).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
