"""edgeseq's OpenVINO path against its ONNX Runtime path and the OpenVINO peers, in one run.

Protocol as benchmarks/vs_transformers.py (batch 1, 128 prompt tokens, 64 forced new tokens,
greedy, 2 threads, 1 warm-up + 5 runs, medians; every tool in its own process, one after the
other), all at f32 compute:
  smollm2-135m-instruct: edgeseq ORT fp32, edgeseq OpenVINO fp32 / int8, openvino-genai LLMPipeline
      on optimum-intel's fp32 / int8 IR (the same weights: the GGUF de-quantized to float32);
  preset:t5-small: edgeseq ORT fp32, edgeseq OpenVINO fp32 / int8, optimum-intel
      OVModelForSeq2SeqLM fp32 / int8 (the same random weights, seed 0).
The peers run the shared peer scripts (../shared/peers) from their own venvs:

    benchmarks/setup_peers.sh /tmp/edgeseq-peers
    .venv/bin/python benchmarks/vs_openvino.py --peers /tmp/edgeseq-peers
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import _worker, print_tools, protocol_args, save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def hf_dir(source: str, out: Path) -> Path:
    """The model as a Hugging Face directory, for optimum-cli (same weights edgeseq exports)."""
    if (out / "config.json").exists():
        return out
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, PreTrainedTokenizerFast

    from edgeseq.models import resolve

    spec = resolve(source, seed=0)
    # a GGUF-loaded model refuses save_pretrained: copy its (float32) weights into a plain one
    config = spec.model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    cls = AutoModelForSeq2SeqLM if spec.kind == "encoder-decoder" else AutoModelForCausalLM
    plain = cls.from_config(config)
    plain.load_state_dict(spec.model.state_dict())
    plain.generation_config = spec.model.generation_config
    plain.save_pretrained(out)
    g = spec.generation
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(spec.tokenizer_json))
    vocab = {i: t for t, i in tok.get_vocab().items()}
    tok.eos_token = vocab.get(g.eos_token_ids[0]) if g.eos_token_ids else None
    tok.pad_token = vocab.get(g.pad_token_id)
    if g.bos_token_id is not None:
        tok.bos_token = vocab.get(g.bos_token_id)
    tok.chat_template = g.chat_template
    tok.save_pretrained(out)
    return out


def ensure_export(source: str, out: Path, fmt: str, weights: str, fresh: bool = False,
                  ort_kernels: bool = True) -> Path:
    """edgeseq's export of source at out, reused when its manifest names the installed edgeseq and
    exporter versions; made anew when it is missing, older or `fresh`. `ort_kernels=False`: plain attention."""
    from edgeseq.errors import EdgeseqError
    from edgeseq.export.pipeline import export
    from edgeseq.artifact.manifest import read

    try:
        changed = _changed_tools(read(out).tools)
    except EdgeseqError:
        changed = ["no artifact"]
    if fresh or changed:
        if changed and changed != ["no artifact"]:
            print(f"re-exporting {out} ({', '.join(changed)})", file=sys.stderr)
        export(source, out, format=fmt, weights=weights, overwrite=True, ort_kernels=ort_kernels)
    return out


def _changed_tools(tools: dict[str, str]) -> list[str]:
    """'name old -> new' for each tool in a manifest whose installed version differs (absent ones are skipped)."""
    from importlib.metadata import PackageNotFoundError, version

    import edgeseq

    out = []
    for name, then in tools.items():
        try:
            now = edgeseq.__version__ if name == "edgeseq" else version(name)
        except PackageNotFoundError:
            continue
        if now != then:
            out.append(f"{name} {then} -> {now}")
    return out


def peer(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a peer's script; its last stdout line is its JSON result. `env`: variables added for it."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env) if env else None)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", default="/tmp/edgeseq-peers", help="directory made by benchmarks/setup_peers.sh")
    p.add_argument("--shared-peers", default=str(ROOT.parent / "shared" / "peers"), help="the peer scripts")
    protocol_args(p)
    a = p.parse_args()
    peers, work = Path(a.peers), Path(a.work)
    common = ["--in-len", str(a.input_len), "--out-len", str(a.output_len), "--reps", str(a.reps),
              "--warmup", str(a.warmup), "--threads", str(a.threads), "--precision", "f32"]
    rows = []
    for source, name, peer_script, peer_venv in (
            ("smollm2-135m-instruct", "smollm2-135m-instruct", "peer_ovgenai.py", "venv-ovgenai"),
            ("preset:t5-small", "t5-small", "peer_optimum_ov.py", "venv-optintel")):
        hf = hf_dir(source, work / f"{name}-hf")
        for weights in ("fp32", "int8"):
            ov_dir = work / f"optimum-ov-{name}-{weights}"
            if not (ov_dir / "openvino_model.xml").exists() and not (ov_dir / "openvino_encoder_model.xml").exists():
                task = "text-generation-with-past" if "t5" not in name else "text2text-generation-with-past"
                subprocess.run([str(peers / "venv-optintel" / "bin" / "optimum-cli"), "export", "openvino",
                                "--model", str(hf), "--task", task, "--weight-format", weights, str(ov_dir)], check=True,
                               capture_output=True)
        tools = [("edgeseq onnxruntime fp32", _worker("edgeseq", a, source, ensure_export(
                     source, work / f"{name}-onnx", "onnx", "fp32")))]
        for weights in ("fp32", "int8"):
            art = ensure_export(source, work / f"{name}-openvino-{weights}", "openvino", weights)
            tools.append((f"edgeseq openvino {weights}", _worker("edgeseq", a, source, art)))
        for weights in ("fp32", "int8"):
            res = peer([str(peers / peer_venv / "bin" / "python"), str(Path(a.shared_peers) / peer_script),
                        "--model", str(work / f"optimum-ov-{name}-{weights}"), "--tokenizer", str(hf / "tokenizer.json"),
                        "--name", name, *common])
            tool = "openvino-genai LLMPipeline" if "genai" in peer_script else "optimum-intel OVModelForSeq2SeqLM"
            tools.append((f"{tool} {weights}", res))
        rows.append({"model": name, "random_weights": source.startswith("preset:"), "tools": dict(tools)})
    save_report(a, rows, "vs_openvino.json")
    # parity: "-" for the peers, which have no parity check
    print_tools(rows, last=[("parity max diff", lambda r: "-" if r.get("max_abs_diff") is None
                             else f"{r['max_abs_diff']:.2g}")])

if __name__ == "__main__":
    main()
