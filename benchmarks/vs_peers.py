"""edgeseq against every installed peer tool, one protocol, one run: the performance issue's table.

Protocol (shared/peers'): batch 1, 128 prompt tokens, 64 forced new tokens, greedy, 2 threads,
1 warm-up + 5 runs, medians; every tool in its own process. Rows run round-robin in --rounds rounds
(default 3, each process 1 warm-up + ceil(5 / 3) = 2 timed runs, medians over all 6), so that a slow
spell of this shared machine lands on every row rather than on a few (in a one-pass run the first
rows were measurably slower than the same artifacts minutes later; docs/performance.md). Every
export a row needs is made (or reused from --work) before the first row is timed. Rows per model:

  smollm2-135m-instruct  edgeseq: onnxruntime fp32 / int4 / w4a8 / w8a8 / w8a8-token, openvino fp32 (f32 and bf16 compute) / int8 / int4,
                         tflite fp32 / int8; peers: transformers eager, optimum-onnx, optimum-intel f32,
                         onnxruntime-genai fp32 / int4, openvino-genai f32 / bf16 / int8, litert-torch fp32 / int8
  preset:t5-small        edgeseq: the same; peers: transformers eager, optimum-onnx, optimum-intel f32 / bf16 / int8

A peer whose venv is missing is listed as not installed. The copy bandwidth is measured before and
after the rows; a row's share of it is decode tok/s x bytes one decode step reads / bandwidth, where
the bytes are edgeseq's count for its rows (weights once + KV cache at the mean position) and, for a
peer, the size of the weight files its decode step runs plus the same fp32 KV cache. The read-only
stream (reads alone, no writes: what a decode step does) is measured too, and the fp32 ceiling goal is
also shown against it. The compute side: the fp32 GEMM peak (a 2048-square matrix product, the higher of
its rates before and after) and each model's FLOPs to the first token give a TTFT floor, and the fp32
TTFT goals show how close the best row is to it. Ratios are against edgeseq onnxruntime fp32 of the same
run; the issue's goals are checked at the end.

    benchmarks/setup_peers.sh /tmp/edgeseq-peers
    .venv/bin/python benchmarks/vs_peers.py
    .venv/bin/python benchmarks/vs_peers.py --reps 1 --warmup 0 --only "openvino-genai,tflite int8"  # smoke
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_litert import litert_export_hf  # noqa: E402
from vs_openvino import ensure_export, hf_dir, peer  # noqa: E402
from vs_transformers import _worker, protocol_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = ("edgeseq onnxruntime", "fp32", "float32")
# edgeseq's rows: format, weights, the engine's --precision, the compute it asks for
EDGESEQ = [("onnx", "fp32", "f32", "float32"), ("onnx", "int4", "f32", "float32"), ("onnx", "w4a8", "f32", "int8"),
           ("onnx", "w8a8", "f32", "int8"), ("onnx", "w8a8-token", "f32", "int8"),
           ("openvino", "fp32", "f32", "float32"), ("openvino", "int8", "f32", "float32"),
           ("openvino", "int4", "f32", "float32"),
           ("openvino", "fp32", "bf16", "bf16"), ("tflite", "fp32", "f32", "float32"),
           ("tflite", "int8", "f32", "int8")]  # tflite int8 = dynamic range: int8 activations too


@cache
def peer_hf_dir(source: str, out: Path) -> Path:
    """The model as a Hugging Face directory the peers' exporters read (made once, at `out`)."""
    d = hf_dir(source, out)
    # optimum-onnx's transformers 4.57 reads rope_theta at the top level, not 5.x's rope_parameters:
    # without it the export silently uses 10000 instead of SmolLM2's 100000
    cfg = json.loads((d / "config.json").read_text())
    if "rope_parameters" in cfg and "rope_theta" not in cfg:
        cfg["rope_theta"] = cfg["rope_parameters"]["rope_theta"]
        (d / "config.json").write_text(json.dumps(cfg, indent=2))
    return d


def _ready() -> str | None:
    return None


@dataclass
class Row:
    tool: str
    weights: str
    compute: str  # what the row asks for: float32 | bf16 | int8; int4 rows are probed after export
    run: Callable[[], dict]
    prepare: Callable[[], str | None] = _ready  # export; None when ready, else why not
    weight_bytes: Callable[[], int | None] = lambda: None  # bytes of weights a peer's decode step reads
    error: str | None = field(default=None)

    @property
    def label(self) -> str:
        return f"{self.tool} {self.weights} {self.compute}"


