"""export(): model source -> step modules -> graphs -> parity -> artifact directory, atomically.

Everything is written into a hidden temporary directory next to the target and renamed into place
only after the manifest (written last) is complete, so an interrupted export leaves nothing that
loads. A failed parity check raises ParityError unless keep_failed=True, which keeps the artifact
with `parity.status = "failed"` in its manifest.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..artifact import manifest as mf
from ..console import console, muffled
from ..errors import ParityError, UsageError
from . import formats, place

def _say(msg: str, quiet: bool) -> None:
    console.say(msg, show=not quiet)  # in the command's log either way


def export(source: str, out: str | Path, format: str = "onnx", overwrite: bool = False, parity_steps: int = 32,
           keep_failed: bool = False, seed: int = 0, quiet: bool = False, weights: str = "fp32",
           shape: Any = None, target: str = "cpu", ort_kernels: bool = True,
           native: tuple[str, ...] = (), quality_tokens: int = 256) -> mf.Manifest:
    """`shape` (steps.static.StaticShape) sets the prompt / output limits and buckets of a static
    format (tflite) or target (npu); None takes its defaults. `target="npu"`: static graphs an NPU
    compiles (ONNX for Qualcomm HTP), with the NPU's weight formats. `ort_kernels=False` (onnx):
    plain attention instead of ONNX Runtime's fused kernel, a graph other ONNX readers run. `native`:
    runtimes (export/native/) whose files are written into the artifact too, each checked there.
    `quality_tokens`: a quantized artifact is scored against the PyTorch model on this many tokens of the
    built-in texts (quality/), recorded in the manifest; 0 skips it."""
    fmt = formats.spec(format)
    if target not in mf.TARGETS:
        raise UsageError(f"unknown --target '{target}'", f"targets: {', '.join(mf.TARGETS)}")
    static = fmt.static or target == "npu"
    if target == "npu":
        npu = [n for n, f in formats.formats().items() if f.npu_exporter]
        if not fmt.npu_exporter:
            raise UsageError(f"--target npu is not available for --format {format}",
                             f"--target npu formats: {', '.join(npu)}")
        if weights not in fmt.npu_weights:
            raise UsageError(f"--weights {weights} is not available for --format {format} --target npu",
                             f"npu weights: {', '.join(fmt.npu_weights)}")
    elif weights not in fmt.weights:
        raise UsageError(f"--weights {weights} is not available for --format {format}",
                         f"{format} weights: {', '.join(fmt.weights)}"
                         + ("; fp16 and weight-only int8: --format openvino" if format == "onnx" else ""))
    if not ort_kernels and "ort_kernels" not in fmt.options:
        raise UsageError(f"--no-ort-kernels applies to --format onnx, not {format}",
                         f"drop it: {format} graphs never use ONNX Runtime's own kernels")
    if quality_tokens < 0:
        raise UsageError(f"--quality-tokens must be >= 0, got {quality_tokens}",
                         "pass 256 (the default); 0 skips the quality figures")
    if parity_steps < 0:
        raise UsageError(f"--parity-steps must be >= 0, got {parity_steps}",
                         "pass 32 (the default); 0 skips the check and the manifest records it as skipped")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"output directory {out} already exists", "pass --overwrite or choose another --out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory", "choose another --out")
    if shape is not None and not static:
        statics = [n for n, f in formats.formats().items() if f.static]
        raise UsageError(f"--max-input, --max-output, --prefill-buckets and --no-ring-cache apply to static-shape "
                         f"formats, not {format}",
                         f"drop them, or export with --format {' / '.join(statics)} or --target npu")
    exporter = formats.exporter(format, target)  # checks the packages exporting needs (names the pip extra)
    if native:
        from . import native as native_files

        native_files.validate(list(native), format, target=target)
    getattr(exporter, "check_weights", lambda w: None)(weights)
    if static and shape is None:
        from ..steps.static import StaticShape

        shape = StaticShape()
    options = {"ort_kernels": ort_kernels} if target != "npu" and "ort_kernels" in fmt.options else {}

    from ..models import resolve

    with place.claimed(out, overwrite) as tmp:  # --out writable and ours before the model loads
        _say(f"[1/4] loading {source}", quiet)
        with muffled(f"loading {source}"):  # torch / transformers import and weight-loading lines
            spec = resolve(source, seed=seed)
        if native:
            native_files.validate(list(native), format, spec.kind, target, bool(spec.audio))
        m = _write(spec, tmp, format, parity_steps, quiet, weights, shape, target, seed, options, native,
                   quality_tokens)
        if m.parity["status"] == "failed" and not keep_failed:
            p, enc = m.parity, m.parity.get("encoder") or {}
            what = f"max |logits diff| {p['max_abs_diff']:.3g} vs tolerance {p['tolerance']:.3g}; token mismatches " \
                f"at steps {p['token_mismatch_steps']}"
            if enc.get("status") == "failed":  # a speech encoder judged on its own output
                what = f"the encoder's output differs by {enc['max_abs_diff']:.3g} (tolerance {enc['tolerance']:.3g}); {what}"
            raise ParityError(f"parity check failed: {what}",
                              "report this with the model config; --keep-failed keeps the artifact marked failed")
        failed = [n for n, r in m.native.items() if r["check"]["status"] == "failed"]
        if failed and not keep_failed:
            r = m.native[failed[0]]["check"]
            raise ParityError(f"{failed[0]} generates other tokens than {r['against']} from this artifact: first "
                              f"difference at step {r['first_mismatch']} of {r['steps']}",
                              "report this with the model config; --keep-failed keeps the artifact marked failed")
        place.commit(tmp, out, overwrite)
    _say(f"wrote {out} ({sum(f['bytes'] for f in m.files.values()) / 1e6:.1f} MB)", quiet)
    return m


def _static_info(spec: Any, shape: Any, comps: list[Any]) -> dict[str, Any]:
    """The manifest's static section: the shape, and the ring caches where sliding layers have them."""
    from ..steps.static import ring_lengths

    info: dict[str, Any] = shape.as_dict(spec)
    rings = ring_lengths(comps, info["cache_length"])
    if rings:
        info["ring"] = rings
    return info


