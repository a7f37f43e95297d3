"""QDQ quantization of static NPU graphs (export/formats/onnx_npu.py), calibrated on sample prompts.

Calibration data is what the graphs see in use: the float artifact generates greedily on the CPU
provider from prompts of every bucket's length (windows of the profiling passage), and every graph
call's inputs are recorded, caches included. Each graph is then quantized with ONNX Runtime's QNN
recipe, made to hold on models with massive activations (export/outliers.py): the residual stream,
its norms, the few MatMuls and tensors past HOT_PEAK and, with 16-bit activations, attention's core
stay float (float16 on HTP), calibrated ranges are widened (RANGE_PAD, by activation bits), and 8-bit
MatMul weights get one scale per output channel (HTP compiles them). The signatures' weights are shared again. Recipes:
  w8a16  int8 weights (per output channel), uint16 activations
  w8a8   int8 weights (per output channel), uint8 activations
  w4a16  int4 weights (packed two to a byte, per tensor), uint16 activations
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from .quiet import quiet

RECIPES = {"w8a16": ("QUInt16", "QUInt8"), "w8a8": ("QUInt8", "QUInt8"),  # activations, weights
           "w4a16": ("QUInt16", "QInt4")}
PROMPTS_PER_BUCKET = 2
DECODE_STEPS = 8  # greedy steps recorded after each prompt
# a MatMul whose calibrated |input| or |output| passes this stays float (float16 on HTP): one 16-bit
# range over it would leave steps above 0.015 for the values near 1 beside the outlier
HOT_PEAK = 1000.0
# each calibrated activation range widened by this share of its span on each unbounded side
# (export/outliers.py widened): rare tokens push a gate x up product or a query past what a few
# calibration prompts showed, and a clipped value costs far more than resolution does. At 16 bits two
# spans (2.3 bits of 16) cost no measurable accuracy; at 8 bits resolution is scarce, half a span.
RANGE_PAD = {16: 2.0, 8: 0.5}


def quantize_artifact(directory: Path, manifest: Any, recipe: str, progress: Any = None,
                      float_stream: bool = True, per_channel: bool = True) -> None:
    """Replace every graph of the float artifact in `directory` with its QDQ form. `float_stream`
    keeps the residual stream and its norms float, and the MatMuls whose calibrated input or output
    exceeds HOT_PEAK (the massive channel's path: export/outliers.py), in every signature alike."""
    from .formats.onnx_npu import measure, share_weights
    from .outliers import matmul_peaks, tensor_ranges

    samples = record(directory, manifest)
    for name, comp in manifest.components.items():
        files = {sig: directory / file for sig, file in comp.signature_files.items()}
        for sig in files:
            if not samples.get((name, sig)):
                raise ExportError(f"calibration never ran {name} {sig}", "report this with the export command")
        hot: set[str] = set()
        ranges = {}
        for sig, path in files.items():
            model = _prepared(path)
            if float_stream:
                ranges[sig] = tensor_ranges(model, samples[(name, sig)])
                hot |= {k for k, v in matmul_peaks(model, ranges[sig]).items() if v > HOT_PEAK}
            del model
        for sig, path in files.items():
            _quantize(path, samples[(name, sig)], recipe, float_stream, hot, ranges.get(sig), per_channel)
            if progress is not None:
                progress.update(1)
        share_weights(list(files.values()), directory / f"{name}.weights")
        measure(directory, name, comp)
    for left in directory.glob("*.qdq.onnx.data"):  # the quantizer's own weight files, now shared
        left.unlink()


def record(directory: Path, manifest: Any) -> dict[tuple[str, str], list[dict[str, np.ndarray]]]:
    """Inputs of every graph call while the float artifact generates from the calibration prompts."""
    from tokenizers import Tokenizer

    from ..generate.config import GenerationConfig
    from ..generate.loop import Timings, steps
    from ..artifact.manifest import TOKENIZER
    from ..profile.prompts import prompt_ids
    from ..runtimes import BackendOptions, open_backend

    backend = open_backend(directory, manifest, "cpu", "onnxruntime", BackendOptions())
    samples: dict[tuple[str, str], list[dict[str, np.ndarray]]] = defaultdict(list)
    invoke = backend.invoke

    def recording(component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        types = backend._io[(component, signature)][1]
        samples[(component, signature)].append({k: np.asarray(v).astype(types[k]) for k, v in feeds.items()
                                                if k in types})
        return invoke(component, signature, feeds)

    backend.invoke = recording  # type: ignore[method-assign]
    if manifest.audio:  # speech: windows of voice-like signals (parity's kind), decoded from the transcription prompt
        from ..generate.speech import prompt
        from .parity import parity_features

        cfg = GenerationConfig(max_new_tokens=min(DECODE_STEPS, manifest.static["max_output"]), ignore_eos=True)
        for seed in range(2 * PROMPTS_PER_BUCKET):
            for _ in steps(backend, [prompt(manifest.audio["tokens"])], cfg, manifest.generation, Timings(),
                           features=parity_features(manifest.audio, seed + 1)):
                pass
        return samples
    tok = Tokenizer.from_str((directory / TOKENIZER).read_text())
    vocab = manifest.dims["vocab_size"]
    passage = prompt_ids(tok, 4 * max(manifest.static["buckets"]) + 64, vocab)
    cfg = GenerationConfig(max_new_tokens=min(DECODE_STEPS, manifest.static["max_output"]), ignore_eos=True)
    for bucket in manifest.static["buckets"]:
        # a full bucket and a short prompt: left padding puts pad tokens first, where the first
        # token's massive activation makes them an attention sink a -100 mask does not silence
        for k, length in enumerate([bucket] * (PROMPTS_PER_BUCKET - 1) + [max(1, bucket // 4)]):
            start = k * (bucket + 7)
            for _ in steps(backend, [passage[start:start + length]], cfg, manifest.generation, Timings()):
                pass
    # a one-token prompt runs the decode graph on an empty cache: the first token's massive activation
    # then passes through decode's MatMuls, which later tokens never show it
    for start in range(PROMPTS_PER_BUCKET):
        for _ in steps(backend, [passage[start * 7:start * 7 + 1]], cfg, manifest.generation, Timings()):
            pass
    return samples


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _prepared(path: Path) -> Any:
    """The graph at `path`, rewritten for the quantizer: a tied LM head reads the embedding table
    through Gemm(transB=1), which HTP rejects once quantized ("Failed to add node"): it becomes a
    MatMul on its own transposed copy."""
    import onnx

    from .passes import gemm_to_matmul

    model = onnx.load(str(path))
    gemm_to_matmul(model)
    onnx.save(model, str(path))
    return model


def _quantize(path: Path, feeds: list[dict[str, np.ndarray]], recipe: str, float_stream: bool = True,
              hot: set[str] = frozenset(), ranges: dict[str, tuple[float, float]] | None = None,
              per_channel: bool = True) -> None:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    import onnx

    from .outliers import attention_core, channel_weights, clips_to_max, float_path, hot_matmuls, hot_nodes, widened

    activations, weights = (getattr(QuantType, t) for t in RECIPES[recipe])
    bits = 16 if activations == QuantType.QUInt16 else 8
    model = onnx.load(str(path))
    keep = None
    if float_stream:  # float_path names unnamed nodes: before the save
        keep = list(dict.fromkeys(float_path(model) + hot_matmuls(model, set(hot))
                                  + hot_nodes(model, ranges or {}, HOT_PEAK)
                                  + (attention_core(model) if bits == 16 else [])))
    if keep:
        clips_to_max(model, keep)
        onnx.save(model, str(path))
    overrides = widened(ranges, RANGE_PAD[bits]) if ranges else {}
    if per_channel and recipe != "w4a16":  # int4 per-channel zero points do not survive share_weights' external data
        overrides.update(channel_weights(model, set(keep or ()), weights))
    tmp = path.with_suffix(".qdq.onnx")
    try:
        with quiet():  # advice to pre-process, the opset raised to 21 for 16-bit types: per graph
            config = get_qnn_qdq_config(str(path), _Reader(feeds), activation_type=activations, weight_type=weights,
                                       nodes_to_exclude=keep,
                                       init_overrides=overrides or None)
            quantize(str(path), str(tmp), config)
    except Exception as e:  # the quantizer raises many types; all mean this graph did not quantize
        tmp.unlink(missing_ok=True)
        raise ExportError(f"QDQ quantization ({recipe}) failed for {path.name}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}",
                          "export --weights fp32 (HTP runs float graphs in float16) and report this") from e
    os.replace(tmp, path)