def _sha(ids: list[int]) -> str:  # the peers' gen_sha / prompt_sha (shared/peers/_common.py)
    return hashlib.sha1(json.dumps(list(map(int, ids))).encode()).hexdigest()[:10]


def _bytes(d: Path, *names: str) -> int | None:
    """Size of the first of `names` present in d, with its external-data files (ONNX)."""
    for n in names:
        files = [f for f in d.glob(n + "*") if f.suffix not in (".xml", ".json")] if (d / n).exists() else []
        if files:
            return sum(f.stat().st_size for f in files)
    return None


def _nbits_compute(d: Path) -> str:
    """What an int4 ONNX graph computes in: MatMulNBits accuracy_level 4 = int8 activations, else float32."""
    import onnx

    for path in sorted(d.glob("*.onnx")):
        for n in onnx.load(str(path), load_external_data=False).graph.node:
            if n.op_type == "MatMulNBits":
                return "int8" if next((x.i for x in n.attribute if x.name == "accuracy_level"), 0) == 4 else "float32"
    return "float32"


def _run_export(cmd: list[str], done: Path) -> str | None:
    """A peer's export, once (skipped when `done` exists); None when it worked, else why not."""
    if done.exists():
        return None
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = (r.stderr or r.stdout).strip().splitlines()
    return None if r.returncode == 0 else f"export failed: {lines[-1][:200] if lines else r.returncode}"


