"""QDQ quantization of static NPU graphs (export/formats/onnx_npu.py), calibrated on sample prompts.

Calibration data is what the graphs see in use: the float artifact generates greedily on the CPU
provider from prompts of every bucket's length (windows of the profiling passage), and every graph
call's inputs are recorded, caches included. Each graph is then quantized with ONNX Runtime's QNN
recipe (min-max ranges, per-tensor weights: QNN has no per-channel MatMul) and the signatures'
weights are shared again. Recipes:
  w8a16  uint8 weights, uint16 activations (the one that kept SmolLM2's and T5's top-1 tokens in
         the feasibility notes; uint8 activations flipped them)
  w8a8   uint8 weights and activations
  w4a16  int4 weights (packed two to a byte), uint16 activations
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


def quantize_artifact(directory: Path, manifest: Any, recipe: str, progress: Any = None,
                      float_stream: bool = True) -> None:
    """Replace every graph of the float artifact in `directory` with its QDQ form; `float_stream`
    keeps the residual stream and its norms in float (export/outliers.py)."""
    from .formats.onnx_npu import measure, share_weights

    samples = record(directory, manifest)
    for name, comp in manifest.components.items():
        paths = []
        for sig, file in comp.signature_files.items():
            got = samples.get((name, sig))
            if not got:
                raise ExportError(f"calibration never ran {name} {sig}", "report this with the export command")
            _quantize(directory / file, got, recipe, float_stream)
            paths.append(directory / file)
            if progress is not None:
                progress.update(1)
        share_weights(paths, directory / f"{name}.weights")
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
        for k in range(PROMPTS_PER_BUCKET):
            start = k * (bucket + 7)
            for _ in steps(backend, [passage[start:start + bucket]], cfg, manifest.generation, Timings()):
                pass
    return samples


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _quantize(path: Path, feeds: list[dict[str, np.ndarray]], recipe: str, float_stream: bool = True) -> None:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    import onnx

    from .outliers import clips_to_max, float_path
    from .passes import gemm_to_matmul

    activations, weights = (getattr(QuantType, t) for t in RECIPES[recipe])
    # a tied LM head reads the embedding table through Gemm(transB=1), which HTP rejects once
    # quantized ("Failed to add node"): it becomes a MatMul on its own transposed copy
    model = onnx.load(str(path))
    gemm_to_matmul(model)
    keep = float_path(model) if float_stream else None  # names the nodes it finds, so before the save
    if keep:
        clips_to_max(model, keep)
    onnx.save(model, str(path))
    tmp = path.with_suffix(".qdq.onnx")
    try:
        with quiet():  # advice to pre-process, the opset raised to 21 for 16-bit types: per graph
            config = get_qnn_qdq_config(str(path), _Reader(feeds), activation_type=activations, weight_type=weights,
                                       nodes_to_exclude=keep)
            quantize(str(path), str(tmp), config)
    except Exception as e:  # the quantizer raises many types; all mean this graph did not quantize
        tmp.unlink(missing_ok=True)
        raise ExportError(f"QDQ quantization ({recipe}) failed for {path.name}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}",
                          "export --weights fp32 (HTP runs float graphs in float16) and report this") from e
    os.replace(tmp, path)