def _write(spec: Any, tmp: Path, format: str, parity_steps: int, quiet: bool, weights: str, shape: Any,
           target: str, seed: int = 0, options: dict[str, Any] | None = None,
           native: tuple[str, ...] = (), quality_tokens: int = 0) -> mf.Manifest:
    from tqdm import tqdm

    from ..runtimes import BackendOptions, open_backend
    from . import parity
    from ..steps import components, matmul_weights

    exporter = formats.exporter(format, target)
    static = shape is not None
    comps = exporter.components(spec, shape) if static else components(spec)
    _say(f"[2/4] exporting {len(comps)} component(s) to {format}" + (" for npu" if target == "npu" else ""), quiet)
    infos = {}
    fmt = formats.spec(format)
    for c in tqdm(comps, desc="export", unit="graph", disable=quiet or console.quiet, file=console.err):
        own = weights if target == "npu" else fmt.component_weights(c.inputs, weights)
        if own != weights:
            spec.notes.append(f"{c.name}: {own} weights, not {weights}: {weights} moves a speech encoder's output "
                              "past the parity bound")
        infos[c.name] = exporter.export_component(c, tmp, own, **(options or {}))
        infos[c.name].matmul_weights = matmul_weights(c)
    finish = getattr(exporter, "finish", None)  # a format's pass over all its graphs (onnx: one weight file)
    if finish is not None:
        finish(tmp, infos)
    (tmp / mf.TOKENIZER).write_text(spec.tokenizer_json)
    m = mf.Manifest(format=format, engine=formats.spec(format).engine, kind=spec.kind, model=_model_info(spec, seed),
                    dims=spec.dims.as_dict(), components=infos, generation=spec.generation.as_dict(),
                    quantization=None if weights == "fp32" else weights,
                    tools=_versions(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    static=_static_info(spec, shape, comps) if static else None, target=target, audio=spec.audio)
    if target == "npu" and weights != "fp32":
        from .calibrate import quantize_artifact

        graphs = sum(len(c.signature_files) for c in m.components.values())
        _say(f"      calibrating on sample prompts and quantizing {graphs} graph(s) to {weights} (QDQ)", quiet)
        with tqdm(total=graphs, desc="quantize", unit="graph", disable=quiet or console.quiet, file=console.err) as bar:
            quantize_artifact(tmp, m, weights, progress=bar)
    m.model["bytes_read_per_token"] = _bytes_per_token(spec, m)
    if parity_steps:
        _say(f"[3/4] parity: {parity_steps} greedy steps against PyTorch", quiet)
        backend = open_backend(tmp, m, "cpu", None, BackendOptions(precision="f32"))
        with tqdm(total=parity_steps, desc="parity", unit="step", disable=quiet or console.quiet, file=console.err) as bar:
            m.parity = parity.check(backend, spec, parity_steps, weights, progress=bar)
        m.parity["engine"] = f"{backend.engine} cpu, precision {backend.precision}"
        del backend
        p = m.parity
        enc = f"; encoder output {p['encoder']['max_abs_diff']:.3g} (tolerance {p['encoder']['tolerance']:.3g})" \
            if "encoder" in p else ""
        _say(f"      parity {p['status']}: max |logits diff| {p['max_abs_diff']:.3g} (tolerance {p['tolerance']:.3g}), "
             f"tokens agree: {p['tokens_agree']}{enc}", quiet)
    else:
        m.parity = {"status": "skipped", "reason": "--parity-steps 0"}
    if quality_tokens and weights != "fp32" and not spec.audio:  # text models (speech: docs/speech.md's WER)
        from ..quality.evaluate import at_export

        _say(f"      quality: {weights} against PyTorch on {quality_tokens} tokens of the built-in texts", quiet)
        m.quality = at_export(tmp, m, spec.tokenizer_json, quality_tokens)
        q = m.quality
        _say(f"      KL mean {q['kl_mean']:.4f} (p99 {q['kl_p99']:.4f}), top-1 {q['top1_agreement']:.1%}, "
             f"perplexity {q['perplexity']:.2f} vs {q['reference_perplexity']:.2f}", quiet)
    for name in native:
        from . import native as native_files

        _say(f"      --native {name}: writing its files and checking its greedy tokens against edgeseq's", quiet)
        m.native[name] = native_files.write(name, tmp, m, comps)
        c = m.native[name]["check"]
        _say(f"      {name}: {len(m.native[name]['files'])} file(s); check {c['status']}"
             + (f" ({c['reason']})" if c.get("reason") else ""), quiet)
    _say("[4/4] writing manifest", quiet)
    m.files = {f.name: mf.file_record(f) for f in sorted(tmp.iterdir()) if f.is_file()}
    m.write(tmp)  # last: a directory with a manifest is a finished export
    return m


def _model_info(spec: Any, seed: int = 0) -> dict[str, Any]:
    """`source` and `seed` rebuild the model (the PyTorch reference: reference/torch_runner.py); `source_hash`
    tells whether the source is still the one exported. Manifests without a seed were written with 0."""
    return {"name": spec.name, "family": spec.family, "source": spec.source, "source_kind": spec.source_kind,
            "source_hash": spec.source_hash, "seed": seed, "random_weights": spec.random_weights,
            "params": spec.num_params, "notes": spec.notes}


def _bytes_per_token(spec: Any, m: mf.Manifest) -> int:
    """Weight bytes one decode step reads: the step graph's weights, less an untied input embedding
    (only one row of it is read per token): as the exporter found it in the graph where it says."""
    step = m.components["decoder" if spec.kind == "decoder-only" else "decoder_step"]
    if step.lookup_bytes:
        return int(step.weight_bytes - step.lookup_bytes)
    emb, head = spec.model.get_input_embeddings(), spec.model.get_output_embeddings()
    tied = head is not None and emb.weight.data_ptr() == head.weight.data_ptr()
    return int(step.weight_bytes - (0 if tied else emb.weight.numel() * emb.weight.element_size()))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("edgeseq", "torch", "transformers", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf",
                 "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "tokenizers", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