def rows_for(source: str, a: argparse.Namespace) -> list[Row]:
    """Every row of one model, exports not yet made (Row.prepare does that)."""
    work, peers, shared = Path(a.work), Path(a.peers), Path(a.shared_peers)
    name = source.split(":")[-1]
    t5 = source.startswith("preset:t5")
    task = "text2text-generation-with-past" if t5 else "text-generation-with-past"
    proto = ["--in-len", str(a.input_len), "--out-len", str(a.output_len), "--reps", str(a.reps),
             "--warmup", str(a.warmup), "--threads", str(a.threads), "--name", name]

    def hf() -> Path:
        return peer_hf_dir(source, work / f"{name}-hf")

    def tok() -> list[str]:
        return ["--tokenizer", str(hf() / "tokenizer.json")]

    def venv(v: str) -> Path | None:
        p = peers / v / "bin" / "python"
        return p if p.exists() else None

    rows: list[Row] = []

    def add(tool: str, weights: str, compute: str, venvs: list[str], prepare: Callable[[], str | None],
            cmd: Callable[[], list[str]], weight_bytes: Callable[[], int | None]) -> None:
        missing = [v for v in venvs if venv(v) is None]
        if missing:
            err = f"not installed ({', '.join(missing)}: run benchmarks/setup_peers.sh)"
            rows.append(Row(tool, weights, compute, lambda: {}, error=err))
        else:
            rows.append(Row(tool, weights, compute, lambda: peer(cmd(), a.peer_env), prepare, weight_bytes))

    for fmt, weights, precision, compute in EDGESEQ:
        art = work / f"{name}-{fmt}-{weights}"
        row = Row(f"edgeseq {'onnxruntime' if fmt == 'onnx' else fmt}", weights, compute,
                  lambda art=art, precision=precision: _worker("edgeseq", a, source, art, precision=precision))
        row.prepare = lambda art=art, fmt=fmt, weights=weights, row=row: _edgeseq_export(source, art, fmt, weights,
                                                                                          a.fresh, row)
        rows.append(row)
    base_art = _fp32_art(a.work, source)
    rows.append(Row("transformers eager", "fp32", "float32", lambda: _worker("hf", a, source, base_art, env=a.peer_env),
                    lambda: _edgeseq_export(source, base_art, "onnx", "fp32", a.fresh, None)))

    py = lambda v: str(venv(v))  # noqa: E731
    ort = work / f"optimum-onnx-{name}"
    add("optimum-onnx", "fp32", "float32", ["venv-optonnx"],
        lambda: _run_export([str(Path(py("venv-optonnx")).parent / "optimum-cli"), "export", "onnx", "--model",
                             str(hf()), "--task", task, str(ort)], ort / "config.json"),
        lambda: [py("venv-optonnx"), str(shared / "peer_optimum_ort.py"), "--model", str(ort), *tok(), *proto],
        lambda: _bytes(ort, *(["decoder_with_past_model.onnx", "decoder_model_merged.onnx", "decoder_model.onnx"]
                              if t5 else ["model.onnx"])))
    for weights in ("fp32", "int8"):
        ov = work / f"optimum-ov-{name}-{weights}"
        export = lambda ov=ov, weights=weights: _run_export(  # noqa: E731
            [str(Path(py("venv-optintel")).parent / "optimum-cli"), "export", "openvino", "--model", str(hf()),
             "--task", task, "--weight-format", weights, str(ov)], ov / "config.json")
        decoder = (["openvino_decoder_with_past_model.bin", "openvino_decoder_model.bin"] if t5
                   else ["openvino_model.bin"])
        ov_bytes = lambda ov=ov: _bytes(ov, *decoder)  # noqa: E731
        for precision, compute in (("f32", "float32"), ("default", "bf16")):
            if weights == "int8" and precision == "default":
                continue
            args = lambda ov=ov, precision=precision: [  # noqa: E731
                "--model", str(ov), *tok(), "--precision", precision, *proto]
            if t5 or (weights, precision) == ("fp32", "f32"):
                add("optimum-intel", weights, compute, ["venv-optintel"], export,
                    lambda args=args: [py("venv-optintel"), str(shared / "peer_optimum_ov.py"), *args()], ov_bytes)
            if not t5:
                add("openvino-genai", weights, compute, ["venv-ovgenai", "venv-optintel"], export,
                    lambda args=args: [py("venv-ovgenai"), str(shared / "peer_ovgenai.py"), *args()], ov_bytes)
    if t5:  # onnxruntime-genai and litert-torch export decoder-only models only
        return rows
    for weights in ("fp32", "int4"):
        og = work / f"ortgenai-{name}-{weights}"
        add("onnxruntime-genai", weights, "float32", ["venv-ortgenai"],
            lambda og=og, weights=weights: _run_export(
                [py("venv-ortgenai"), "-m", "onnxruntime_genai.models.builder", "-i", str(hf()), "-o", str(og),
                 "-p", weights, "-e", "cpu", "-c", str(work / "ortgenai-cache")], og / "genai_config.json"),
            lambda og=og: [py("venv-ortgenai"), str(shared / "peer_ortgenai.py"), "--model", str(og), *tok(), *proto],
            lambda og=og: _bytes(og, "model.onnx"))
        if weights == "int4" and rows[-1].error is None:  # what its MatMulNBits compute in shows after export
            row, export = rows[-1], rows[-1].prepare
            row.prepare = lambda row=row, export=export, og=og: export() or _probe(row, og)
    lt = work / f"litert-export-hf-{name}"
    for weights, file in (("fp32", "model.tflite"), ("int8", "model_quantized.tflite")):
        add("litert-torch export_hf", weights, "float32" if weights == "fp32" else "int8", ["venv-litert"],
            lambda: litert_export_hf(Path(py("venv-litert")), hf(), lt, a.input_len, a.output_len),
            lambda file=file: [py("venv-litert"), str(shared / "peer_litert.py"), "--model", str(lt), "--file", file,
                               *tok(), "--hf-config", str(hf() / "generation_config.json"), *proto],
            lambda file=file: _bytes(lt, file))
    return rows


_EXPORTED: set[Path] = set()  # --fresh re-exports each artifact once, not once per row that uses it


def _probe(row: Row, d: Path) -> None:
    row.compute = _nbits_compute(d)


def _edgeseq_export(source: str, art: Path, fmt: str, weights: str, fresh: bool, row: Row | None) -> str | None:
    try:
        ensure_export(source, art, fmt, weights, fresh=fresh and art not in _EXPORTED)
        _EXPORTED.add(art)
    except Exception as e:  # one failed export costs its row, not the run
        return f"export failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    if row is not None and weights == "int4" and fmt == "onnx":
        _probe(row, art)
    return None


TIMES = ("ttft_ms", "tpot_ms", "decode_tok_s", "e2e_ms")


