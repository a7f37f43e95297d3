"""edgeseq's TFLite path against its ONNX Runtime and OpenVINO paths and litert-torch's own export, in one run.

Protocol as benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens,
greedy, 2 threads, 1 warm-up + 5 runs, medians; every tool in its own process, one after the
other), float32 compute unless the weights say otherwise:
  smollm2-135m-instruct: edgeseq ORT fp32, edgeseq OpenVINO fp32 / int8, edgeseq TFLite fp32 / int8
      (dynamic range) / int8-wo, and litert-torch's `export_hf` model (fp32 `model.tflite`, int8
      `model_quantized.tflite`, its default recipe dynamic_wi8_afp32) run by the shared peer script
      peer_litert.py on the same ai-edge-litert Interpreter (same weights: the GGUF de-quantized);
  preset:t5-small: the same edgeseq rows (no other tool exports an encoder-decoder with a KV cache
      to TFLite, so there is no peer row).
litert-torch's export_hf imports tensorflow, which edgeseq does not need, so the peer's export and
run use their own venv (made by benchmarks/setup_peers.sh):

    benchmarks/setup_peers.sh /tmp/edgeseq-peers
    .venv/bin/python benchmarks/vs_litert.py --peers /tmp/edgeseq-peers
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_openvino import ensure_export, hf_dir, peer  # noqa: E402
from vs_transformers import _worker, print_tools, protocol_args, save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EDGESEQ = [("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "int8"), ("tflite", "fp32"), ("tflite", "int8"),
           ("tflite", "int8-wo")]


def litert_export_hf(python: Path, hf: Path, out: Path, in_len: int, out_len: int) -> str | None:
    """litert-torch's own export of the HF directory (fp32 model.tflite, int8 model_quantized.tflite);
    None when it worked, else the reason."""
    if (out / "model.tflite").exists():
        return None
    r = subprocess.run([str(python), "-m", "litert_torch.generative.export_hf", f"--model={hf}", f"--output_dir={out}",
                        f"--prefill_lengths=[{in_len}]", f"--cache_length={in_len + out_len * 2}",
                        "--keep_temporary_files=True"], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    return None if r.returncode == 0 else f"export_hf failed: {lines[-1] if lines else r.returncode}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="directory made by benchmarks/setup_peers.sh")
    p.add_argument("--shared-peers", default=str(ROOT.parent / "shared" / "peers"), help="the peer scripts")
    p.add_argument("--models", default="smollm2-135m-instruct,preset:t5-small")
    protocol_args(p)
    a = p.parse_args()
    work = Path(a.work)
    rows = []
    for source in a.models.split(","):
        name = source.split(":")[-1]
        tools = {}
        for fmt, weights in EDGESEQ:
            art = ensure_export(source, work / f"{name}-{fmt}-{weights}", fmt, weights)
            tools[f"edgeseq {'onnxruntime' if fmt == 'onnx' else fmt} {weights}"] = _worker("edgeseq", a, source, art)
        if not source.startswith("preset:t5"):
            hf = hf_dir(source, work / f"{name}-hf")
            python = Path(a.peers) / "venv-litert" / "bin" / "python"
            lt = work / f"litert-export-hf-{name}"
            failed = litert_export_hf(python, hf, lt, a.input_len, a.output_len)
            for weights, file in (("fp32", "model.tflite"), ("int8", "model_quantized.tflite")):
                tools[f"litert-torch export_hf {weights}"] = {"error": failed} if failed else peer([
                    str(python), str(Path(a.shared_peers) / "peer_litert.py"), "--model", str(lt), "--file", file,
                    "--tokenizer", str(hf / "tokenizer.json"), "--hf-config", str(hf / "generation_config.json"),
                    "--name", name, "--in-len", str(a.input_len), "--out-len", str(a.output_len), "--reps",
                    str(a.reps), "--warmup", str(a.warmup), "--threads", str(a.threads)])
        rows.append({"model": name, "random_weights": source.startswith("preset:"), "tools": tools})
    save_report(a, rows, "vs_litert.json")
    print_tools(rows, middle=[("peak RSS MB", lambda r: "-" if r.get("peak_rss_mb") is None
                               else f"{r['peak_rss_mb']:.0f}")])

if __name__ == "__main__":
    main()