def merge_rounds(rounds: list[dict]) -> dict:
    """One row's result from its rounds: the first good round's fields, the timings' medians over every
    good round's samples (raw samples kept), and what failed or disagreed."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return rounds[0]
    out = dict(good[0])
    keys = [k for k in good[0].get("samples", {}) if all(k in r.get("samples", {}) for r in good)]
    out["samples"] = {k: [x for r in good for x in r["samples"][k]] for k in keys}
    out.update({k: statistics.median(out["samples"][k]) for k in TIMES if out["samples"].get(k)})
    out["rounds"] = len(good)
    if len(good) < len(rounds):
        out["failed_rounds"] = [r["error"] for r in rounds if "error" in r]
    shas = {r.get("gen_sha") or _sha(r.get("gen_ids", [])) for r in good}
    if len(shas) > 1:
        out["note"] = f"greedy output differed between rounds ({len(shas)} distinct)"
    return out


def _class(r: dict) -> str:
    """Comparable-precision class of a row: fp32, int8/bf16 or int4."""
    if r["weights"] in ("int4", "w4a8"):
        return "int4"
    return "fp32" if r["weights"] == "fp32" and r["compute"] == "float32" else "int8/bf16"


def _ok(results: list[dict]) -> list[dict]:
    return [r for r in results if "error" not in r]


def _f(x: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, fmt) + suffix


def report(model: str, random: bool, results: list[dict], bw: float, floor: dict | None = None) -> list[str]:
    """One model's Markdown table, its ceilings (`floor`: `_ttft_floor`'s), the comparable-precision summary
    and the greedy outputs."""
    base = next((r for r in _ok(results) if (r["tool"], r["weights"], r["compute"]) == BASE), None)
    lines = [f"\n**{model}**" + (" (random weights)" if random else ""), "",
             "| tool | weights | compute | TTFT ms | decode tok/s | MB read / token | share of ceiling | "
             "TTFT vs edgeseq ORT fp32 | tok/s vs edgeseq ORT fp32 | greedy sha |", "|---" * 10 + "|"]
    for r in results:
        compute = _compute_cell(r)
        if "error" in r:
            lines.append(f"| {r['tool']} | {r['weights']} | {r['compute']} | {r['error'][:120]} |" + " |" * 6)
            continue
        mb = r.get("bytes_per_token")
        share = mb * r["decode_tok_s"] / 1e9 / bw if mb else None
        lines.append(f"| {r['tool']} | {r['weights']} | {compute} | {r['ttft_ms']:.1f} | {r['decode_tok_s']:.1f} | "
                     f"{_f(mb and mb / 1e6, '.0f')} | {_f(share and 100 * share, '.0f', '%')} | "
                     f"{_f(base and r['ttft_ms'] / base['ttft_ms'], '.2f', 'x')} | "
                     f"{_f(base and r['decode_tok_s'] / base['decode_tok_s'], '.2f', 'x')} | {r.get('gen_sha', '-')} |")
    lines.append("\nMB read / token: edgeseq's count for its rows; for a peer, its decode weight files (an untied "
                 "embedding copy included) + the same fp32 KV cache. bf16 rows count the fp32 weights as stored: "
                 "OpenVINO may hold them as bf16, so their share can be up to 2x too high.")
    for cls in ("fp32", "int8/bf16", "int4"):
        mine = [r for r in _ok(results) if _class(r) == cls and r["tool"].startswith("edgeseq")]
        theirs = [r for r in _ok(results) if _class(r) == cls and not r["tool"].startswith("edgeseq")]
        bpt = [r["bytes_per_token"] for r in mine if r.get("bytes_per_token")]
        if bpt:
            lines.append(f"- {cls} ceiling: {bw:.1f} GB/s / {min(bpt) / 1e6:.0f} MB per step = "
                         f"{bw * 1e9 / min(bpt):.1f} tok/s")
        if cls == "fp32" and floor:
            lines.append(f"- fp32 TTFT floor: {floor['gflop']:.1f} GFLOP to the first token / {floor['peak']:.0f} "
                         f"GFLOP/s GEMM peak = {floor['ms']:.1f} ms")
        if mine and theirs:
            for key, best, unit in (("decode_tok_s", max, "tok/s"), ("ttft_ms", min, "ms TTFT")):
                m, t = best(mine, key=lambda r: r[key]), best(theirs, key=lambda r: r[key])
                lines.append(f"- {cls}, best edgeseq vs best peer: {_name(m)} {m[key]:.1f} vs {_name(t)} "
                             f"{t[key]:.1f} {unit} ({m[key] / t[key]:.2f}x)")
    groups: dict[str, dict[str, list[str]]] = {}
    for r in _ok(results):
        groups.setdefault(r.get("prompt_sha", "?"), {}).setdefault(r.get("gen_sha", "?"), []).append(_name(r))
    for prompt, gens in groups.items():
        lines.append(f"- greedy outputs for prompt {prompt}: "
                     + "; ".join(f"{g}: {', '.join(n)}" for g, n in gens.items()))
    return lines


def _compute_cell(r: dict) -> str:
    """What the tool reports it computes in, shortened; int4 rows: what their MatMulNBits were probed to use."""
    def short(text: str) -> str:
        for long, to in ((r"\b(float32|fp32)\b", "f32"), (r"\bbfloat16\b", "bf16"), (r"\bfloat16\b", "f16"),
                         (r"\buint8_t\b", "u8")):
            text = re.sub(long, to, text)
        return text

    asked = short(r["compute"])
    if r.get("activations"):  # OpenVINO's CPU plugin quantizes the activations of compressed-weight layers
        return f"{asked}, int8 activations"
    if r["weights"] == "int4" or not r.get("precision"):
        return asked
    said = short(r["precision"].split(" (")[0])
    return said if said.startswith(asked) else f"{asked} ({said} reported)"


def _name(r: dict) -> str:
    return f"{r['tool']} {r['weights']}" + ("" if r["compute"] == "float32" else f" ({r['compute']})")


def goals(model: str, results: list[dict], bw: float, read_bw: float | None = None,
          floor: dict | None = None) -> list[str]:
    """The issue's goals for this model: each met / NOT met with the figures, or why it was not measured
    (`read_bw`: the read-only stream's GB/s, for a second view of the ceiling goal; `floor`: the TTFT
    floor from the GEMM peak, `_ttft_floor`'s, shown beside the TTFT goal)."""
    fp32 = [r for r in _ok(results) if _class(r) == "fp32"]
    mine = [r for r in fp32 if r["tool"].startswith("edgeseq")]

    def peer_row(tool: str) -> dict | None:
        return next((r for r in fp32 if r["tool"] == tool), None)

    def check(tool: str, key: str, text: str, test: Callable[[float, float], bool], factor: float = 1.0) -> str:
        p = peer_row(tool)
        if not mine or p is None:
            return f"- not measured: {text} (no {'edgeseq fp32' if not mine else tool + ' fp32'} row ran)"
        m = (max if key == "decode_tok_s" else min)(mine, key=lambda r: r[key])
        ok = test(m[key], factor * p[key])
        return (f"- {'met' if ok else 'NOT met'}: {text}: {_name(m)} {m[key]:.1f} vs {tool} {p[key]:.1f} "
                f"({m[key] / p[key]:.2f}x)")

    def compute_floor() -> list[str]:  # not a goal of the issue: how near the fastest fp32 prefill is to the GEMM peak
        if not mine or not floor:
            return []
        m = min(mine, key=lambda r: r["ttft_ms"])
        return [f"- for comparison, the compute floor: {_name(m)} TTFT {m['ttft_ms']:.1f} ms = "
                f"{floor['gflop'] / m['ttft_ms'] * 1e3:.0f} GFLOP/s, {100 * floor['ms'] / m['ttft_ms']:.0f}% of the "
                f"{floor['peak']:.0f} GFLOP/s GEMM peak (floor {floor['ms']:.1f} ms)"]

    if model.startswith("preset:t5"):
        return [check("optimum-onnx", "decode_tok_s", "T5 fp32 decode >= 1.2x optimum-onnx (tok/s)",
                      lambda m, p: m >= p, 1.2),
                check("optimum-intel", "ttft_ms", "T5 fp32 TTFT below optimum-intel f32 (ms)", lambda m, p: m < p),
                *compute_floor()]
    out = [check("onnxruntime-genai", "decode_tok_s", "SmolLM2 fp32 decode above onnxruntime-genai fp32 (tok/s)",
                 lambda m, p: m > p),
           check("openvino-genai", "ttft_ms", "SmolLM2 fp32 TTFT below openvino-genai f32 (ms)", lambda m, p: m < p),
           *compute_floor()]
    shares = [(r["bytes_per_token"] * r["decode_tok_s"] / 1e9 / bw, r) for r in mine if r.get("bytes_per_token")]
    if shares:
        s, r = max(shares, key=lambda x: x[0])
        out.append(f"- {'met' if s >= 0.8 else 'NOT met'}: SmolLM2 fp32 decode >= 80% of the bandwidth ceiling: "
                   f"{_name(r)} {100 * s:.0f}% ({r['decode_tok_s']:.1f} tok/s x {r['bytes_per_token'] / 1e6:.0f} MB "
                   f"/ {bw:.1f} GB/s)")
        if read_bw:  # not the issue's definition: what reads alone stream here
            out.append(f"- for comparison, the read-only ceiling: {_name(r)} {100 * s * bw / read_bw:.0f}% "
                       f"(the same bytes / {read_bw:.1f} GB/s read-only stream)")
    else:
        out.append("- not measured: SmolLM2 fp32 share of the bandwidth ceiling (no edgeseq fp32 row ran)")
    return out


def _fp32_art(work: str, source: str) -> Path:
    """The base row's artifact (edgeseq onnxruntime fp32) of `source` under --work."""
    return Path(work) / f"{source.split(':')[-1]}-onnx-fp32"


def _prompt_sha(art: Path, in_len: int) -> str | None:
    """The edgeseq workers' prompt (edgeseq's passage), hashed like the peers' prompt_sha."""
    from tokenizers import Tokenizer

    from edgeseq.artifact.manifest import read
    from edgeseq.profile.prompts import prompt_ids

    try:
        m = read(art)
        return _sha(prompt_ids(Tokenizer.from_file(str(art / "tokenizer.json")), in_len, m.dims["vocab_size"]))
    except Exception:  # the artifact failed to export: its row says so
        return None


def _ttft_floor(art: Path, in_len: int, out_len: int, peak: float) -> dict | None:
    """The fp32 artifact's FLOPs to the first token (profile.cost) and the TTFT they take at `peak` GFLOP/s."""
    from edgeseq.artifact.manifest import read
    from edgeseq.profile.cost import flops

    try:
        f = flops(read(art), in_len, out_len)
    except Exception:  # the artifact failed to export: its row says so
        return None
    if f is None:
        return None
    return {"gflop": f["first_token"] / 1e9, "peak": peak, "ms": f["first_token"] / 1e9 / peak * 1e3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="directory made by benchmarks/setup_peers.sh")
    p.add_argument("--shared-peers", default=str(ROOT.parent / "shared" / "peers"), help="the peer scripts")
    p.add_argument("--models", default="smollm2-135m-instruct,preset:t5-small")
    p.add_argument("--fresh", action="store_true", help="re-export edgeseq's artifacts (after changing an exporter)")
    p.add_argument("--only", default=None, help="comma-separated texts: time only the rows whose 'tool weights "
                   "compute' contains one (edgeseq onnxruntime fp32, the ratios' base, always runs)")
    p.add_argument("--rounds", type=int, default=3, help="processes per row, run round-robin over all rows; each "
                   "does --warmup untimed runs and ceil(reps / rounds) timed ones; medians over all of them")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for the peers' processes only (repeatable), e.g. "
                   "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 to give them the huge pages edgeseq asks for itself")
    protocol_args(p)
    a = p.parse_args()
    if a.rounds < 1 or a.reps < 1:
        p.error("--rounds and --reps must be at least 1")
    if any("=" not in e for e in a.peer_env):
        p.error("--peer-env takes KEY=VALUE")
    a.peer_env = dict(e.split("=", 1) for e in a.peer_env)
    from edgeseq.profile.bandwidth import copy_gb_s, read_gb_s
    from edgeseq.profile.gemm_peak import gemm_gflops
    from edgeseq.profile.result import RunHeader

    only = [s.strip() for s in a.only.split(",")] if a.only else None
    asked, per_round = a.reps, -(-a.reps // a.rounds)
    a.reps = per_round  # what each row's process is told; rows_for reads it
    plan = []
    for source in a.models.split(","):
        rows = [r for r in rows_for(source, a) if not only or any(s in r.label for s in only)
                or (r.tool, r.weights, r.compute) == BASE]
        for r in rows:  # every export before any timing
            if r.error is None:
                print(f"preparing {source}: {r.label}", file=sys.stderr, flush=True)
                r.error = r.prepare()
        plan.append((source, rows))
    bw_start, read_start = copy_gb_s(threads=a.threads), read_gb_s(threads=a.threads)
    gemm_start = gemm_gflops(threads=a.threads)
    protocol = {k: getattr(a, k) for k in ("input_len", "output_len", "reps", "warmup", "threads", "rounds", "peer_env")}
    doc: dict = {**RunHeader.here(protocol=protocol).to_dict(),
                 "bandwidth_gb_s": {"start": round(bw_start, 1)}, "read_gb_s": {"start": round(read_start, 1)},
                 "gemm_gflops": {"start": round(gemm_start, 1)}, "results": []}
    doc["protocol"].update(reps=asked, reps_per_round=per_round)
    runs: dict[tuple[int, int], list[dict]] = {}
    for rnd in range(a.rounds):  # round-robin: a drift in the machine's speed touches every row alike
        for m, (source, rows) in enumerate(plan):
            for k, r in enumerate(rows):
                print(f"timing {source}: {r.label} (round {rnd + 1}/{a.rounds})", file=sys.stderr, flush=True)
                runs.setdefault((m, k), []).append({"error": r.error} if r.error else r.run())
    for m, (source, rows) in enumerate(plan):
        results = []
        for k, r in enumerate(rows):
            res = merge_rounds(runs[(m, k)])
            if "gen_ids" in res:  # edgeseq and transformers: hash like the peers do
                res["gen_sha"] = _sha(res["gen_ids"])
                res["prompt_sha"] = _prompt_sha(_fp32_art(a.work, source), a.input_len)
            if "napkin" in res:
                res["bytes_per_token"] = res["napkin"]["bytes_per_token"]
            results.append({**res, "tool": r.tool, "weights": r.weights, "compute": r.compute})
        base = next((x for x in results if (x["tool"], x["weights"], x["compute"]) == BASE and "napkin" in x), None)
        for r, res in zip(rows, results):  # peers: their weight files + edgeseq's fp32 KV cache
            if "error" in res or "napkin" in res or base is None:
                continue
            wb = base["napkin"]["weight_bytes_per_token"] if r.tool == "transformers eager" else r.weight_bytes()
            if wb:
                res["bytes_per_token"] = wb + base["napkin"]["kv_bytes_per_token"]
        doc["results"].append({"model": source, "random_weights": source.startswith("preset:"), "rows": results})
    bw_end, read_end = copy_gb_s(threads=a.threads), read_gb_s(threads=a.threads)
    gemm_end = gemm_gflops(threads=a.threads)
    bw, read_bw = (bw_start + bw_end) / 2, (read_start + read_end) / 2
    peak = max(gemm_start, gemm_end)  # the floor from the faster spell: a slow one would flatter every row
    doc["bandwidth_gb_s"]["end"], doc["read_gb_s"]["end"] = round(bw_end, 1), round(read_end, 1)
    doc["gemm_gflops"]["end"] = round(gemm_end, 1)
    for m in doc["results"]:
        m["ttft_floor"] = _ttft_floor(_fp32_art(a.work, m["model"]), a.input_len, a.output_len, peak)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "vs_peers.json").write_text(json.dumps(doc, indent=2))
    header = RunHeader.from_dict({**doc, "bandwidth_gb_s": round(bw, 1)})
    print(f"{header.host_line()} (the mean of {bw_start:.1f} before and {bw_end:.1f} after, which the ceilings "
          f"use); medians of {a.rounds} rounds x {per_round} runs "
          f"per row, each process after {a.warmup} warm-up; read-only stream {read_start:.1f} / {read_end:.1f} GB/s; "
          f"fp32 GEMM peak {gemm_start:.1f} / {gemm_end:.1f} GFLOP/s (the floors use the higher)")
    for m in doc["results"]:
        print("\n".join(report(m["model"], m["random_weights"], m["rows"], bw, m["ttft_floor"])))
    print("\nThe issue's goals, this run:")
    for m in doc["results"]:
        print("\n".join(goals(m["model"], m["rows"], bw, read_bw, m["ttft_floor"])))


if __name__ == "__main__":
    main()
